"""Read an ONNX file and describe it: I/O, opset, op histogram, Resize nodes, metadata, and the
INT8 coverage (activation bytes per image by precision, :mod:`exporters.coverage`).

Works on any ONNX file, not only the toolkit's; the static-graph checks run too, so ``inspect``
tells whether a file keeps the promises ``export`` makes.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from deploy_ran.artifacts import get_metadata, load_onnx
from exporters.coverage import Coverage, int8_coverage
from exporters.graph_checks import GraphReport, check_graph

_DTYPES = {v: k.lower() for k, v in onnx.TensorProto.DataType.items()}


@dataclass
class TensorDesc:
    name: str
    dtype: str
    shape: list[int | str]


@dataclass
class OnnxDescription:
    path: str
    size_bytes: int
    ir_version: int
    opsets: dict[str, int]
    producer: str
    inputs: list[TensorDesc]
    outputs: list[TensorDesc]
    parameters: int
    graph: GraphReport
    metadata: dict[str, str]
    static_batch: bool
    #: Activation bytes per image by precision etc. (exporters.coverage); None if not computable.
    coverage: Coverage | None = None

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["coverage"] = self.coverage.as_dict() if self.coverage is not None else None
        out["graph"] = {
            "ok": self.graph.ok,
            "problems": self.graph.problems,
            "op_histogram": dict(self.graph.op_histogram.most_common()),
            "resizes": [asdict(r) for r in self.graph.resizes],
        }
        return out


def _describe(vi: onnx.ValueInfoProto) -> TensorDesc:
    tt = vi.type.tensor_type
    shape = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tt.shape.dim]
    return TensorDesc(vi.name, _DTYPES.get(tt.elem_type, str(tt.elem_type)), shape)


_WEIGHT_TYPES = {
    onnx.TensorProto.FLOAT,
    onnx.TensorProto.FLOAT16,
    onnx.TensorProto.BFLOAT16,
    onnx.TensorProto.DOUBLE,
    onnx.TensorProto.INT8,  # quantized weights behind a DequantizeLinear
    onnx.TensorProto.UINT8,
}
#: Inputs that are constants of an op, not learned weights: (op type, first, last input index).
_NOT_WEIGHTS = {
    "BatchNormalization": (3, 4),  # running mean and variance (PyTorch buffers)
    "QuantizeLinear": (1, 2),  # scales and zero points
    "DequantizeLinear": (1, 2),
    "Resize": (1, 3),  # roi, scales, sizes
}


def count_parameters(model: onnx.ModelProto) -> int:
    """Elements of the learned weights: float (or INT8 quantized) tensors, as PyTorch counts them.

    Shape constants (int64), Q/DQ scales and zero points, BatchNorm running statistics, Resize
    scales and scalar constants are not parameters, though they are initializers.
    """
    skip: set[str] = set()
    for node in model.graph.node:
        span = _NOT_WEIGHTS.get(node.op_type)
        if span is not None:
            skip.update(node.input[span[0] : span[1] + 1])
    return sum(
        int(np.prod(init.dims))
        for init in model.graph.initializer
        if init.name not in skip and init.data_type in _WEIGHT_TYPES and int(np.prod(init.dims)) > 1
    )


def inspect_onnx(path: str | Path) -> OnnxDescription:
    """Describe the ONNX file at ``path`` (raises OnnxFileError for a missing/corrupt file)."""
    path = Path(path)
    model = load_onnx(path)
    inputs = [_describe(vi) for vi in model.graph.input]
    static_batch = all(isinstance(t.shape[0], int) for t in inputs if t.shape)
    try:
        report = check_graph(model, static_batch=static_batch)
    except Exception as exc:  # shape inference can reject a malformed graph
        ops = Counter(n.op_type for n in model.graph.node)
        report = GraphReport([], [], ops.get("Shape", 0), ops, [f"shape inference failed: {exc}"])
    params = count_parameters(model)
    try:
        coverage = int8_coverage(model)
    except Exception:  # noqa: BLE001 - a graph shape inference rejects has no coverage to show
        coverage = None
    return OnnxDescription(
        path=str(path),
        size_bytes=path.stat().st_size,
        ir_version=model.ir_version,
        opsets={(o.domain or "ai.onnx"): o.version for o in model.opset_import},
        producer=f"{model.producer_name} {model.producer_version}".strip(),
        inputs=inputs,
        outputs=[_describe(vi) for vi in model.graph.output],
        parameters=params,
        graph=report,
        metadata=get_metadata(model),
        static_batch=static_batch,
        coverage=coverage,
    )
