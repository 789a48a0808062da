"""The ``trt`` placement (default) against ``conservative``, on a hand-built RAN-shaped graph."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from calibration.placement import GraphIndex, plan_quantization
from calibration.qdq import build_qdq_model, with_fp16_float_part
from deploy_ran.errors import DeployRanError
from exporters.coverage import int8_coverage
from tests.calibration.tiny_ran import images, tiny_ran
from tests.paths import DATA


def _qdq(placement: str, **kwargs) -> onnx.ModelProto:
    model = tiny_ran()
    plan = plan_quantization(GraphIndex(model), placement=placement, **kwargs)
    ranges = {t: (-4.0, 4.0) for t in plan.activation_tensors}
    return build_qdq_model(model, plan, ranges)


def _readers(model: onnx.ModelProto) -> dict[str, list[onnx.NodeProto]]:
    out: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            out.setdefault(name, []).append(node)
    return out


def _from_dq(model: onnx.ModelProto, node_name: str) -> list[bool]:
    """For each input of ``node_name``: does it come from a DequantizeLinear?"""
    producer = {o: n for n in model.graph.node for o in n.output}
    node = next(n for n in model.graph.node if n.name == node_name)
    return [getattr(producer.get(i), "op_type", None) == "DequantizeLinear" for i in node.input]


def test_trt_placement_feeds_fusions_int8():
    qdq = _qdq("trt")
    assert _from_dq(qdq, "bn_t_bn")[0] and _from_dq(qdq, "bn_h_bn")[0]
    assert _from_dq(qdq, "maxpool") == [True]
    assert _from_dq(qdq, "resize_mask")[0]
    assert _from_dq(qdq, "mul_gate") == [True, True]
    # Every residual-Add output is read only by QuantizeLinear nodes: Conv+Add can write INT8.
    readers = _readers(qdq)
    for add in ("a", "b"):
        assert {r.op_type for r in readers[add]} == {"QuantizeLinear"}, add
    # The Sigmoid stays fused with what feeds it.
    assert _from_dq(qdq, "sigmoid_mask") == [False]


def test_conservative_placement_leaves_unit_boundaries_float():
    qdq = _qdq("conservative")
    assert _from_dq(qdq, "bn_t_bn")[0] is False
    assert _from_dq(qdq, "maxpool") == [False]
    assert _from_dq(qdq, "mul_gate") == [False, False]
    assert _from_dq(qdq, "add_res") == [False, True]  # the residual only
    readers = _readers(qdq)
    assert {"BatchNormalization", "MaxPool"} <= {r.op_type for r in readers["a"]}  # read in float


def test_float_mask_keeps_the_mask_side_float():
    qdq = _qdq("trt", float_mask=True)
    assert _from_dq(qdq, "mul_gate") == [True, False]
    assert _from_dq(qdq, "resize_mask")[0] is False


def test_unknown_placement_is_refused_with_the_choices():
    with pytest.raises(DeployRanError, match="trt, conservative"):
        plan_quantization(tiny_ran(), placement="fast")


def test_trt_placement_moves_more_bytes_in_int8():
    trt, cons = int8_coverage(_qdq("trt")), int8_coverage(_qdq("conservative"))
    assert trt.share("int8") > cons.share("int8")
    assert trt.bytes_by_precision["fp32"] < cons.bytes_by_precision["fp32"]
    assert trt.tensors_by_precision["fp32"] < cons.tensors_by_precision["fp32"]
    assert trt.unfoldable_qdq == 0
    assert trt.dq_fed_fraction() == 1.0
    assert cons.dq_fed_fraction() == 0.0


def test_trt_file_with_fp16_float_part_runs_and_stays_close():
    model = tiny_ran()
    qdq = with_fp16_float_part(_qdq("trt"))
    x = images(8)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    ref = ort.InferenceSession(model.SerializeToString(), so).run(None, {"input": x})[0]
    out = ort.InferenceSession(qdq.SerializeToString(), so).run(None, {"input": x})[0]
    assert out.dtype == np.float32 and np.isfinite(out).all()
    cos = float(np.sum(ref * out) / (np.linalg.norm(ref) * np.linalg.norm(out)))
    assert cos > 0.98
    assert int8_coverage(qdq).bytes_by_precision["fp16"] > 0


def _calibrate(cli, tmp_path, *extra: str):
    source = DATA / "tiny_ran.onnx"
    out = tmp_path / f"tiny{len(extra)}.int8.onnx"
    args = ["calibrate", str(source), "--calib-data", "synthetic", "--calib-images", "8"]
    args += ["--eval-images", "8", "--allow-failing", "--json", "--output", str(out), *extra]
    return cli(args), out


def test_calibrate_reports_placement_float_part_and_coverage(cli, tmp_path):
    import json

    result, out = _calibrate(cli, tmp_path)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{") :])
    assert report["placement"] == "trt" and report["float_precision"] == "fp16"
    assert report["coverage"]["bn_maxpool_resize_dq_fed"] == 1.0
    assert report["coverage"]["activation_bytes_per_image"]["fp16"] > 0
    old, _ = _calibrate(cli, tmp_path, "--placement", "conservative", "--float-precision", "fp32")
    assert old.exit_code == 0, old.output
    old_report = json.loads(old.output[old.output.index("{") :])
    assert old_report["placement"] == "conservative"
    assert old_report["coverage"]["activation_bytes_per_image"]["fp16"] == 0
    assert old_report["coverage"]["bn_maxpool_resize_dq_fed"] == 0.0


def test_calibrate_refuses_an_unknown_placement(cli, tmp_path):
    result, out = _calibrate(cli, tmp_path, "--placement", "fast")
    assert result.exit_code == 2
    assert "trt" in result.output and "conservative" in result.output
    assert not out.exists()
