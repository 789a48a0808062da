"""What a Triton config needs to know about one artifact file, read from the file itself.

An ONNX file says everything: its inputs and outputs with types and shapes (a symbolic leading
dimension is the batch) and the toolkit's metadata. A TensorRT plan is opaque without TensorRT,
so it is described by its sidecar (``.plan.json``: input, profile, output names, precision) and,
for the outputs' shapes and types, by the ONNX it was built from when that file is still there
and has the sha256 the sidecar recorded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx

from deploy_ran.artifacts import external_data_files, get_metadata, load_onnx, precision_of
from deploy_ran.errors import DeployRanError
from deploy_ran.fileio import sha256_file
from deploy_ran.onnx_graph import graph_inputs
from deploy_ran.trt_compat import read_sidecar, sidecar_path


class TritonRepoError(DeployRanError):
    """Input that cannot become a Triton model repository (bad file, name, options, folder)."""


PLATFORM_ONNX = "onnxruntime_onnx"
PLATFORM_PLAN = "tensorrt_plan"

#: ONNX element types → Triton's ``DataType`` enum names.
ONNX_TO_TRITON = {
    onnx.TensorProto.FLOAT: "TYPE_FP32",
    onnx.TensorProto.FLOAT16: "TYPE_FP16",
    onnx.TensorProto.BFLOAT16: "TYPE_BF16",
    onnx.TensorProto.DOUBLE: "TYPE_FP64",
    onnx.TensorProto.INT8: "TYPE_INT8",
    onnx.TensorProto.UINT8: "TYPE_UINT8",
    onnx.TensorProto.INT16: "TYPE_INT16",
    onnx.TensorProto.INT32: "TYPE_INT32",
    onnx.TensorProto.INT64: "TYPE_INT64",
    onnx.TensorProto.BOOL: "TYPE_BOOL",
    onnx.TensorProto.STRING: "TYPE_STRING",
}
#: numpy dtype names (the sidecar's spelling) → Triton's ``DataType`` enum names.
NUMPY_TO_TRITON = {
    "float32": "TYPE_FP32",
    "float16": "TYPE_FP16",
    "float64": "TYPE_FP64",
    "int8": "TYPE_INT8",
    "uint8": "TYPE_UINT8",
    "int32": "TYPE_INT32",
    "int64": "TYPE_INT64",
    "bool": "TYPE_BOOL",
}


@dataclass(frozen=True)
class TensorIO:
    """One input or output as the file declares it; ``-1`` is a dynamic dimension."""

    name: str
    data_type: str  # Triton enum name, e.g. "TYPE_FP32"
    shape: tuple[int, ...]  # full shape, batch included


@dataclass
class Artifact:
    """One file to serve, with everything the config is built from."""

    path: Path
    platform: str
    inputs: list[TensorIO]
    outputs: list[TensorIO] | None  # None: unknown (a plan whose source ONNX is gone)
    batched: bool  # the leading dimension of every tensor is a dynamic batch
    precision: str
    max_batch_limit: int | None = None  # a plan's profile max batch
    #: A plan's optimisation profile as batch sizes (min, opt, max), from its sidecar.
    profile_batches: tuple[int, int, int] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)  # JSON parameter in the config
    preprocessing: dict[str, Any] | None = None
    num_classes: int | None = None
    external_data: list[str] = field(default_factory=list)  # relative file names beside the ONNX
    notes: list[str] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return "plan" if self.platform == PLATFORM_PLAN else "onnx"


def _onnx_io(model: onnx.ModelProto) -> tuple[list[TensorIO], list[TensorIO]]:
    def describe(vi: onnx.ValueInfoProto, where: str) -> TensorIO:
        tt = vi.type.tensor_type
        if tt.elem_type not in ONNX_TO_TRITON:
            raise TritonRepoError(
                f"{where} {vi.name!r} has ONNX element type {tt.elem_type}, which Triton has no "
                "data type for.",
                hint="Serve files whose inputs and outputs are float/int/bool tensors "
                "(every deploy-ran export is FP32).",
            )
        dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tt.shape.dim)
        return TensorIO(vi.name, ONNX_TO_TRITON[tt.elem_type], dims)

    inputs = [describe(v, "Input") for v in graph_inputs(model)]
    outputs = [describe(v, "Output") for v in model.graph.output]
    return inputs, outputs


def _is_batched(tensors: list[TensorIO]) -> bool:
    """A dynamic leading dimension on every tensor: Triton may batch requests together."""
    return bool(tensors) and all(t.shape and t.shape[0] == -1 for t in tensors)


def _external_files(model: onnx.ModelProto, folder: Path) -> list[str]:
    """External-data names of the ONNX, each checked to stay inside ``folder`` (see
    :func:`deploy_ran.artifacts.external_data_files`)."""
    return list(external_data_files(model, folder))


def read_onnx(path: str | Path) -> Artifact:
    """Describe an FP32, FP16 or INT8 Q/DQ ONNX file (weights are not loaded)."""
    path = Path(path)
    model = load_onnx(path, load_weights=False)
    inputs, outputs = _onnx_io(model)
    if not inputs:
        raise TritonRepoError(f"{path} has no inputs.", hint="Export it with `python cli.py export`.")
    props = get_metadata(model)
    batched = _is_batched(inputs) and _is_batched(outputs)
    precision = precision_of(model)
    info = _loads(props.get("preprocessing"))
    return Artifact(
        path=path,
        platform=PLATFORM_ONNX,
        inputs=inputs,
        outputs=outputs,
        batched=batched,
        precision=precision,
        metadata={
            "file": path.name,
            "sha256": sha256_file(path),
            "precision": precision,
            "onnx_metadata": props,
        },
        preprocessing=info or None,
        num_classes=_int_or_none(props.get("num_classes")),
        external_data=_external_files(model, path.parent),
    )


def _source_onnx(plan: Path, sidecar: dict[str, Any]) -> Path | None:
    """The ONNX a plan was built from, if it is still there with the recorded sha256."""
    source = sidecar.get("source_onnx") or {}
    recorded = source.get("path")
    if not recorded:
        return None
    for candidate in (Path(recorded), plan.parent / Path(recorded).name):
        if candidate.is_file() and sha256_file(candidate) == source.get("sha256"):
            return candidate
    return None


def read_plan(path: str | Path, max_batch: int | None) -> Artifact:
    """Describe a TensorRT plan from its sidecar (and its source ONNX for the outputs)."""
    path = Path(path)
    if not path.is_file():
        raise TritonRepoError(
            f"Engine {path} does not exist." if not path.exists() else f"{path} is not a file.",
            hint="Build one with `python cli.py build-engine MODEL.onnx` on a GPU machine.",
        )
    sidecar = read_sidecar(path)
    if sidecar is None:
        if max_batch is None:
            raise TritonRepoError(
                f"{path} has no sidecar ({sidecar_path(path).name}), so its batch profile is "
                "unknown and Triton could be told a max_batch_size the engine cannot run.",
                hint="Keep the .plan.json that build-engine wrote beside the plan, or give "
                "--max-batch N (at most the profile's max batch; 0 for a static-batch engine).",
            )
        return Artifact(
            path=path,
            platform=PLATFORM_PLAN,
            inputs=[],
            outputs=None,
            batched=max_batch > 0,
            precision="unknown",
            metadata={"file": path.name, "sha256": sha256_file(path)},
            notes=[
                "no sidecar: inputs and outputs are left to Triton's auto-complete, which reads "
                "them from the engine at load"
            ],
        )
    spec = sidecar.get("input") or {}
    shape = tuple(int(d) for d in spec.get("shape", []))
    if not spec.get("name") or len(shape) < 2:
        raise TritonRepoError(
            f"Sidecar {sidecar_path(path)} has no usable input description.",
            hint="Rebuild the engine with `python cli.py build-engine`.",
        )
    dtype = NUMPY_TO_TRITON.get(str(spec.get("dtype", "float32")))
    if dtype is None:
        raise TritonRepoError(
            f"Sidecar input dtype {spec.get('dtype')!r} has no Triton data type.",
            hint="Rebuild the engine with `python cli.py build-engine`.",
        )
    the_input = TensorIO(spec["name"], dtype, shape)
    profile = spec.get("profile") or {}
    profile_max = profile.get("max") or []
    limit = int(profile_max[0]) if profile_max else None
    profile_batches = None
    if all(profile.get(k) for k in ("min", "opt", "max")):
        profile_batches = tuple(int(profile[k][0]) for k in ("min", "opt", "max"))
    batched = shape[0] == -1
    notes: list[str] = []
    outputs: list[TensorIO] | None = None
    source = _source_onnx(path, sidecar)
    names = list(sidecar.get("outputs") or [])
    if source is not None:
        onnx_inputs, onnx_outputs = _onnx_io(load_onnx(source, load_weights=False))
        if [i.name for i in onnx_inputs] != [the_input.name] or tuple(
            onnx_inputs[0].shape[1:]
        ) != tuple(shape[1:]):
            raise TritonRepoError(
                f"The sidecar of {path} describes input {the_input.name}{list(shape)}, but its "
                f"source ONNX {source} has {[f'{i.name}{list(i.shape)}' for i in onnx_inputs]}.",
                hint="The sidecar does not belong to this plan: rebuild the engine.",
            )
        if names and [o.name for o in onnx_outputs] != names:
            raise TritonRepoError(
                f"The sidecar of {path} names outputs {names}, its source ONNX "
                f"{[o.name for o in onnx_outputs]}.",
                hint="The sidecar does not belong to this plan: rebuild the engine.",
            )
        outputs = [
            TensorIO(o.name, o.data_type, (-1, *o.shape[1:]) if batched else (shape[0], *o.shape[1:]))
            for o in onnx_outputs
        ]
    else:
        notes.append(
            "the plan's source ONNX is not beside it (or changed), so its outputs' shapes are "
            "unknown: inputs and outputs are left to Triton's auto-complete, which reads them "
            "from the engine at load"
        )
    return Artifact(
        path=path,
        platform=PLATFORM_PLAN,
        inputs=[the_input],
        outputs=outputs,
        batched=batched,
        precision=str(sidecar.get("precision", "unknown")),
        max_batch_limit=limit if batched else None,
        profile_batches=profile_batches if batched else None,  # type: ignore[arg-type]
        metadata={
            "file": path.name,
            "sha256": sha256_file(path),
            "precision": sidecar.get("precision"),
            "tensorrt_version": sidecar.get("tensorrt_version"),
            "gpu": sidecar.get("gpu"),
            "onnx_metadata": (sidecar.get("source_onnx") or {}).get("metadata") or {},
        },
        preprocessing=sidecar.get("preprocessing") or None,
        num_classes=_int_or_none(sidecar.get("num_classes")),
        notes=notes,
    )


def read_artifact(path: str | Path, max_batch: int | None = None) -> Artifact:
    """An ``.onnx`` or ``.plan``/``.engine`` file, described for Triton."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return read_onnx(path)
    if suffix in (".plan", ".engine"):
        return read_plan(path, max_batch)
    raise TritonRepoError(
        f"Cannot serve {path}: expected a .onnx file, a .plan/.engine file or a model name.",
        hint="Export with `python cli.py export NAME` or build with `python cli.py build-engine`.",
    )


def _loads(text: str | None) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None
