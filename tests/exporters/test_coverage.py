"""INT8 coverage counted from the graph (exporters.coverage), on graphs small enough to count by hand."""

from __future__ import annotations

import onnx
from onnx import helper

from exporters.coverage import int8_coverage
from tests.tiny_graphs import conv_relu_model


def _conv_relu(quantized: bool) -> onnx.ModelProto:
    """input (n×4×8×8) → [Q → DQ] → Conv 1×1 → ReLU → output (n×4×8×8)."""
    return conv_relu_model(in_channels=4, batch="n", output="output", quantized=quantized, opset=17)


def test_counts_by_hand_float_graph():
    cov = int8_coverage(_conv_relu(quantized=False))
    # input and output, 256 floats each; the Conv output is fused into the ReLU.
    assert cov.bytes_by_precision == {"int8": 0, "fp16": 0, "fp32": 2 * 256 * 4}
    assert cov.float_islands == 1
    assert cov.unfoldable_qdq == 0


def test_counts_by_hand_quantized_input():
    cov = int8_coverage(_conv_relu(quantized=True))
    # + the INT8 copy the input's Q layer writes (256 bytes); the DQ is folded into the Conv.
    assert cov.bytes_by_precision == {"int8": 256, "fp16": 0, "fp32": 2 * 256 * 4}
    assert cov.quantized_inputs["Conv"] == (1, 1)
    assert cov.as_dict()["written_tensors"] == {"int8": 1, "fp16": 0, "fp32": 2}


def test_q_with_a_float_reader_beside_it_cannot_fold():
    model = _conv_relu(quantized=True)
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
