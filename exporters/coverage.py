"""INT8 coverage of a Q/DQ ONNX file, computed from the graph: the speed proxy without TensorRT.

A strongly typed TensorRT engine runs each layer in the precision the file states, and the time of
a small CNN at batch 1–32 goes largely into reading and writing activations between layers. So the
bytes of activation one image makes the engine write, split by precision, say how much of the
network an INT8 file really moves in INT8. The count follows TensorRT's documented fusions for
explicit quantization (its "Q/DQ layer placement" guide) in a simplified form:

* a DequantizeLinear is folded into the op that reads it (that op reads INT8);
* a QuantizeLinear is folded into the op that writes its input when *every* reader of that tensor
  is a QuantizeLinear (the producer then writes INT8); otherwise the tensor is written in float and
  the QuantizeLinear stays a layer of its own (writing INT8 too): such a pair is counted as one
  TensorRT *cannot fold*; so is a DequantizeLinear whose reader cannot take INT8 (see
  :data:`INT8_READERS`);
* a float tensor written by a Conv/Gemm/MatMul or a pointwise op and read by exactly one pointwise
  op (ReLU, Add, Mul, Sigmoid, BatchNormalization as a scale, …) is fused into that op
  (Conv+BN+ReLU, Conv+Add+ReLU, pointwise chains) and not written; a Resize, pooling or reduction
  output is always written;
* everything else that carries a float or integer activation is written once: graph inputs, every
  unfused op output, graph outputs. Shape arithmetic (int64 tensors, tensors computed from
  constants only) is not counted.

Float islands are maximal connected groups of ops that read at least one activation in float
(not through a DequantizeLinear): each is a stretch of the network where the engine leaves INT8.
The count is per image (the batch dimension taken as 1) and needs the file's shapes, inferred here.
It is an estimate of what the engine writes, not TensorRT's own layer list, which only a build shows
(``build-engine --layer-info``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx

#: Ops that TensorRT fuses into the op producing their input when that input has no other reader.
POINTWISE_OPS = frozenset(
    {
        "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Clip", "HardSigmoid", "HardSwish", "Elu", "Selu",
        "Softplus", "Add", "Sub", "Mul", "Div", "BatchNormalization", "Neg", "Abs", "Exp", "Sqrt",
        "Erf", "Gelu",
    }
)  # fmt: skip
#: Ops that read an INT8 input (a folded DequantizeLinear) in TensorRT's explicit quantization.
INT8_READERS = frozenset(
    {
        "Conv", "ConvTranspose", "Gemm", "MatMul", "Add", "Sub", "Mul", "BatchNormalization",
        "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Resize", "Concat",
        "Relu", "Sigmoid", "ReduceMean", "Reshape", "Flatten", "Transpose", "Slice", "Pad",
        "Identity", "Squeeze", "Unsqueeze",
    }
)  # fmt: skip
#: Ops whose output TensorRT can fuse a pointwise reader into (a kernel epilogue or a pointwise
#: chain). Pooling, Resize, reductions and shape ops write their output.
FUSING_WRITERS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul", "Cast"}) | POINTWISE_OPS
_QDQ = ("QuantizeLinear", "DequantizeLinear")
_BYTES = {
    onnx.TensorProto.FLOAT: 4,
    onnx.TensorProto.FLOAT16: 2,
    onnx.TensorProto.BFLOAT16: 2,
    onnx.TensorProto.DOUBLE: 8,
    onnx.TensorProto.INT8: 1,
    onnx.TensorProto.UINT8: 1,
}
_NAMES = {
    onnx.TensorProto.FLOAT: "fp32",
    onnx.TensorProto.FLOAT16: "fp16",
    onnx.TensorProto.BFLOAT16: "bf16",
    onnx.TensorProto.DOUBLE: "fp64",
    onnx.TensorProto.INT8: "int8",
    onnx.TensorProto.UINT8: "int8",
}


@dataclass
class Coverage:
    """Activation bytes one image makes a strongly typed engine write, by precision, and more."""

    bytes_by_precision: dict[str, int]  # "int8" / "fp16" / "fp32" → bytes per image
    tensors_by_precision: dict[str, int]  # how many written tensors of each precision
    float_islands: int
    unfoldable_qdq: int  # Q/DQ pairs TensorRT cannot fold into a neighbour
    quantized_inputs: dict[
        str, tuple[int, int]
    ]  # op type → (inputs read via DQ, activation inputs)
    notes: list[str] = field(default_factory=list)
    #: Tensors written in a float precision (name → "fp32"/"fp16"): where the engine leaves INT8.
    float_tensors: dict[str, str] = field(default_factory=dict)

    @property
    def total_bytes(self) -> int:
        return sum(self.bytes_by_precision.values())

    def share(self, precision: str) -> float:
        total = self.total_bytes
        return self.bytes_by_precision.get(precision, 0) / total if total else 0.0

    def dq_fed_fraction(
        self, ops: tuple[str, ...] = ("BatchNormalization", "MaxPool", "Resize")
    ) -> float:
        """Share of the activation inputs of ``ops`` that come from a DequantizeLinear."""
        fed = sum(self.quantized_inputs.get(op, (0, 0))[0] for op in ops)
        total = sum(self.quantized_inputs.get(op, (0, 0))[1] for op in ops)
        return fed / total if total else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "activation_bytes_per_image": dict(self.bytes_by_precision),
            "activation_mib_per_image": round(self.total_bytes / 2**20, 3),
            "share": {p: round(self.share(p), 4) for p in self.bytes_by_precision},
            "written_tensors": dict(self.tensors_by_precision),
            "float_islands": self.float_islands,
            "unfoldable_qdq": self.unfoldable_qdq,
            "dq_fed_inputs": {op: list(v) for op, v in self.quantized_inputs.items()},
            "bn_maxpool_resize_dq_fed": round(self.dq_fed_fraction(), 4),
            "float_tensors": dict(self.float_tensors),
            "notes": self.notes,
        }


def _numel_per_image(vi: onnx.ValueInfoProto | None) -> int | None:
    if vi is None or not vi.type.tensor_type.HasField("shape"):
        return None
    dims = vi.type.tensor_type.shape.dim
    sizes = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    if not sizes:
        return 1
    # The batch dimension (first; symbolic or not) counts as one image.
    rest = sizes[1:]
    if any(s is None for s in rest):
        return None
    return int(np.prod(rest)) if rest else 1


def int8_coverage(model: onnx.ModelProto) -> Coverage:
    """Coverage of ``model`` (any ONNX file; one without Q/DQ is all float)."""
    work = onnx.ModelProto()
    work.CopyFrom(model)
    del work.graph.value_info[:]  # shapes another tool stored (some symbolic) are inferred anew
    try:
        inferred = onnx.shape_inference.infer_shapes(work, data_prop=True)
    except Exception:  # noqa: BLE001 - shapes are best effort; unknown tensors are noted
        inferred = model
    graph = inferred.graph
    info = {vi.name: vi for vi in [*graph.input, *graph.value_info, *graph.output]}
    constants = {i.name for i in graph.initializer}
    for node in graph.node:  # tensors computed from constants only are folded by any builder
        if node.op_type == "Constant" or (
            node.input and all(i in constants or not i for i in node.input)
        ):
            constants.update(node.output)
        elif node.op_type == "Shape":
            constants.update(node.output)
    producer = {o: n for n in graph.node for o in n.output}
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        if node.op_type == "Shape":
            continue  # reads the shape, not the data (folded on static shapes)
        for name in node.input:
            readers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}
    graph_inputs = {i.name for i in graph.input}

    def dq_source(name: str) -> str | None:
        """The float tensor behind DQ(Q(x)), if ``name`` is such a DQ output."""
        dq = producer.get(name)
        if dq is None or dq.op_type != "DequantizeLinear":
            return None
        q = producer.get(dq.input[0])
        if q is None or q.op_type != "QuantizeLinear":
            return None
        return q.input[0]

    def is_activation(name: str) -> bool:
        return bool(name) and name not in constants

    by_bytes: Counter[str] = Counter()
    by_count: Counter[str] = Counter()
    notes: list[str] = []
    float_tensors: dict[str, str] = {}
    unknown = 0

    def written(name: str, elem_type: int | None = None) -> None:
        nonlocal unknown
        vi = info.get(name)
        numel = _numel_per_image(vi)
        elem = elem_type if elem_type is not None else (vi.type.tensor_type.elem_type if vi else 0)
        if numel is None or elem not in _BYTES:
            unknown += 1
            return
        key = _NAMES[elem]
        by_bytes[key] += numel * _BYTES[elem]
        by_count[key] += 1
        if key != "int8":
            float_tensors[name] = key

    unfoldable = 0
    for node in graph.node:
        if node.op_type == "QuantizeLinear" and is_activation(node.input[0]):
            # Folded into the writer of its input when every reader of that input is a Q.
            src = node.input[0]
            if src in graph_inputs:
                continue  # the engine's entry: input in float, one Q layer writes INT8
            if (
                not all(r.op_type == "QuantizeLinear" for r in readers.get(src, []))
                or src in outputs
            ):
                unfoldable += 1
        if node.op_type == "DequantizeLinear" and dq_source(node.output[0]) is not None:
            if any(r.op_type not in INT8_READERS for r in readers.get(node.output[0], [])):
                unfoldable += 1

    float_written: set[str] = set()
    fused: set[str] = set()
    activation_tensors = [vi.name for vi in graph.input if vi.name not in constants]
    for node in graph.node:
        if node.op_type in _QDQ:
            continue
        activation_tensors += [o for o in node.output if is_activation(o)]
    for name in activation_tensors:
        vi = info.get(name)
        elem = vi.type.tensor_type.elem_type if vi is not None else 0
        if elem not in _BYTES:
            continue  # integer shape arithmetic, not an activation
        consumers = readers.get(name, [])
        if name in outputs or name in graph_inputs:  # in the caller's precision, as given
            written(name)
            if name in graph_inputs and any(r.op_type != "QuantizeLinear" for r in consumers):
                float_written.add(name)  # read in float: the first layers are a float island
            for q in consumers:
                if q.op_type == "QuantizeLinear":
                    written(q.output[0], onnx.TensorProto.INT8)
            continue
        if consumers and all(r.op_type == "QuantizeLinear" for r in consumers):
            q = consumers[0]
            zp_type = onnx.TensorProto.INT8
            if len(q.input) > 2 and q.input[2] in info:
                zp_type = info[q.input[2]].type.tensor_type.elem_type or zp_type
            written(name, zp_type if zp_type in _BYTES else onnx.TensorProto.INT8)
            continue
        writer = producer.get(name)
        if (
            len(consumers) == 1
            and consumers[0].op_type in POINTWISE_OPS
            and writer is not None
            and writer.op_type in FUSING_WRITERS
        ):
            fused.add(name)
            continue  # fused into its only reader
        if not consumers:
            continue
        written(name)
        float_written.add(name)
        for q in consumers:  # a standalone Q writes an INT8 copy as well
            if q.op_type == "QuantizeLinear":
                written(q.output[0], onnx.TensorProto.INT8)

    # Which activation inputs of each op type come through a DequantizeLinear.
    quantized_inputs: dict[str, list[int]] = {}
    for node in graph.node:
        if node.op_type in _QDQ or node.op_type in ("Shape", "Constant"):
            continue
        live = [i for i in node.input if is_activation(i)]
        if not live:
            continue
        if node.op_type in ("Conv", "ConvTranspose", "Gemm", "MatMul"):
            live = live[:1]  # weights behind a DQ are not activations
        live = [i for i in live if dq_source(i) is not None or _is_float(info.get(i))]
        if not live:
            continue
        via_dq = [i for i in live if dq_source(i) is not None]
        counts = quantized_inputs.setdefault(node.op_type, [0, 0])
        counts[0] += len(via_dq)
        counts[1] += len(live)
    # Float islands: the layers writing or reading a tensor written in float, joined through
    # the tensors between them (fused ones too).
    touching = {id(n) for n in graph.node if any(t in float_written for t in [*n.input, *n.output])}
    grew = True
    while grew:  # ops fused with a float-touching op belong to its layer
        grew = False
        for n in graph.node:
            if id(n) in touching or n.op_type in _QDQ:
                continue
            near = [producer.get(t) for t in n.input if t in fused]
            near += [r for t in n.output if t in fused for r in readers.get(t, [])]
            if any(m is not None and id(m) in touching for m in near):
                touching.add(id(n))
                grew = True
    float_nodes = [n for n in graph.node if id(n) in touching and n.op_type not in _QDQ]
    islands = _components(float_nodes, producer, float_written | fused)
    if unknown:
        notes.append(f"{unknown} activation tensor(s) without a static shape were not counted.")
    return Coverage(
        bytes_by_precision={**{k: 0 for k in ("int8", "fp16", "fp32")}, **by_bytes},
        tensors_by_precision={k: by_count.get(k, 0) for k in ("int8", "fp16", "fp32")},
        float_islands=islands,
        unfoldable_qdq=unfoldable,
        quantized_inputs={op: (v[0], v[1]) for op, v in sorted(quantized_inputs.items())},
        notes=notes,
        float_tensors=float_tensors,
    )


def _is_float(vi: onnx.ValueInfoProto | None) -> bool:
    return vi is not None and vi.type.tensor_type.elem_type in (
        onnx.TensorProto.FLOAT,
        onnx.TensorProto.FLOAT16,
        onnx.TensorProto.BFLOAT16,
        onnx.TensorProto.DOUBLE,
    )


def _components(
    nodes: list[onnx.NodeProto], producer: dict[str, onnx.NodeProto], links: set[str]
) -> int:
    """Connected components of ``nodes`` linked by a tensor in ``links`` one writes and another
    reads; a chain of fused ops (linked by fused tensors) counts once."""
    ids = {id(n): k for k, n in enumerate(nodes)}
    parent = list(range(len(nodes)))

    def find(k: int) -> int:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    for node in nodes:
        for name in node.input:
            src = producer.get(name)
            if name in links and src is not None and id(src) in ids:
                a, b = find(ids[id(node)]), find(ids[id(src)])
                parent[a] = b
    return len({find(k) for k in range(len(nodes))})
