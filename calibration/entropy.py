"""TensorRT's entropy (KL-divergence) threshold search over a histogram of absolute activations.

Why not ONNX Runtime's ``EntropyCalibrater`` threshold: it histograms signed values over
``[-max, max]`` (half the bins are empty for a ReLU output), rounds the expanded candidate
distribution to integers, and keeps the spike of exact zeros that every ReLU output has, which
drags the KL minimum to thresholds that clip the rare large activations carrying the signal. On
the digits check (``examples/digits.py``) that cost 3–4 points of accuracy.

This is the search TensorRT's legacy entropy calibrator performs and NVIDIA's own quantization
toolkits (``pytorch-quantization``, ``modelopt``: ``_compute_amax_entropy``) reproduce: a
histogram of ``|x|`` (2048 bins by default), candidate thresholds at bin edges ``i = 128 ... n``,
reference ``P`` = the first ``i`` bins with everything above folded into the last one, candidate
``Q`` = those ``i`` bins merged into 128 levels and spread back evenly over the bins that were
non-empty, threshold = the edge that minimises ``KL(P || Q)`` (the largest one on ties). The zero
bin takes its neighbour's count first, as in those toolkits. ONNX Runtime still collects the
histograms (:mod:`calibration.ranges`); only the threshold search is here.

**The floor.** On a RAN the search alone clips the first units' inputs hard (digits example:
``relu_1`` at 3.65 of an observed 7.84), because their channels' ranges differ several-fold and one
per-tensor threshold fits the narrow ones; that cost 4 points of top-1 there. So the threshold
never goes below the :data:`FLOOR_PERCENTILE` th percentile of ``|x|`` read from the same
histogram: KL decides only where it would clip *less* than the percentile calibrator. (TensorRT's
legacy calibrator has no floor. ModelOpt's "entropy" is ONNX Runtime's search with 128 bins and 128
quantized bins, which leaves one candidate, the full range: in effect max calibration.)
"""

from __future__ import annotations

import numpy as np

#: INT8 levels on one side of zero: activations are symmetric INT8 with zero point 0.
QUANTIZED_BINS = 128
#: The search never clips below this many histogram bins (TensorRT: 128 of 2048).
START_BIN = 128
#: Histograms that grew past this many bins while collecting are merged down to it first, so the
#: search stays O(bins x candidates) with a bounded bin count.
MAX_BINS = 2048
#: The threshold is never below this percentile of ``|x|`` (see the module docstring).
FLOOR_PERCENTILE = 99.99


def _merge_bins(
    hist: np.ndarray, edges: np.ndarray, max_bins: int
) -> tuple[np.ndarray, np.ndarray]:
    """Merge adjacent bins so that at most ``max_bins`` remain (edges are kept, not resampled)."""
    factor = -(-hist.size // max_bins)
    if factor <= 1:
        return hist, edges
    pad = (-hist.size) % factor
    merged = np.pad(hist, (0, pad)).reshape(-1, factor).sum(axis=1)
    step = edges[1] - edges[0]
    new_edges = edges[0] + step * factor * np.arange(merged.size + 1)
    return merged, new_edges


def kl_divergences(
    hist: np.ndarray, quantized_bins: int = QUANTIZED_BINS, start_bin: int = START_BIN
) -> np.ndarray:
    """``KL(P_i || Q_i)`` for every candidate ``i`` in ``start_bin .. len(hist)`` (inf if undefined)."""
    counts = np.asarray(hist, dtype=np.float64).copy()
    if counts.size < 2:
        raise ValueError("a histogram needs at least 2 bins")
    counts[0] = counts[1]  # the ReLU zero spike would dominate both distributions
    n = counts.size
    start = min(start_bin, n)
    tail = np.concatenate([np.cumsum(counts[::-1])[::-1], [0.0]])  # tail[i] = sum(counts[i:])
    nonzero = counts > 0
    nonzero_count = nonzero.astype(np.float64)
    out = np.full(n - start + 1, np.inf)
    for k, i in enumerate(range(start, n + 1)):
        p = counts[:i].copy()
        p[-1] += tail[i]
        total_p = p.sum()
        if total_p == 0:
            continue
        levels = min(quantized_bins, i)
        bounds = np.ceil(np.arange(levels) * (i / levels)).astype(np.int64)
        level_sum = np.add.reduceat(counts[:i], bounds)
        level_nonzero = np.add.reduceat(nonzero_count[:i], bounds)
        per_bin = np.divide(
            level_sum, level_nonzero, out=np.zeros_like(level_sum), where=level_nonzero > 0
        )
        q = np.repeat(per_bin, np.diff(np.append(bounds, i))) * nonzero[:i]
        total_q = q.sum()
        if total_q == 0:
            continue
        support = p > 0
        if np.any(q[support] == 0):
            continue  # P has mass where Q has none: KL is infinite
        pn = p[support] / total_p
        out[k] = float(np.sum(pn * np.log(pn / (q[support] / total_q))))
    return out


def entropy_threshold(
    hist: np.ndarray,
    edges: np.ndarray,
    *,
    quantized_bins: int = QUANTIZED_BINS,
    start_bin: int = START_BIN,
    max_bins: int = MAX_BINS,
    floor_percentile: float | None = FLOOR_PERCENTILE,
) -> float:
    """The clipping threshold (``amax``) for a histogram of ``|x|`` with bin ``edges``: the KL
    minimum, raised to the ``floor_percentile`` th percentile of ``|x|`` (``None``: TensorRT's
    search alone)."""
    kl = _kl_threshold(hist, edges, quantized_bins, start_bin, max_bins)
    if floor_percentile is None:
        return kl
    return max(kl, histogram_percentile(hist, edges, floor_percentile))


def histogram_percentile(hist: np.ndarray, edges: np.ndarray, percentile: float) -> float:
    """The upper edge of the bin where the cumulative count reaches ``percentile`` % of the total."""
    counts = np.asarray(hist, dtype=np.float64)
    total = counts.sum()
    if total <= 0:
        return float(np.asarray(edges)[-1])
    k = int(np.searchsorted(np.cumsum(counts), total * percentile / 100.0))
    return float(np.asarray(edges, dtype=np.float64)[min(k + 1, counts.size)])


def _kl_threshold(
    hist: np.ndarray,
    edges: np.ndarray,
    quantized_bins: int,
    start_bin: int,
    max_bins: int,
) -> float:
    """TensorRT's KL search (module docstring), without the floor."""
    hist = np.asarray(hist)
    edges = np.asarray(edges, dtype=np.float64)
    if edges.size != hist.size + 1:
        raise ValueError(f"{hist.size} bins need {hist.size + 1} edges, got {edges.size}")
    if not np.any(hist):
        return float(edges[-1])
    # Trailing empty bins (a histogram extended for one outlier batch) change nothing but cost.
    last = int(np.flatnonzero(hist)[-1]) + 1
    hist, edges = _merge_bins(hist[:last], edges[: last + 1], max_bins)
    if hist.size <= min(start_bin, 2):
        return float(edges[-1])
    divergences = kl_divergences(hist, quantized_bins, start_bin)
    if not np.isfinite(divergences).any():
        return float(edges[-1])
    best = divergences.size - 1 - int(np.argmin(divergences[::-1]))  # largest i on ties
    return float(edges[min(start_bin, hist.size) + best])
