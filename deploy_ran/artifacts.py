"""What an ONNX artifact says about itself.

Every ONNX file the toolkit writes carries, in ``metadata_props``, the facts a later stage needs:
which model it is, the input size and preprocessing, the class count, the options it was built
with, the precision and the checkpoint's sha256. Later stages (calibration, engine build, runners,
``infer``) read them here instead of asking the user again. Values are strings (ONNX's rule);
lists and dicts are stored as JSON.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx

from deploy_ran.errors import DeployRanError, OnnxFileError
from deploy_ran.reading import require_regular_file, resolve_inside

PRODUCER = "deploy-ran"


@dataclass
class ArtifactInfo:
    """The toolkit's metadata of one ONNX file (empty fields for foreign files)."""

    model: str | None = None
    image_size: int | None = None
    num_classes: int | None = None
    mean: list[float] | None = None
    std: list[float] | None = None
    precision: str = "fp32"
    dynamic_batch: bool | None = None
    options: dict[str, Any] = field(default_factory=dict)
    preprocessing: dict[str, Any] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)
    checkpoint_sha256: str | None = None
    # Seed of the random initialisation when no checkpoint was used; the exporter passes the
    # models' INIT_SEED (this base module does not know it: it sits below deploy_ran.models).
    init_seed: int | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def to_props(self) -> dict[str, str]:
        """Serialise to ONNX ``metadata_props`` (strings only)."""
        props = {
            "model": self.model,
            "image_size": self.image_size,
            "num_classes": self.num_classes,
            "mean": self.mean,
            "std": self.std,
            "precision": self.precision,
            "dynamic_batch": self.dynamic_batch,
            "options": self.options,
            "preprocessing": self.preprocessing,
            "outputs": self.outputs,
            "checkpoint_sha256": self.checkpoint_sha256 or _no_checkpoint(self.init_seed),
        }
        out = {
            k: v if isinstance(v, str) else json.dumps(v) for k, v in props.items() if v is not None
        }
        out.update(self.extra)
        return out

    @classmethod
    def from_props(cls, props: dict[str, str]) -> ArtifactInfo:
        def load(key: str, default: Any = None) -> Any:
            if key not in props:
                return default
            try:
                return json.loads(props[key])
            except json.JSONDecodeError:
                return props[key]

        known = {
            "model",
            "image_size",
            "num_classes",
            "mean",
            "std",
            "precision",
            "dynamic_batch",
            "options",
            "preprocessing",
            "outputs",
            "checkpoint_sha256",
        }
        sha = props.get("checkpoint_sha256")
        return cls(
            model=props.get("model"),
            image_size=load("image_size"),
            num_classes=load("num_classes"),
            mean=load("mean"),
            std=load("std"),
            precision=props.get("precision", "fp32"),
            dynamic_batch=load("dynamic_batch"),
            options=load("options", {}) or {},
            preprocessing=load("preprocessing", {}) or {},
            outputs=load("outputs", []) or [],
            checkpoint_sha256=sha if sha and not sha.startswith("none") else None,
            init_seed=_seed_of(sha),
            extra={k: v for k, v in props.items() if k not in known},
        )


def _no_checkpoint(init_seed: int | None) -> str | None:
    """The checkpoint field of weights that came from no file: the seed, when one is known."""
    return None if init_seed is None else f"none (seeded random initialisation, seed {init_seed})"


def _seed_of(checkpoint_field: str | None) -> int | None:
    """Seed recorded as 'none (seeded random initialisation, seed N)'; None for older files."""
    found = re.search(r"seed (\d+)", checkpoint_field or "")
    return int(found.group(1)) if found and checkpoint_field.startswith("none") else None


def set_metadata(model: onnx.ModelProto, props: dict[str, str]) -> None:
    """Replace the keys in ``props`` in ``model.metadata_props`` (others are kept)."""
    kept = [p for p in model.metadata_props if p.key not in props]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


def get_metadata(model: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


def load_onnx(path: str | Path, load_weights: bool = True) -> onnx.ModelProto:
    """Load an ONNX file with a clear error for a missing, empty or corrupt file."""
    path = Path(path)
    if not path.exists():
        raise OnnxFileError(
            f"ONNX file {path} does not exist.",
            hint="Check the path; export one with `python cli.py export NAME`.",
        )
    if path.is_dir():
        raise OnnxFileError(
            f"{path} is a directory, not an ONNX file.", hint="Give the .onnx file inside it."
        )
    if path.stat().st_size == 0:
        raise OnnxFileError(
            f"ONNX file {path} is empty.",
            hint="Re-export it; an interrupted copy leaves empty files.",
        )
    require_regular_file(path, "ONNX file")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise OnnxFileError(
            f"{path} is not a valid ONNX file ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'parse error'}).",
            hint="Is it truncated or a different format (a .pt checkpoint, a TensorRT plan)? Re-export it.",
        ) from None
    if model.ir_version <= 0 or not model.opset_import:  # protobuf parses most bytes as *something*
        raise OnnxFileError(
            f"{path} is not a valid ONNX file (no IR version or opset: it parsed as an empty "
            "message, so it is some other format).",
            hint="Is it a TensorRT plan, a checkpoint or a truncated file? Pass the .onnx export.",
        )
    problem = io_problem(model)
    if problem is not None:
        raise OnnxFileError(
            f"{path} is not a usable model: {problem}.",
            hint="Re-export it (`python cli.py export NAME`); a hand-edited graph needs every "
            "dimension >= 1 or symbolic, and at least one input and one output.",
        )
    files = external_data_files(model, path.parent)  # checked even when weights are not loaded
    if load_weights and files:
        from onnx.external_data_helper import load_external_data_for_model

        try:
            load_external_data_for_model(model, str(path.parent))
        except Exception as exc:
            raise OnnxFileError(
                f"The external weights of {path} cannot be read ({type(exc).__name__}: {exc}).",
                hint="Keep the .onnx and its external data files together, as exported.",
            ) from None
    return model


def io_problem(model: onnx.ModelProto) -> str | None:
    """What makes a graph's declared inputs and outputs unusable (None: nothing).

    A negative dimension is not a size, a graph without outputs computes nothing, and one
    without inputs takes nothing; every reader would otherwise fail later with a less clear
    error (or, for a zero-size dimension, run on empty tensors).
    """
    initializers = {i.name for i in model.graph.initializer}
    inputs = [v for v in model.graph.input if v.name not in initializers]
    if not model.graph.output:
        return "the graph declares no outputs"
    if not inputs:
        return "the graph declares no inputs"
    for kind, values in (("input", inputs), ("output", model.graph.output)):
        for value in values:
            for dim in value.type.tensor_type.shape.dim:
                if dim.HasField("dim_value") and dim.dim_value <= 0:
                    return f"{kind} {value.name!r} has a dimension of {dim.dim_value}"
    return None


def external_data_files(model: onnx.ModelProto, folder: str | Path) -> dict[str, Path]:
    """``location → resolved path`` of every external-data file an ONNX names, checked.

    A location is a name the file chose: it must be relative, stay inside the ONNX's folder
    after resolving ``..`` and symlinks, and name a regular file. Otherwise copying the model
    (``triton-repo``) would copy ``/etc/hostname`` into a repository, or write outside it.
    """
    found: dict[str, Path] = {}
    for tensor in model.graph.initializer:
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = {e.key: e.value for e in tensor.external_data}.get("location", "")
        if location in found:
            continue
        if not location:
            raise OnnxFileError(
                f"Initializer {tensor.name!r} is marked external but names no file.",
                hint="Re-export the model; the file was edited or truncated.",
            )
        try:
            target = resolve_inside(folder, location, "external-data location")
            require_regular_file(target, "external-data file")
        except OnnxFileError:
            raise
        except DeployRanError as exc:
            raise OnnxFileError(exc.message, hint=exc.hint) from None
        found[location] = target
    return found


def read_artifact_info(path: str | Path) -> ArtifactInfo:
    """Metadata of an ONNX file, without loading its weights."""
    return ArtifactInfo.from_props(get_metadata(load_onnx(path, load_weights=False)))


def precision_of(model: onnx.ModelProto) -> str:
    """The precision an ONNX file is in: ``int8`` (Q/DQ nodes), ``fp16`` or ``fp32``.

    The graph decides, so a foreign file without the toolkit's metadata is classified correctly;
    an FP16 file that keeps some weights in FP32 is recognised by its metadata.
    """
    ops = {n.op_type for n in model.graph.node}
    if ops & {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"}:
        return "int8"
    floats = [i.data_type for i in model.graph.initializer]
    if any(t == onnx.TensorProto.FLOAT16 for t in floats) and not any(
        t == onnx.TensorProto.FLOAT for t in floats
    ):
        return "fp16"
    declared = get_metadata(model).get("precision")
    return declared if declared in ("fp16", "int8") else "fp32"
