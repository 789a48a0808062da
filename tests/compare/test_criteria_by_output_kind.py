"""Criteria by output kind: what cosine and relative L2 let through must fail here (issue 10)."""

from __future__ import annotations

import numpy as np
import pytest

from deploy_ran.compare.criteria import criteria_for
from deploy_ran.compare.judge import compare_outputs
from deploy_ran.compare.kinds import output_kind
from deploy_ran.compare.run import compare
from deploy_ran.runners.base import BaseRunner, TensorSpec


def attention_map(n: int = 4, seed: int = 0) -> np.ndarray:
    """Sigmoid maps near 0.5 with a small asymmetric spatial pattern, as random weights give."""
    rng = np.random.default_rng(seed)
    x = np.linspace(-1, 1, 8)
    pattern = np.add.outer(0.5 * x**2, x)  # not symmetric under a left-right flip
    logits = 0.01 * pattern[None, None] + 0.001 * rng.standard_normal((n, 2, 8, 8))
    return (1 / (1 + np.exp(-logits))).astype(np.float32)


class MapRunner(BaseRunner):
    """Logits and one sigmoid attention map; ``flip`` mirrors the map left-right (a wrong file)."""

    backend = "test"

    def __init__(self, *, flip: bool = False, precision: str = "fp16") -> None:
        self.flip = flip
        super().__init__(
            name="flipped" if flip else "map",
            device="cpu",
            precision=precision,
            input_spec=[TensorSpec("input", (None, 3, 4, 4), "float32")],
            output_names=["logits", "attention_stage1_module1"],
        )

    def _stage(self, feed):
        return feed["input"]

    def _execute(self, x):
        logits = x.reshape(len(x), -1)[:, :10] * 3.0
        maps = attention_map(len(x))
        if self.flip:
            maps = maps[..., ::-1]
        return {"logits": logits, "attention_stage1_module1": np.ascontiguousarray(maps)}

    def _fetch(self, outputs):
        return outputs


def test_kinds_come_from_names_then_values():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((4, 10))
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    assert output_kind("logits", logits) == "logits"
    assert output_kind("log_probs", logits) == "log_probs"
    assert output_kind("out", logp) == "log_probs"  # by values: rows sum to 1 in probability
    assert output_kind("attention", attention_map()) == "map"
    assert output_kind("y", attention_map()) == "map"  # ≥3-D in [0, 1]
    assert output_kind("features", rng.standard_normal((4, 3, 2, 2))) == "tensor"


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_a_spatially_flipped_attention_map_fails(precision):
    x = np.random.default_rng(1).standard_normal((6, 3, 4, 4), dtype=np.float32)
    good = compare(MapRunner(precision=precision), MapRunner(precision=precision), x)
    assert good.passed
    result = compare(MapRunner(precision=precision), MapRunner(flip=True, precision=precision), x)
    report = next(o for o in result.outputs if o.kind == "map")
    # The plain metrics are blind to it: the precision's plain criteria alone would pass.
    assert report.agreement.cosine > 0.9999
    if precision != "fp32":
        assert report.agreement.rel_l2 < 1e-2
    assert not result.passed
    failed = {c.criterion for c in result.failed_checks}
    assert "map.min_centred_cosine" in failed
    assert report.centred_cosine < 0.5


def test_log_probs_off_by_two_nats_fail_though_cosine_passes():
    rng = np.random.default_rng(2)
    logits = rng.standard_normal((8, 10)) * 4
    logp = (logits - np.log(np.exp(logits).sum(1, keepdims=True))).astype(np.float32)
    cand = logp.copy()
    cand[:, 0] -= 2.0  # 2 nats on one class of every input
    result = compare_outputs({"log_probs": logp}, {"log_probs": cand}, criteria_for("int8"))
    assert result.outputs[0].agreement.cosine > 0.9
    bad = {c.criterion for c in result.failed_checks}
    assert "log_probs.max_abs" in bad
    small = logp + rng.normal(0, 0.01, logp.shape).astype(np.float32)
    assert compare_outputs({"log_probs": logp}, {"log_probs": small}, criteria_for("fp16")).passed


def test_minus_inf_log_probs_are_refused():
    logp = np.log(np.full((2, 4), 0.25, dtype=np.float32))
    cand = logp.copy()
    cand[0, 1] = -np.inf  # what Softmax → Log gives when a probability underflows in FP16
    result = compare_outputs({"log_probs": logp}, {"log_probs": cand}, criteria_for("fp16"))
    assert not result.passed
    assert any(c.criterion == "finite" for c in result.failed_checks)


def test_fp16_noise_on_near_tied_logits_passes_with_the_ties_reported():
    rng = np.random.default_rng(3)
    ref = rng.standard_normal((64, 10)).astype(np.float32) * 0.05  # random weights: tiny margins
    ref[:8, 0] += 1.0  # a few inputs with a clear winner
    # FP16 rounding of the logits plus accumulated error, relative L2 ~ 5e-4.
    cand = (ref + rng.normal(0, 3e-5, ref.shape)).astype(np.float16).astype(np.float32)
    result = compare_outputs({"logits": ref}, {"logits": cand}, criteria_for("fp16"))
    report = result.outputs[0]
    assert report.agreement.rel_l2 < 1e-2
    assert report.near_ties and report.near_ties > 0
    assert report.top1_decided == 1.0
    assert result.passed, result.worst_failure()
    top1 = next(c for c in result.checks if c.criterion == "min_top1")
    assert "near-tie" in top1.detail
    assert result.as_dict()["outputs"][0]["near_ties"] == report.near_ties


def test_wrong_logits_are_not_hidden_as_near_ties():
    rng = np.random.default_rng(4)
    ref = rng.standard_normal((64, 10)).astype(np.float32) * 3
    cand = ref.copy()
    cand[:10] = rng.standard_normal((10, 10)) * 3  # a few inputs completely wrong
    result = compare_outputs({"logits": ref}, {"logits": cand}, criteria_for("fp16", {"max_rel_l2": 1}))
    report = result.outputs[0]
    assert report.near_ties < 10  # the noise is a quantile: ten broken inputs do not raise it
    assert report.top1_decided < 0.99
    assert any(c.criterion == "min_top1" for c in result.failed_checks)


def test_logits_that_ignore_the_input_fail_though_cosine_passes():
    """Random weights: logits ≈ one constant vector + a small input-dependent part."""
    rng = np.random.default_rng(5)
    common = rng.standard_normal(10) * 5
    ref = (common + 0.05 * rng.standard_normal((16, 10))).astype(np.float32)
    constant = np.tile(ref.mean(0), (16, 1)).astype(np.float32)  # a file blind to its input
    result = compare_outputs({"logits": ref}, {"logits": constant}, criteria_for("int8"))
    assert result.outputs[0].agreement.cosine > 0.99  # the plain INT8 criterion passes
    assert "logits.min_input_centred_cosine" in {c.criterion for c in result.failed_checks}
    noisy = ref + rng.normal(0, 0.005, ref.shape).astype(np.float32)
    assert compare_outputs({"logits": ref}, {"logits": noisy}, criteria_for("int8")).passed


def _attention_onnx(path, *, flip: bool) -> None:
    """A small ONNX file: logits and a sigmoid attention map near 0.5; ``flip`` mirrors the map."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((1, 3, 3, 3)).astype(np.float32) * 0.003, "wa"),
        numpy_helper.from_array(rng.standard_normal((10, 3, 1, 1)).astype(np.float32), "wl"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "wa"], ["a"], pads=[1, 1, 1, 1]),
        helper.make_node("Sigmoid", ["a"], ["map" if flip else "attention"]),
        helper.make_node("Conv", ["input", "wl"], ["l"]),
        helper.make_node("ReduceMean", ["l"], ["logits"], axes=[2, 3], keepdims=0),
    ]
    if flip:
        inits += [
            numpy_helper.from_array(np.array([-1], np.int64), n) for n in ("start", "axis_step")
        ]
        inits += [numpy_helper.from_array(np.array([-100], np.int64), "end")]
        inits += [numpy_helper.from_array(np.array([3], np.int64), "axis")]
        nodes.append(
            helper.make_node("Slice", ["map", "start", "end", "axis", "axis_step"], ["attention"])
        )
    graph = helper.make_graph(
        nodes,
        "attention",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10]),
            helper.make_tensor_value_info("attention", TensorProto.FLOAT, ["batch", 1, 8, 8]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)


def test_verify_fails_an_onnx_candidate_whose_attention_map_is_flipped(tmp_path):
    from deploy_ran.verify import verify

    _attention_onnx(tmp_path / "ref.onnx", flip=False)
    _attention_onnx(tmp_path / "flip.onnx", flip=True)
    same = verify(tmp_path / "ref.onnx", tmp_path / "ref.onnx", num_inputs=8, threads=1)
    assert same.passed
    result = verify(
        tmp_path / "ref.onnx", tmp_path / "flip.onnx", num_inputs=8, threads=1,
        criteria={"max_rel_l2": 1e-2},  # as loose as the FP16 default: the plain rule passes it
    )
    attention = next(o for o in result.outputs if o.name == "attention")
    assert attention.kind == "map" and attention.agreement.rel_l2 < 1e-2
    assert not result.passed
    assert "map.min_centred_cosine" in {c.criterion for c in result.failed_checks}
    assert result.as_dict()["outputs"][1]["kind"] == "map"
