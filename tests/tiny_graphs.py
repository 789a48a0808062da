"""Tiny ONNX graphs built by hand, for tests that need a real file but not a real network.

A graph of one to five nodes loads and runs in milliseconds, and its outputs can be worked out by
hand, where an exported ``ran56_cifar`` takes seconds. Tests import these builders
(``from tests.tiny_graphs import one_node_onnx``) instead of copying a ``_tiny_onnx`` each.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _model(graph: onnx.GraphProto, opset: int) -> onnx.ModelProto:
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def one_node_onnx(
    path: Path,
    op: str = "Identity",
    *,
    shape: Sequence[int | str] = ("batch", 3, 8, 8),
    output: str = "out",
    opset: int = 18,
) -> Path:
    """``input`` → one element-wise node (``Identity``, ``Relu``...) → ``output``, same shape.

    A string in ``shape`` is a symbolic dimension (a dynamic batch, say). Saved at ``path``.
    """
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, list(shape))
    y = helper.make_tensor_value_info(output, TensorProto.FLOAT, list(shape))
    graph = helper.make_graph([helper.make_node(op, ["input"], [output])], "g", [x], [y])
    onnx.save(_model(graph, opset), path)
    return path


def conv_relu_model(
    *,
    in_channels: int = 3,
    out_channels: int = 4,
    kernel: int = 1,
    size: int = 8,
    batch: int | str = "batch",
    output: str = "y",
    quantized: bool = False,
    opset: int = 18,
) -> onnx.ModelProto:
    """``input`` → [QuantizeLinear → DequantizeLinear] → Conv (weights all 1, "same" padding)
    → Relu → ``output``: the smallest graph with a fusable Conv, with or without a Q/DQ input.

    The Q/DQ pair uses scale 0.1 and zero point 0 (initializers ``scale`` and ``zero``); the
    weights are ``w``. Returned unsaved, so a test can edit the graph first.
    """
    inits = [
        numpy_helper.from_array(
            np.ones((out_channels, in_channels, kernel, kernel), np.float32), "w"
        )
    ]
    nodes, x = [], "input"
    if quantized:
        inits += [
            numpy_helper.from_array(np.array(0.1, np.float32), "scale"),
            numpy_helper.from_array(np.array(0, np.int8), "zero"),
        ]
        nodes += [
            helper.make_node("QuantizeLinear", ["input", "scale", "zero"], ["q"]),
            helper.make_node("DequantizeLinear", ["q", "scale", "zero"], ["dq"]),
        ]
        x = "dq"
    pad = kernel // 2
    conv = {"pads": [pad] * 4} if pad else {}
    nodes += [
        helper.make_node("Conv", [x, "w"], ["c"], **conv),
        helper.make_node("Relu", ["c"], [output]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [
            helper.make_tensor_value_info(
                "input", TensorProto.FLOAT, [batch, in_channels, size, size]
            )
        ],
        [
            helper.make_tensor_value_info(
                output, TensorProto.FLOAT, [batch, out_channels, size, size]
            )
        ],
        inits,
    )
    return _model(graph, opset)


def attention_net_onnx(
    path: Path, *, batch: int | str = "batch", precision: str = "fp32", metadata: bool = True
) -> Path:
    """A deploy-ran-shaped file in milliseconds: ``input`` [batch, 3, 8, 8] → [Q/DQ] → Conv(4)
    → ``logits`` [batch, 4] (global pool) and ``attention_map`` [batch, 4, 8, 8] (sigmoid).

    ``precision="int8"`` puts a Q/DQ pair on the input; the precision is also written to the
    metadata, which (with ``metadata=True``) says model ``tiny``, 4 classes and 8 px
    preprocessing, as an export of the toolkit would.
    """
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    nodes, inits = [], [numpy_helper.from_array(w, "w")]
    conv_in = "input"
    if precision == "int8":
        inits += [
            numpy_helper.from_array(np.array(0.05, np.float32), "s"),
            numpy_helper.from_array(np.array(0, np.int8), "z"),
        ]
        nodes += [
            helper.make_node("QuantizeLinear", ["input", "s", "z"], ["q"]),
            helper.make_node("DequantizeLinear", ["q", "s", "z"], ["dq"]),
        ]
        conv_in = "dq"
    nodes += [
        helper.make_node("Conv", [conv_in, "w"], ["feat"], pads=[1, 1, 1, 1]),
        helper.make_node("Sigmoid", ["feat"], ["attention_map"]),
        helper.make_node("GlobalAveragePool", ["feat"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, 8, 8])],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 4]),
            helper.make_tensor_value_info("attention_map", TensorProto.FLOAT, [batch, 4, 8, 8]),
        ],
        inits,
    )
    model = _model(graph, 18)
    if metadata:
        pre = {"resize_size": 8, "crop_size": 8, "mean": [0.5] * 3, "std": [0.25] * 3}
        for key, value in {
            "model": "tiny",
            "num_classes": "4",
            "precision": precision,
            "preprocessing": json.dumps(pre),
        }.items():
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
    onnx.save(model, path)
    return path
