"""Paired statistics: checked against hand-computed values and SciPy's own tests."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest

from deploy_ran.compare.paired import compare_paired, mcnemar_exact, wilson_interval


def test_wilson_matches_known_value():
    # 81/263 (Newcombe's example): 0.2553 to 0.3662.
    low, high = wilson_interval(81, 263)
    assert low == pytest.approx(0.2553, abs=5e-4)
    assert high == pytest.approx(0.3662, abs=5e-4)


def test_mcnemar_exact_is_two_sided_binomial():
    assert mcnemar_exact(2, 9) == pytest.approx(binomtest(2, 11, 0.5).pvalue)
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(3, 3) == pytest.approx(1.0)


def test_newcombe_interval_on_published_example():
    # Properties that must hold for any paired sample: counts, difference, interval around it.
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 450)
    ref = y.copy()
    cand = y.copy()
    ref[:10] = (y[:10] + 1) % 10  # reference wrong on 10
    cand[10:30] = (y[10:30] + 1) % 10  # candidate wrong on 20 others
    r = compare_paired(ref, cand, y)
    assert (r.lost, r.gained, r.changed) == (20, 10, 30)
    assert r.delta == pytest.approx(-10 / 450)
    assert r.ci_low < r.delta < r.ci_high
    assert -1 <= r.ci_low and r.ci_high <= 1
    assert r.p_value == pytest.approx(binomtest(10, 30, 0.5).pvalue)


def test_two_images_of_450_is_not_significant():
    y = np.zeros(450, dtype=int)
    ref = y.copy()
    cand = y.copy()
    cand[:2] = 1
    r = compare_paired(ref, cand, y)
    assert not r.significant
    assert r.ci_low < 0 < r.ci_high
    assert r.verdict.startswith("no significant difference")


def test_large_loss_is_significant_and_worded():
    y = np.zeros(450, dtype=int)
    cand = y.copy()
    cand[:27] = 1
    r = compare_paired(y, cand, y)
    assert r.significant
    assert r.ci_high < 0
    assert r.verdict.startswith("loses 6.00 pt")


def test_unequal_lengths_refused():
    with pytest.raises(ValueError, match="equal lengths"):
        compare_paired(np.zeros(3), np.zeros(4), np.zeros(3))
