"""INT8 Q/DQ: TensorRT's placement rules, exclusions, the range cache, sensitivity, bad input."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from calibration.placement import GraphIndex, plan_quantization, quantizable_groups
from calibration.quantize import cache_path_for, quantize_int8
from calibration.ranges import CalibrationError, MethodConfig, cache_key, check_cache
from calibration.sensitivity import AutoStep, GroupSensitivity, SensitivityReport, auto_exclude
from deploy_ran.artifacts import read_artifact_info
from deploy_ran.compare.runner_checks import RunnerChecks
from deploy_ran.errors import DeployRanError, OnnxFileError
from exporters.graph_checks import check_graph

# run_model: calibration sits below the runners; the check and sensitivity run an OrtRunner.
FAST = dict(
    data="synthetic",
    method="minmax",
    num_images=16,
    batch=8,
    eval_images=8,
    run_model=RunnerChecks().run_model,
)


@pytest.fixture(scope="module")
def fp32(export_cache):
    return export_cache("ran56_cifar", image_size=32)


@pytest.fixture(scope="module")
def int8(fp32, tmp_path_factory):
    out = tmp_path_factory.mktemp("int8") / "m.int8.onnx"
    return quantize_int8(fp32.path, out, **FAST)


def _graph(model):
    producer = {o: n for n in model.graph.node for o in n.output}
    consumers = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    return producer, consumers, inits


def _reads_dq(node, producer, inits, index=None):
    inputs = node.input if index is None else [node.input[index]]
    return [
        getattr(producer.get(i), "op_type", None) == "DequantizeLinear" and i not in inits
        for i in inputs
    ]


def test_qdq_follows_tensorrt_placement(int8):
    model = onnx.load(int8.path)
    producer, consumers, inits = _graph(model)
    qdq = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert qdq
    for n in qdq:  # symmetric INT8: zero points are int8 zeros
        zero_point = inits[n.input[2]]
        assert zero_point.dtype == np.int8 and not zero_point.any()
    for n in model.graph.node:
        if n.op_type in ("Conv", "Gemm"):
            assert _reads_dq(n, producer, inits, 0) == [True], n.name
            weight_dq = producer[n.input[1]]
            assert weight_dq.op_type == "DequantizeLinear"
            assert inits[weight_dq.input[0]].dtype == np.int8
            scale = inits[weight_dq.input[1]]
            out_channels = inits[weight_dq.input[0]].shape[0]
            assert scale.shape == (out_channels,)  # per-channel, axis 0
            axis = {a.name: a.i for a in weight_dq.attribute}.get("axis", 1)
            assert axis == 0
            for out in n.output:  # a Conv output is only quantized as a residual Add input
                for q in (c for c in consumers.get(out, []) if c.op_type == "QuantizeLinear"):
                    readers = [r for dq in consumers[q.output[0]] for r in consumers[dq.output[0]]]
                    assert readers and all(r.op_type == "Add" for r in readers), n.name
        if n.op_type == "Add" and any(
            getattr(producer.get(i), "op_type", None) == "Conv" for i in n.input
        ):
            # Residual Add: the Conv input is read directly (Conv+Add fuse), the other via Q/DQ.
            assert sorted(_reads_dq(n, producer, inits)) == [False, True], n.name
        # The default ("trt") placement: BN, MaxPool, Resize and the gate Mul read INT8, so
        # every residual-Add output feeds only QuantizeLinear nodes; the Sigmoid stays fused.
        if n.op_type == "Sigmoid":
            assert not any(_reads_dq(n, producer, inits)), f"{n.name} should stay in float"
        if n.op_type in ("BatchNormalization", "MaxPool", "Resize"):
            assert _reads_dq(n, producer, inits, 0)[0], f"{n.name} reads a float tensor"
        if n.op_type == "Mul":
            assert all(_reads_dq(n, producer, inits)), f"gate {n.name} reads a float tensor"
        if n.op_type == "Add" and n.output[0] not in {o.name for o in model.graph.output}:
            readers = {r.op_type for r in consumers.get(n.output[0], [])} - {"Shape"}
            assert readers == {"QuantizeLinear"}, (n.name, readers)
    for out in model.graph.output:
        assert producer[out.name].op_type not in ("QuantizeLinear", "DequantizeLinear")
    # Static-graph promises and metadata.
    report = check_graph(model, static_batch=False)
    assert report.ok, report.problems
    assert all(r.output_hw for r in report.resizes)
    info = read_artifact_info(int8.path)
    assert info.precision == "int8"
    quant = json.loads(info.extra["quantization"])
    assert quant["method"] == {"method": "minmax"} and quant["calibration_images"] == 16
    assert set(quant["kept_float_ops"]) == {"Sigmoid"}
    assert quant["placement"] == "trt" and int8.float_precision == "fp16"
    assert int8.coverage is not None and int8.coverage.dq_fed_fraction() == 1.0
    assert int8.qdq["int8_weights"] == len(int8.plan.weight_nodes) > 0
    assert int8.agreement[0].finite and int8.agreement[0].rel_l2 < 0.2


def test_attention_ops_can_be_included(fp32):
    index = GraphIndex(onnx.load(fp32.path))
    conservative = plan_quantization(index, placement="conservative")
    default = plan_quantization(index)  # "trt": Resize and gate Mul read INT8, Sigmoid fused
    included = plan_quantization(index, include_attention=True)
    ops = lambda plan: {t.op_type for t in plan.targets}  # noqa: E731
    assert not ops(conservative) & {"Sigmoid", "Resize", "Mul", "BatchNormalization", "MaxPool"}
    assert {"Resize", "Mul", "BatchNormalization", "MaxPool"} <= ops(default)
    assert "Sigmoid" not in ops(default)
    assert {"Sigmoid", "Resize", "Mul"} <= ops(included)
    gates = [t for t in included.targets if t.op_type == "Mul"]
    assert len({t.node for t in gates}) == 3  # one attention gate per module in ran56_cifar


def test_groups_follow_the_network(fp32):
    index = GraphIndex(onnx.load(fp32.path))
    assert quantizable_groups(index) == [
        "stem",
        "stage1.transition",
        "stage1.module1",
        "stage2.transition",
        "stage2.module1",
        "stage3.transition",
        "stage3.module1",
        "final",
        "head",
    ]
    sigmoids = [n.name for n in index.nodes if n.op_type == "Sigmoid"]
    assert [index.group[s] for s in sigmoids] == [
        "stage1.module1",
        "stage2.module1",
        "stage3.module1",
    ]


def test_exclude_keeps_groups_in_float(fp32, int8, tmp_path):
    result = quantize_int8(
        fp32.path,
        tmp_path / "x.onnx",
        exclude=["stage2.*", "head"],
        cache_path=cache_path_for(int8.path),
        **FAST,
    )
    assert result.plan.excluded_groups == ["head", "stage2.module1", "stage2.transition"]
    model = onnx.load(result.path)
    producer, _, inits = _graph(model)
    index = GraphIndex(onnx.load(fp32.path))
    for n in model.graph.node:
        if n.op_type in ("Conv", "Gemm") and index.group.get(n.name, "").startswith(
            ("stage2", "head")
        ):
            assert not any(_reads_dq(n, producer, inits)), n.name
            assert producer.get(n.input[1]) is None  # float weights
    assert result.qdq["int8_weights"] < int8.qdq["int8_weights"]
    # Exclusions do not change the ranges: the first run's cache served this one.
    assert result.ranges.from_cache and "reused" in result.ranges.cache_note


def test_cache_is_reused_and_recomputed_with_a_reason(fp32, tmp_path):
    out = tmp_path / "c.int8.onnx"
    first = quantize_int8(fp32.path, out, **FAST)
    cache = cache_path_for(out)
    assert cache.exists() and not first.ranges.from_cache
    stored = json.loads(cache.read_text())
    assert stored["key"] == first.ranges.key and len(stored["ranges"]) == len(first.ranges.ranges)
    assert first.as_dict()["calibration_device"] == stored["key_parts"]["device"] == "cpu (fp32)"

    second = quantize_int8(fp32.path, out, **FAST)
    assert second.ranges.from_cache and "reused" in second.ranges.cache_note
    assert second.ranges.ranges == first.ranges.ranges

    other = quantize_int8(fp32.path, out, **{**FAST, "method": "percentile"})
    assert not other.ranges.from_cache and "method" in other.ranges.cache_note
    assert json.loads(cache.read_text())["key"] == other.ranges.key  # rewritten whole


def test_cache_staleness_reasons(tmp_path):
    method = MethodConfig("minmax")
    key, parts = cache_key("onnx-a", "data-a", {"crop_size": 32}, method)
    cache = tmp_path / "c.json"
    assert check_cache(cache, key, parts, ["t"]).reason == "no cache yet"
    cache.write_text(json.dumps({"key": key, "key_parts": parts, "ranges": {"t": [-1, 1]}}))
    assert check_cache(cache, key, parts, ["t"]).usable
    assert "lacks 1 tensor" in check_cache(cache, key, parts, ["t", "u"]).reason
    for changed, reason in [
        (("onnx-b", "data-a", {"crop_size": 32}, method), "ONNX file changed"),
        (("onnx-a", "data-b", {"crop_size": 32}, method), "calibration data changed"),
        (("onnx-a", "data-a", {"crop_size": 64}, method), "preprocessing changed"),
        (("onnx-a", "data-a", {"crop_size": 32}, MethodConfig("entropy")), "method"),
        (("onnx-a", "data-a", {"crop_size": 32}, MethodConfig("entropy", bins=1024)), "method"),
    ]:
        new_key, new_parts = cache_key(*changed)
        status = check_cache(cache, new_key, new_parts, ["t"])
        assert not status.usable and reason in status.reason
    cache.write_text("{ not json")
    assert "unreadable" in check_cache(cache, key, parts, ["t"]).reason


def test_sensitivity_and_auto_exclude(fp32, int8, tmp_path):
    result = quantize_int8(
        fp32.path,
        tmp_path / "s.onnx",
        sensitivity=True,
        exclude=["auto"],
        target_agreement=1.0,
        cache_path=cache_path_for(int8.path),
        **FAST,
    )
    report = result.sensitivity
    assert [g.group for g in report.groups] == quantizable_groups(GraphIndex(onnx.load(fp32.path)))
    assert sorted(g.rank for g in report.groups) == list(range(1, len(report.groups) + 1))
    worst = min(report.groups, key=lambda g: g.rank)
    assert worst.rel_l2 == max(g.rel_l2 for g in report.groups)
    assert all(g.rel_l2 > 0 and g.top1 is not None for g in report.groups)
    # Each group alone moves the output less than all of them together.
    assert max(g.rel_l2 for g in report.groups) < report.all_int8.rel_l2
    assert report.target_agreement == 1.0 and report.steps[0].excluded == []
    assert result.plan.excluded_groups == sorted(report.excluded)
    if report.met_target:
        assert report.steps[-1].top1 >= 1.0
    saved = json.loads(result.sensitivity_path.read_text())
    assert saved["groups"][0]["group"] == "stem" and saved["eval_images"] == 8
    assert saved["target_agreement"] == 1.0


class _ScriptedEvaluator:
    """Stands in for ONNX Runtime: agreement rises as groups are excluded."""

    def __init__(self, gains):
        self.gains, self.calls = gains, []

    def measure(self, *, exclude_groups=(), only_groups=None):
        self.calls.append(list(exclude_groups))
        top1 = 0.95 + sum(self.gains[g] for g in exclude_groups)

        class R:
            rel_l2 = 0.1
            top1 = 0.0

        R.top1 = top1
        return R, None


def test_auto_exclude_takes_the_most_sensitive_first_and_stops_at_the_target():
    groups = [
        GroupSensitivity("a", 1, 1, 0.01, 1.0, 1.0, rank=3),
        GroupSensitivity("b", 1, 1, 0.30, 1.0, 0.96, rank=1),
        GroupSensitivity("c", 1, 1, 0.10, 1.0, 0.99, rank=2),
    ]
    report = SensitivityReport(8, "minmax", False, AutoStep([], 0.4, 0.95), groups)
    evaluator = _ScriptedEvaluator({"a": 0.001, "b": 0.03, "c": 0.02})
    auto_exclude(report, evaluator, target=0.99)
    assert evaluator.calls == [["b"], ["b", "c"]]
    assert report.excluded == ["b", "c"] and report.met_target
    assert [s.excluded for s in report.steps] == [[], ["b"], ["b", "c"]]

    unreachable = SensitivityReport(8, "minmax", False, AutoStep([], 0.4, 0.5), list(groups))
    auto_exclude(unreachable, _ScriptedEvaluator({"a": 0, "b": 0, "c": 0}), target=0.99)
    assert unreachable.excluded == ["b", "c", "a"] and unreachable.met_target is False


def test_bad_input_is_refused_before_work(fp32, int8, tmp_path):
    with pytest.raises(OnnxFileError, match="already a INT8"):
        quantize_int8(int8.path, tmp_path / "again.onnx", **FAST)
    with pytest.raises(DeployRanError, match="at least 1"):
        quantize_int8(fp32.path, tmp_path / "n.onnx", **{**FAST, "num_images": 0})
    with pytest.raises(CalibrationError, match="Unknown calibration method"):
        quantize_int8(fp32.path, tmp_path / "n.onnx", **{**FAST, "method": "kl"})
    with pytest.raises(DeployRanError, match="does not exist"):
        quantize_int8(fp32.path, tmp_path / "n.onnx", **{**FAST, "data": tmp_path / "nope"})
    with pytest.raises(DeployRanError, match="overwrite"):
        quantize_int8(fp32.path, fp32.path, **FAST)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_unwritable_output_folder(fp32, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        with pytest.raises(DeployRanError, match="not writable"):
            quantize_int8(fp32.path, locked / "m.onnx", **FAST)
    finally:
        locked.chmod(stat.S_IRWXU)


def test_cli_calibrate(cli, fp32, tmp_path):
    out = tmp_path / "cli.int8.onnx"
    args = ["calibrate", str(fp32.path), "--data", "synthetic", "--num-images", "16"]
    args += ["--method", "minmax", "--eval-images", "8", "--output", str(out)]
    first = cli(args)
    assert first.exit_code == 0, first.output
    assert "synthetic noise" in first.output and "NVIDIA recommends" in first.output
    assert "top-1 agreement" in first.output and out.exists()
    second = cli([*args, "--json"])
    assert second.exit_code == 0, second.output
    report = json.loads(second.stdout)
    assert report["from_cache"] is True and "reused" in report["cache_note"]
    assert any("calibrated on 16 images" in w for w in report["warnings"])
    assert report["kept_float"] and report["agreement_vs_fp32"][0]["output"] == "logits"

    bad = cli(["calibrate", str(out), "--data", "synthetic"])
    assert bad.exit_code == 2 and "already a INT8" in bad.output
    zero = cli([*args[:-2], "--num-images", "0", "--output", str(tmp_path / "z")])
    assert zero.exit_code == 2 and "1,000,000" in zero.output  # the allowed range
    missing = cli(["calibrate", str(fp32.path), "--data", str(tmp_path / "none")])
    assert missing.exit_code == 2 and "does not exist" in missing.output
    unwritable = cli([*args[:-2], "--output", str(tmp_path / "no" / "such" / "dir" / "m.onnx")])
    assert unwritable.exit_code == 2 and "does not exist" in unwritable.output
    assert not (tmp_path / "z").exists()


def test_static_batch_model(export_cache, tmp_path):
    static = export_cache("ran56_cifar", static_batch=True, batch=2)
    result = quantize_int8(static.path, tmp_path / "s.onnx", **{**FAST, "num_images": 5})
    assert result.ranges.num_images == 4  # whole batches of 2 only
    model = onnx.load(result.path)
    report = check_graph(model, static_batch=True)
    assert report.ok and report.shape_ops == 0, report.problems


def test_exclude_pattern_that_matches_nothing_is_refused(fp32):
    from calibration.placement import plan_quantization

    with pytest.raises(DeployRanError, match="match no node") as err:
        plan_quantization(onnx.load(fp32.path), exclude=["stage2.*", "nonexistent*"])
    assert err.value.param == "exclude" and "stage1" in err.value.hint
