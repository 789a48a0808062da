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

from deploy_ran.errors import OnnxFileError

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
    try:
        return onnx.load(str(path), load_external_data=load_weights)
    except Exception as exc:
        raise OnnxFileError(
            f"{path} is not a valid ONNX file ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'parse error'}).",
            hint="Is it truncated or a different format (a .pt checkpoint, a TensorRT plan)? Re-export it.",
        ) from None


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
