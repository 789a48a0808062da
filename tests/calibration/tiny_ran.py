"""A hand-built ONNX graph with a RAN's shapes of interest, small enough to quantize in a test.

    x ─ Conv ─ ReLU ─ Conv ─ Add(+x) = a ─ BN ─ ReLU ─ Conv = trunk ─────────────┐
                                         └ MaxPool ─ Conv ─ Resize ─ Sigmoid ─ 1+M ─ Mul = gate
    gate ─ Add(+a) ─ BN ─ ReLU ─ GlobalAveragePool ─ Flatten ─ Gemm ─ logits

Parameter names follow the exporter's PyTorch paths, so the groups are a RAN's (``stem``,
``stage1.module1``, ``head``).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

CHANNELS = 3
SIZE = 16


def tiny_ran(seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    c = CHANNELS
    inits = []

    def weight(name: str, shape: tuple[int, ...]) -> str:
        inits.append(
            numpy_helper.from_array((rng.standard_normal(shape) * 0.3).astype(np.float32), name)
        )
        return name

    def bn(prefix: str, x: str, y: str) -> onnx.NodeProto:
        names = []
        for part, value in (
            ("weight", 1.0),
            ("bias", 0.1),
            ("running_mean", 0.0),
            ("running_var", 1.0),
        ):
            name = f"{prefix}.{part}"
            inits.append(numpy_helper.from_array(np.full(c, value, np.float32), name))
            names.append(name)
        return helper.make_node("BatchNormalization", [x, *names], [y], name=f"bn_{y}")

    m = "stages.0.attention.0"
    inits.append(numpy_helper.from_array(np.array(1.0, np.float32), "one"))
    # The exporter's static-size Resize: sizes = Concat(batch from Shape, constant C, H, W).
    inits.append(numpy_helper.from_array(np.array([c, SIZE, SIZE], np.int64), "chw"))
    nodes = [
        helper.make_node(
            "Conv",
            ["input", weight("stem.conv.weight", (c, c, 3, 3))],
            ["s"],
            name="conv_stem",
            pads=[1, 1, 1, 1],
        ),
        helper.make_node("Relu", ["s"], ["s_r"], name="relu_stem"),
        helper.make_node(
            "Conv",
            ["s_r", weight("stem.conv2.weight", (c, c, 3, 3))],
            ["s2"],
            name="conv_stem2",
            pads=[1, 1, 1, 1],
        ),
        helper.make_node("Add", ["s2", "input"], ["a"], name="add_res"),
        bn(f"{m}.trunk.bn", "a", "t_bn"),
        helper.make_node("Relu", ["t_bn"], ["t_r"], name="relu_trunk"),
        helper.make_node(
            "Conv",
            ["t_r", weight(f"{m}.trunk.conv.weight", (c, c, 3, 3))],
            ["trunk"],
            name="conv_trunk",
            pads=[1, 1, 1, 1],
        ),
        helper.make_node(
            "MaxPool", ["a"], ["mp"], name="maxpool", kernel_shape=[2, 2], strides=[2, 2]
        ),
        helper.make_node(
            "Conv", ["mp", weight(f"{m}.mask.conv.weight", (c, c, 1, 1))], ["mk"], name="conv_mask"
        ),
        helper.make_node("Shape", ["mk"], ["nb"], name="shape_mask", start=0, end=1),
        helper.make_node("Concat", ["nb", "chw"], ["up_sizes"], name="concat_sizes", axis=0),
        helper.make_node(
            "Resize",
            ["mk", "", "", "up_sizes"],
            ["up"],
            name="resize_mask",
            mode="linear",
            coordinate_transformation_mode="align_corners",
        ),
        helper.make_node("Sigmoid", ["up"], ["sig"], name="sigmoid_mask"),
        helper.make_node("Add", ["sig", "one"], ["one_plus"], name="add_one"),
        helper.make_node("Mul", ["trunk", "one_plus"], ["gate"], name="mul_gate"),
        helper.make_node("Add", ["gate", "a"], ["b"], name="add_out"),
        bn("head_bn", "b", "h_bn"),
        helper.make_node("Relu", ["h_bn"], ["h_r"], name="relu_head"),
        helper.make_node("GlobalAveragePool", ["h_r"], ["pool"], name="gap"),
        helper.make_node("Flatten", ["pool"], ["flat"], name="flatten"),
        helper.make_node(
            "Gemm",
            ["flat", weight("fc.weight", (10, c)), weight("fc.bias", (10,))],
            ["logits"],
            name="gemm_fc",
            transB=1,
        ),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_ran",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", c, SIZE, SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return onnx.shape_inference.infer_shapes(model)


def images(n: int = 16, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, CHANNELS, SIZE, SIZE)).astype(np.float32)
