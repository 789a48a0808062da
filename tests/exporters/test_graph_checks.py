"""The static-graph checks reject what the exporter must never hand out."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from exporters.graph_checks import check_graph


def _resize_model(
    sizes_from: str = "constant",
    mode: str = "linear",
    ctm: str = "align_corners",
    batch: int | str = "batch",
) -> onnx.ModelProto:
    """x[N,4,5,5] → Resize → y[N,4,10,10], with `sizes` built in different ways."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 4, 5, 5])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    nodes, inits = [], []
    if sizes_from == "constant":
        inits.append(numpy_helper.from_array(np.array([2, 4, 10, 10], np.int64), "sizes"))
        resize_inputs = ["x", "", "", "sizes"]
    elif sizes_from == "batch":
        nodes.append(helper.make_node("Shape", ["x"], ["n"], start=0, end=1))
        inits.append(numpy_helper.from_array(np.array([4, 10, 10], np.int64), "chw"))
        nodes.append(helper.make_node("Concat", ["n", "chw"], ["sizes"], axis=0))
        resize_inputs = ["x", "", "", "sizes"]
    elif sizes_from == "spatial_shape":  # H, W read from the input's shape at run time
        nodes.append(helper.make_node("Shape", ["x"], ["s"]))
        inits.append(numpy_helper.from_array(np.array([1, 1, 2, 2], np.int64), "two"))
        nodes.append(helper.make_node("Mul", ["s", "two"], ["sizes"]))
        resize_inputs = ["x", "", "", "sizes"]
    elif sizes_from == "shape_slice_hw":
        nodes.append(helper.make_node("Shape", ["x"], ["nchw"], start=0, end=4))
        inits.append(numpy_helper.from_array(np.array([], np.int64), "empty"))
        nodes.append(helper.make_node("Concat", ["nchw", "empty"], ["sizes"], axis=0))
        resize_inputs = ["x", "", "", "sizes"]
    elif sizes_from == "scales":
        inits.append(numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"))
        resize_inputs = ["x", "", "scales"]
    nodes.append(
        helper.make_node(
            "Resize", resize_inputs, ["y"], mode=mode, coordinate_transformation_mode=ctm
        )
    )
    graph = helper.make_graph(nodes, "g", [x], [y], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_constant_and_batch_sizes_pass():
    for how in ("constant", "batch"):
        report = check_graph(
            _resize_model(how, batch=2 if how == "constant" else "batch"), static_batch=False
        )
        assert report.ok, (how, report.problems)
        assert report.resizes[0].output_hw == (10, 10)


def test_sizes_from_spatial_shape_fail():
    report = check_graph(_resize_model("spatial_shape"), static_batch=False)
    assert not report.ok
    assert "run time" in report.resizes[0].source


def test_sizes_reading_h_w_from_shape_fail():
    report = check_graph(_resize_model("shape_slice_hw"), static_batch=False)
    assert not report.ok
    assert "only the batch dimension" in report.resizes[0].source


def test_scales_are_not_a_static_size():
    report = check_graph(_resize_model("scales"), static_batch=False)
    assert not report.ok


def test_wrong_mode_and_coordinates_fail():
    report = check_graph(
        _resize_model("batch", mode="nearest", ctm="half_pixel"), static_batch=False
    )
    problems = " ".join(report.resizes[0].problems)
    assert "mode='nearest'" in problems and "half_pixel" in problems


def test_static_batch_rejects_shape_ops():
    report = check_graph(_resize_model("batch", batch=2), static_batch=True)
    assert any("Shape" in p for p in report.problems)


def test_dynamic_spatial_dimension_is_reported():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4, "h", 5])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    report = check_graph(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), static_batch=False
    )
    assert not report.ok
    assert any("dynamic dimension" in p for p in report.problems)
