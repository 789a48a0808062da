"""The comparator on runners, the one batching policy, and the criteria in one place."""

from __future__ import annotations

import numpy as np
import pytest

from deploy_ran.compare.criteria import criteria_for
from deploy_ran.compare.judge import compare_outputs
from deploy_ran.compare.run import compare
from deploy_ran.errors import DeployRanError
from deploy_ran.runners.base import BaseRunner, TensorSpec


class ArrayRunner(BaseRunner):
    """A runner computing ``f(x)`` in numpy, recording every batch it was given."""

    backend = "test"

    def __init__(self, fn, *, fixed_batch=None, precision="fp32", name="array") -> None:
        self.fn = fn
        self.seen: list[int] = []
        super().__init__(
            name=name,
            device="cpu",
            precision=precision,
            input_spec=[TensorSpec("input", (fixed_batch, 3, 4, 4), "float32")],
            output_names=["logits"],
        )

    def _stage(self, feed):
        return feed["input"]

    def _execute(self, x):
        self.seen.append(len(x))
        return {"logits": self.fn(x)}

    def _fetch(self, outputs):
        return outputs


def logits(x):
    return x.reshape(len(x), -1)[:, :10].astype(np.float32) * 3.0


def test_static_batch_remainder_is_padded_and_the_padding_dropped():
    x = np.random.default_rng(0).standard_normal((7, 3, 4, 4), dtype=np.float32)
    runner = ArrayRunner(logits, fixed_batch=4)
    out = runner.run_many(x)
    assert runner.seen == [4, 4]  # the last batch of 3 was padded to 4
    np.testing.assert_array_equal(out["logits"], logits(x))  # and only 7 rows came back


def test_dynamic_batch_runs_the_remainder_as_is():
    x = np.zeros((7, 3, 4, 4), dtype=np.float32)
    runner = ArrayRunner(logits)
    assert runner.run_many(x, 3)["logits"].shape == (7, 10)
    assert runner.seen == [3, 3, 1]


def test_compare_passes_identical_and_fails_a_drifted_candidate():
    x = np.random.default_rng(1).standard_normal((6, 3, 4, 4), dtype=np.float32)
    ref = ArrayRunner(logits)
    same = compare(ref, ArrayRunner(logits, fixed_batch=4), x, batch_size=2)
    assert same.passed and same.outputs[0].agreement.rel_l2 == 0.0
    assert same.inputs["count"] == 6
    drift = compare(ref, ArrayRunner(lambda v: logits(v) + 0.5), x, batch_size=2)
    assert not drift.passed
    assert drift.failed_checks[0].criterion == "max_rel_l2"
    assert "rel_l2" in drift.worst_failure()


def test_non_finite_candidate_fails_whatever_the_criteria():
    ref = {"logits": np.ones((2, 10), np.float32)}
    cand = {"logits": np.ones((2, 10), np.float32)}
    cand["logits"][0, 3] = np.nan
    result = compare_outputs(ref, cand, criteria_for("int8", {"min_cosine": 0.0, "min_top1": 0.0}))
    assert not result.passed
    assert any(c.criterion == "finite" and not c.passed for c in result.checks)


def test_precision_picks_the_criteria_and_overrides_are_checked():
    fp16 = criteria_for("fp16")
    assert {k: v for k, v in fp16.items() if "." not in k} == {"max_rel_l2": 1e-2, "min_top1": 0.99}
    assert {"map.min_centred_cosine", "map.max_abs", "log_probs.max_abs"} <= set(fp16)
    assert criteria_for("fp16", {"map.max_abs": 0.5})["map.max_abs"] == 0.5
    assert criteria_for("autocast-bf16")["max_rel_l2"] == 3e-2
    assert criteria_for("int8", {"min_top1": 0.5})["min_top1"] == 0.5
    for bad in (
        {"min_top1": 5},
        {"max_rel_l2": float("nan")},
        {"max_abs": -1},
        {"nope": 1},
        {"blob.max_abs": 1},
        {"map.min_centred_cosine": 2},
    ):
        with pytest.raises(DeployRanError):
            criteria_for("fp32", bad)


def test_worst_inputs_are_named():
    ref = {"logits": np.eye(3, 10, dtype=np.float32)}
    cand = {"logits": ref["logits"].copy()}
    cand["logits"][2] += 1.0
    result = compare_outputs(ref, cand, criteria_for("fp32"), sample_names=["a", "b", "c"])
    assert result.worst[0].name == "c"
