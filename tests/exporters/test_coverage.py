"""INT8 coverage counted from the graph (exporters.coverage), on graphs small enough to count by hand."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from exporters.coverage import int8_coverage


def _conv_relu(quantized: bool) -> onnx.ModelProto:
    """input (1×4×8×8) → [Q → DQ] → Conv → ReLU → output (1×4×8×8)."""
    inits = [
        numpy_helper.from_array(np.ones((4, 4, 1, 1), np.float32), "w"),
        numpy_helper.from_array(np.array(0.1, np.float32), "scale"),
        numpy_helper.from_array(np.array(0, np.int8), "zero"),
    ]
    nodes = []
    x = "input"
    if quantized:
        nodes += [
            helper.make_node("QuantizeLinear", ["input", "scale", "zero"], ["q"]),
            helper.make_node("DequantizeLinear", ["q", "scale", "zero"], ["dq"]),
        ]
        x = "dq"
    nodes += [
        helper.make_node("Conv", [x, "w"], ["c"]),
        helper.make_node("Relu", ["c"], ["output"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 4, 8, 8])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["n", 4, 8, 8])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_counts_by_hand_float_graph():
    cov = int8_coverage(_conv_relu(False))
    # input and output, 256 floats each; the Conv output is fused into the ReLU.
    assert cov.bytes_by_precision == {"int8": 0, "fp16": 0, "fp32": 2 * 256 * 4}
    assert cov.float_islands == 1
    assert cov.unfoldable_qdq == 0


def test_counts_by_hand_quantized_input():
    cov = int8_coverage(_conv_relu(True))
    # + the INT8 copy the input's Q layer writes (256 bytes); the DQ is folded into the Conv.
    assert cov.bytes_by_precision == {"int8": 256, "fp16": 0, "fp32": 2 * 256 * 4}
    assert cov.quantized_inputs["Conv"] == (1, 1)
    assert cov.as_dict()["written_tensors"] == {"int8": 1, "fp16": 0, "fp32": 2}


def test_q_with_a_float_reader_beside_it_cannot_fold():
    model = _conv_relu(True)
    graph = model.graph
    # Read the ReLU output with a Q (for a next Conv) and with a float Sigmoid as well.
    graph.output[0].name = "output2"
    graph.node[-1].output[0] = "r"
    graph.node.extend(
        [
            helper.make_node("QuantizeLinear", ["r", "scale", "zero"], ["q2"]),
            helper.make_node("DequantizeLinear", ["q2", "scale", "zero"], ["dq2"]),
            helper.make_node("Conv", ["dq2", "w"], ["c2"]),
            helper.make_node("Sigmoid", ["r"], ["s"]),
            helper.make_node("Add", ["c2", "s"], ["output2"]),
        ]
    )
    cov = int8_coverage(model)
    assert cov.unfoldable_qdq == 1
    assert cov.tensors_by_precision["fp32"] == 3  # input, r (float beside its Q), output2
