"""The entropy threshold's floor: KL decides only where it clips less than the percentile would."""

from __future__ import annotations

import numpy as np
import pytest

from calibration.entropy import FLOOR_PERCENTILE, entropy_threshold, histogram_percentile


def _mixed_channels(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """|x| of a ReLU output whose channels' ranges differ sixfold (a RAN's first units): most
    values from narrow channels, 15 % from wide ones, and the spike of zeros."""
    rng = np.random.default_rng(seed)
    narrow = rng.exponential(0.5, 255_000)
    wide = rng.exponential(3.0, 45_000)
    zeros = np.zeros(100_000)
    return np.histogram(np.concatenate([narrow, wide, zeros]), bins=2048)


def test_the_floor_stops_kl_from_clipping_the_wide_channels():
    hist, edges = _mixed_channels()
    kl_only = entropy_threshold(hist, edges, floor_percentile=None)
    floored = entropy_threshold(hist, edges)
    floor = histogram_percentile(hist, edges, FLOOR_PERCENTILE)
    assert kl_only < floor  # TensorRT's search alone clips into the wide channels' range
    assert floored == pytest.approx(floor)


def test_kl_wins_where_it_clips_less_than_the_floor():
    rng = np.random.default_rng(1)
    uniform = rng.uniform(0, 5, size=200_000)  # nothing to gain by clipping
    hist, edges = np.histogram(uniform, bins=2048)
    assert entropy_threshold(hist, edges) == entropy_threshold(hist, edges, floor_percentile=None)
    assert entropy_threshold(hist, edges) > histogram_percentile(hist, edges, 50.0)


def test_histogram_percentile_reads_the_cumulative_count():
    hist = np.array([50, 30, 15, 5])
    edges = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    assert histogram_percentile(hist, edges, 50.0) == 1.0  # half the mass is in the first bin
    assert histogram_percentile(hist, edges, 90.0) == 3.0
    assert histogram_percentile(hist, edges, 100.0) == 4.0
    assert histogram_percentile(np.zeros(4), edges, 99.0) == 4.0  # nothing seen: the full range
