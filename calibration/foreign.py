"""INT8 files from other quantizers (NVIDIA ModelOpt, ONNX Runtime's ``quantize_static``).

Those tools write a plain Q/DQ ONNX and drop the source's ``metadata_props``, so the toolkit reads
no preprocessing, model spec or precision from them: ``inspect``, ``verify``, ``build-engine`` and
``triton-repo`` take them as they are (their precision is read from the graph), but ``infer`` and
``evaluate`` need to know how to preprocess images. :func:`adopt_int8_file` gives such a file the
metadata of the FP32 file it was quantized from (precision ``int8``, the quantizer named), after
checking that the two files take and give the same tensors; nothing else in the graph changes.
"""

from __future__ import annotations

from pathlib import Path

import onnx

from deploy_ran.artifacts import ArtifactInfo, get_metadata, load_onnx, set_metadata
from deploy_ran.errors import DeployRanError
from deploy_ran.fileio import atomic_write_bytes

_QDQ = ("QuantizeLinear", "DequantizeLinear")


def _io(model: onnx.ModelProto) -> list[tuple[str, list[int | str]]]:
    def dims(vi: onnx.ValueInfoProto) -> list[int | str]:
        return [
            d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
            for d in vi.type.tensor_type.shape.dim
        ]

    return [(vi.name, dims(vi)) for vi in [*model.graph.input, *model.graph.output]]


def adopt_int8_file(
    int8_path: str | Path, fp32_source: str | Path, output: str | Path | None = None
) -> Path:
    """Write ``int8_path`` (or ``output``) with the toolkit metadata of ``fp32_source``.

    Refuses a file without QuantizeLinear/DequantizeLinear, a source without toolkit metadata, and
    a pair whose inputs/outputs differ in name or static dimensions (not the same network).
    """
    int8_path, fp32_source = Path(int8_path), Path(fp32_source)
    model, source = load_onnx(int8_path), load_onnx(fp32_source, load_weights=False)
    if not any(n.op_type in _QDQ for n in model.graph.node):
        raise DeployRanError(
            f"{int8_path} has no QuantizeLinear/DequantizeLinear nodes; it is not an INT8 Q/DQ file.",
            hint="Give the file ModelOpt or ONNX Runtime's quantize_static wrote.",
        )
    info = ArtifactInfo.from_props(get_metadata(source))
    if not info.preprocessing:
        raise DeployRanError(
            f"{fp32_source} carries no deploy-ran metadata (preprocessing) to adopt.",
            hint="Give the FP32 file `python cli.py export` wrote, the one the INT8 file came from.",
        )
    ours, theirs = _io(model), _io(source)
    static = [
        [(n, [d for d in dims if isinstance(d, int)]) for n, dims in io] for io in (ours, theirs)
    ]
    if static[0] != static[1]:
        raise DeployRanError(
            f"{int8_path} and {fp32_source} differ in their inputs/outputs ({ours} vs {theirs}).",
            hint="Adopt metadata only from the FP32 file the INT8 file was quantized from.",
        )
    info.precision = "int8"
    info.extra["quantized_by"] = f"{model.producer_name} {model.producer_version}".strip()
    info.extra["source_onnx"] = fp32_source.name
    set_metadata(model, info.to_props())
    target = Path(output) if output is not None else int8_path
    atomic_write_bytes(target, model.SerializeToString())
    return target
