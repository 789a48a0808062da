"""A trained RAN keeps its accuracy in FP16 and INT8 (ONNX Runtime, CPU).

The network is trained once on scikit-learn's digits and cached outside the repository
(``~/.cache/deploy-ran/digits``, or ``$DEPLOY_RAN_CACHE``), keyed by a hash of the training
recipe, so later runs skip training. The default test trains at 16×16 (under a minute on two idle
cores); the full recipe (32×32, several CPU minutes) is marked slow.

Criterion: test-split accuracy within 1.0 point of FP32 and top-1 agreement with FP32 of at least
98 %, INT8 calibrated on the train split. Entropy (KL-divergence) calibration alone misses it at
32×32: the first unit's input has channels whose ranges differ sixfold, and one per-tensor KL
threshold clips the wide ones (2.4 points lost, see the README). With ``--exclude auto`` the
sensitivity search keeps that unit in FP32 and entropy meets the bar; plain entropy at 32×32 is
kept as a strict expected failure, so a change that fixes it is noticed.
"""

from __future__ import annotations

import numpy as np
import pytest

from examples.digits import Recipe, cached_checkpoint, evaluate_precisions, make_digits

SMALL = Recipe(image_size=16, epochs=3)
FULL = Recipe(image_size=32, epochs=3)
ENTROPY_CLIPS = "one per-tensor KL threshold clips the wide channels of the first unit's input"


def _check(rows, names):
    by_name = {r.precision: r for r in rows}
    fp32 = by_name["FP32"]
    assert fp32.accuracy >= 0.9, f"training failed: FP32 accuracy {fp32.accuracy:.3f}"
    for name in names:
        row = by_name[name]
        assert abs(row.accuracy - fp32.accuracy) <= 0.010, (name, row.accuracy, fp32.accuracy)
        assert row.agreement >= 0.98, (name, row.agreement)


def test_digits_fp16_and_int8_keep_accuracy(tmp_path):
    # One test, not a parametrized set: under pytest-xdist each worker would train/export again.
    checkpoint, _trained = cached_checkpoint(SMALL)
    data = make_digits(image_size=SMALL.image_size, seed=SMALL.seed)
    assert len(data["x_test"]) == 450 and np.isin(data["y_test"], range(10)).all()
    rows = evaluate_precisions(checkpoint, data, tmp_path, methods=("percentile", "minmax"))
    expected = [
        "FP32",
        "FP16",
        "INT8 percentile",
        "INT8 minmax",
        "INT8 entropy + exclude auto",
        "INT8 percentile, FP16 float part",
    ]
    assert [r.precision for r in rows] == expected
    _check(rows, expected[1:])


@pytest.fixture(scope="module")
def full_rows(tmp_path_factory):
    checkpoint, _trained = cached_checkpoint(FULL)
    data = make_digits(image_size=FULL.image_size, seed=FULL.seed)
    workdir = tmp_path_factory.mktemp("digits32")
    return evaluate_precisions(checkpoint, data, workdir)


@pytest.mark.slow
@pytest.mark.parametrize(
    "precision",
    [
        "FP16",
        "INT8 percentile",
        "INT8 minmax",
        "INT8 entropy + exclude auto",
        "INT8 percentile, FP16 float part",
        pytest.param("INT8 entropy", marks=pytest.mark.xfail(strict=True, reason=ENTROPY_CLIPS)),
    ],
)
def test_digits_full_recipe(full_rows, precision):
    _check(full_rows, [precision])
