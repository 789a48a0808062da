"""The entropy threshold search is TensorRT's: checked against a literal transcription of it."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from calibration.entropy import entropy_threshold, kl_divergences


def reference_divergences(hist: np.ndarray, start_bin: int = 128, levels: int = 128) -> np.ndarray:
    """The loop of NVIDIA's toolkits (``_compute_amax_entropy``), bin by bin, without shortcuts."""
    bins = hist.astype(np.float64).copy()
    bins[0] = bins[1]
    out = []
    for i in range(start_bin, len(bins) + 1):
        space = np.linspace(0, i, num=levels + 1)
        level_of = np.digitize(range(i), space) - 1
        level_of[bins[:i] == 0] = -1
        density = np.zeros(levels)
        for j, level in enumerate(level_of):
            if level != -1:
                density[level] += bins[j]
        for level, count in Counter(level_of).items():
            if level != -1:
                density[level] /= count
        q = np.array([density[level] if level != -1 else 0.0 for level in level_of])
        p = bins[:i].copy()
        p[-1] += bins[i:].sum()
        p, q = p / p.sum(), q / q.sum()
        support = p > 0
        with np.errstate(divide="ignore"):
            out.append(float(np.sum(p[support] * np.log(p[support] / q[support]))))
    return np.array(out)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_the_reference_loop(seed):
    rng = np.random.default_rng(seed)
    samples = np.abs(rng.standard_t(3, size=50_000)) * rng.uniform(0.5, 3)
    samples[rng.random(samples.size) < 0.4] = 0.0  # a ReLU output's spike of zeros
    hist, _ = np.histogram(samples, bins=300)
    ours, ref = kl_divergences(hist), reference_divergences(hist)
    assert ours.shape == ref.shape == (300 - 128 + 1,)
    finite = np.isfinite(ref)
    assert np.array_equal(np.isfinite(ours), finite)
    np.testing.assert_allclose(ours[finite], ref[finite], rtol=1e-9, atol=1e-12)


def test_clips_a_rare_outlier_but_not_a_uniform_range():
    rng = np.random.default_rng(0)
    bulk = np.abs(rng.normal(size=200_000))
    with_outlier = np.append(bulk, 60.0)  # one value far beyond the bulk
    hist, edges = np.histogram(with_outlier, bins=2048)
    amax = entropy_threshold(hist, edges)
    assert 2.0 < amax < 10.0, amax  # keeps the Gaussian bulk, drops the outlier

    uniform = rng.uniform(0, 5, size=200_000)
    hist, edges = np.histogram(uniform, bins=2048)
    assert entropy_threshold(hist, edges) > 4.5  # nothing to gain by clipping a flat histogram


def test_large_histograms_are_merged_and_trailing_empty_bins_ignored():
    rng = np.random.default_rng(1)
    values = np.abs(rng.normal(size=100_000))
    hist, edges = np.histogram(values, bins=2048, range=(0, values.max()))
    amax = entropy_threshold(hist, edges)
    # The same data in a histogram extended by empty bins (ONNX Runtime grows it that way when a
    # later batch has a larger maximum) and one four times as fine: thresholds within a few bins.
    extended_hist = np.concatenate([hist, np.zeros(3000, dtype=hist.dtype)])
    step = edges[1] - edges[0]
    extended_edges = edges[0] + step * np.arange(extended_hist.size + 1)
    assert entropy_threshold(extended_hist, extended_edges) == pytest.approx(amax, abs=1e-9)
    fine_hist, fine_edges = np.histogram(values, bins=8192, range=(0, values.max()))
    assert entropy_threshold(fine_hist, fine_edges) == pytest.approx(amax, abs=4 * step)


def test_degenerate_histograms():
    edges = np.linspace(0, 1, 11)
    assert entropy_threshold(np.zeros(10), edges) == 1.0  # nothing seen: the full range
    one_bin = np.array([5, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    assert entropy_threshold(one_bin, edges) == pytest.approx(0.1)  # everything is below 0.1
    with pytest.raises(ValueError, match="11 edges"):
        entropy_threshold(np.zeros(10), edges[:-1])
