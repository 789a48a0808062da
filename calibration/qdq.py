"""Write a Q/DQ model from a placement plan and measured ranges, with ONNX Runtime's quantizer.

ONNX Runtime's ``QDQQuantizer`` does the arithmetic and the node insertion (scales, zero points,
per-channel INT8 weights, the Q/DQ pairs); this module tells it exactly what to quantize:

* Conv/Gemm nodes of the plan (``op_types_to_quantize`` + ``nodes_to_quantize``), per-channel
  symmetric INT8 weights, biases left in float (TensorRT reads float biases; an INT32 bias behind a
  DequantizeLinear is not something it fuses), outputs not quantized;
* the plan's other activations (residual Add inputs, attention-op inputs when asked), marked
  directly;
* symmetric INT8 activations (zero point 0), per tensor, from the calibrated ranges.

ONNX Runtime puts one Q/DQ pair on a tensor and points *every* consumer at it. A consumer the plan
keeps in float (a BatchNormalization reading a residual tensor, a Conv the user excluded) is pointed
back at the float tensor afterwards, so exclusions are exact.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Mapping

import numpy as np
import onnx
import onnx.numpy_helper

from calibration.placement import QUANTIZED_WEIGHT_OPS, QuantPlan

_NO_NODE = "__deploy_ran_no_node__"  # ORT treats an empty nodes_to_quantize as "all nodes"


def _tensors_data(ranges: Mapping[str, tuple[float, float]]):
    from onnxruntime.quantization.calibrate import CalibrationMethod, TensorData, TensorsData

    return TensorsData(
        CalibrationMethod.MinMax,
        {
            name: TensorData(lowest=np.float32(lo), highest=np.float32(hi))
            for name, (lo, hi) in ranges.items()
        },
    )


def build_qdq_model(
    model: onnx.ModelProto, plan: QuantPlan, ranges: Mapping[str, tuple[float, float]]
) -> onnx.ModelProto:
    """A Q/DQ copy of ``model`` (which must carry inferred shapes) following ``plan``."""
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization.qdq_quantizer import QDQQuantizer

    extra_tensors = [t.tensor for t in plan.targets if t.op_type not in QUANTIZED_WEIGHT_OPS]
    missing = sorted({t.tensor for t in plan.targets if t.tensor not in ranges})
    if missing:
        raise KeyError(f"no calibrated range for {len(missing)} tensor(s), e.g. {missing[0]}")

    class PlannedQuantizer(QDQQuantizer):
        def quantize_model(self):  # noqa: D102 - marks the plan's extra activations first
            for tensor in extra_tensors:
                self.quantize_activation_tensor(tensor)
            return super().quantize_model()

    work = onnx.ModelProto()
    work.CopyFrom(model)
    quantizer = PlannedQuantizer(
        work,
        per_channel=True,
        reduce_range=False,
        weight_qType=QuantType.QInt8,
        activation_qType=QuantType.QInt8,
        tensors_range=_tensors_data(ranges),
        nodes_to_quantize=plan.weight_nodes or [_NO_NODE],
        nodes_to_exclude=None,
        op_types_to_quantize=list(QUANTIZED_WEIGHT_OPS),
        extra_options={
            "ActivationSymmetric": True,
            "WeightSymmetric": True,
            "OpTypesToExcludeOutputQuantization": list(QUANTIZED_WEIGHT_OPS),
            "QuantizeBias": False,
            "QDQDisableWeightAdjustForInt32Bias": True,
        },
    )
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            quantized = quantizer.quantize_model()
    finally:
        logger.setLevel(level)
    _restore_float_consumers(quantized, plan)
    quantizer.model.topological_sort()  # ORT appends its Q/DQ nodes at the end
    return quantized


def _restore_float_consumers(model: onnx.ModelProto, plan: QuantPlan) -> None:
    """Point consumers the plan keeps in float back at the float tensor; drop unused Q/DQ."""
    graph = model.graph
    initializers = {i.name for i in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    source_of: dict[str, str] = {}  # DQ output -> the float tensor its Q read
    for node in graph.node:
        if node.op_type != "DequantizeLinear":
            continue
        q = producer.get(node.input[0])
        if q is not None and q.op_type == "QuantizeLinear" and q.input[0] not in initializers:
            source_of[node.output[0]] = q.input[0]
    wanted = plan.target_pairs()
    for node in graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        for k, name in enumerate(node.input):
            original = source_of.get(name)
            if original is not None and (node.name, original) not in wanted:
                node.input[k] = original
    # Remove Q/DQ pairs nobody reads any more (DQ first, then its Q), then orphaned constants.
    for _ in range(2):
        used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
        dead = [
            n
            for n in graph.node
            if n.op_type in ("QuantizeLinear", "DequantizeLinear")
            and not any(o in used for o in n.output)
        ]
        for n in dead:
            graph.node.remove(n)
    used = {i for n in graph.node for i in n.input}
    for init in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(init)


def count_qdq(model: onnx.ModelProto) -> dict[str, int]:
    """Q and DQ node counts, and how many DQs feed weights (INT8 initializers)."""
    initializers = {i.name for i in model.graph.initializer}
    q = sum(1 for n in model.graph.node if n.op_type == "QuantizeLinear")
    dq = [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
    weights = sum(1 for n in dq if n.input[0] in initializers)
    return {"quantize": q, "dequantize": len(dq), "int8_weights": weights}


#: Opset from which QuantizeLinear/DequantizeLinear take FP16 scales (and DQ outputs FP16).
FP16_QDQ_OPSET = 19


def with_fp16_float_part(
    qdq: onnx.ModelProto, keep_fp32: list[str] | None = None
) -> onnx.ModelProto:
    """A copy of the Q/DQ model whose non-quantized part is FP16, graph I/O still FP32.

    TensorRT builds strongly typed networks: a Q/DQ file whose float part is FP32 gives an engine
    whose Sigmoid, Resize, Add, Mul and BatchNorm run in FP32, so "INT8" is barely faster than FP16.
    NVIDIA's tooling (ModelOpt's ``high_precision_dtype="fp16"``) puts that part in FP16; so does
    this. Q/DQ scales become FP16, which QuantizeLinear/DequantizeLinear accept from opset 19: the
    default-domain opset is raised to 19 (the ops that changed between 13 and 19 keep their old
    meaning at their default attributes). ``keep_fp32`` is the FP16 keep-list
    (``exporters.fp16.DEFAULT_KEEP_FP32`` when ``None``), with one exception by default: a
    ReduceMean that is a global average pool (the head's, over all spatial axes) runs in FP16 as
    in ModelOpt's files, since an FP32 island there costs a Cast and an FP32 copy of the last
    feature map; every other ReduceMean (attention mean/variance) stays FP32.
    """
    from exporters.fp16 import DEFAULT_KEEP_FP32, convert_model_to_fp16

    work = onnx.ModelProto()
    work.CopyFrom(qdq)
    for entry in work.opset_import:
        if entry.domain in ("", "ai.onnx") and entry.version < FP16_QDQ_OPSET:
            entry.version = FP16_QDQ_OPSET
    if keep_fp32 is not None:
        return convert_model_to_fp16(work, keep_fp32)
    ops = [op for op in DEFAULT_KEEP_FP32 if op != "ReduceMean"]
    nodes = [
        n.name
        for n in work.graph.node
        if n.op_type == "ReduceMean" and not _is_global_pool(work, n)
    ]
    return convert_model_to_fp16(work, ops, keep_fp32_nodes=nodes)


def _is_global_pool(model: onnx.ModelProto, node: onnx.NodeProto) -> bool:
    """A ReduceMean over exactly the spatial axes (2, 3) of an NCHW tensor."""
    axes: list[int] | None = None
    for attr in node.attribute:
        if attr.name == "axes":
            axes = list(attr.ints)
    if axes is None and len(node.input) > 1 and node.input[1]:
        init = next((i for i in model.graph.initializer if i.name == node.input[1]), None)
        if init is not None:
            axes = [int(a) for a in onnx.numpy_helper.to_array(init).reshape(-1)]
        else:
            const = next(
                (
                    n
                    for n in model.graph.node
                    if n.op_type == "Constant" and node.input[1] in n.output
                ),
                None,
            )
            if const is not None:
                value = onnx.numpy_helper.to_array(const.attribute[0].t)
                axes = [int(a) for a in value.reshape(-1)]
    if not axes:
        return False
    return sorted(a % 4 for a in axes) == [2, 3]
