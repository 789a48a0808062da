"""Numerical agreement between two sets of outputs (reference vs candidate).

One place computes the numbers that the export check, ``verify`` and the calibration report print,
so "relative L2 1e-5" means the same thing everywhere. Arrays are compared in float64.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Agreement:
    """How closely ``candidate`` matches ``reference`` for one output tensor."""

    max_abs: float
    mean_abs: float
    rel_l2: float
    cosine: float
    psnr: float
    top1: float | None = None  # fraction of rows whose argmax agrees (logits only)
    top5: float | None = None  # fraction of rows whose reference top-1 is in candidate's top-5

    def as_dict(self) -> dict[str, float | None]:
        return asdict(self)


def relative_l2(reference: np.ndarray, candidate: np.ndarray) -> float:
    """||candidate - reference||₂ / ||reference||₂ (0 when both are zero)."""
    ref = np.asarray(reference, dtype=np.float64).ravel()
    diff = np.asarray(candidate, dtype=np.float64).ravel() - ref
    denom = np.linalg.norm(ref)
    if denom == 0.0:
        return 0.0 if np.linalg.norm(diff) == 0.0 else float("inf")
    return float(np.linalg.norm(diff) / denom)


def cosine_similarity(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Cosine of the angle between the flattened tensors (1.0 for two zero tensors)."""
    a = np.asarray(reference, dtype=np.float64).ravel()
    b = np.asarray(candidate, dtype=np.float64).ravel()
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0.0 and nb == 0.0:
        return 1.0
    if na == 0.0 or nb == 0.0:
        return 0.0
    return float(np.dot(a, b) / (na * nb))


def psnr(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB, the peak being the reference's max |value|."""
    ref = np.asarray(reference, dtype=np.float64)
    mse = float(np.mean((np.asarray(candidate, dtype=np.float64) - ref) ** 2))
    peak = float(np.max(np.abs(ref))) if ref.size else 0.0
    if mse == 0.0:
        return float("inf")
    if peak == 0.0:
        return float("-inf")
    return float(10.0 * np.log10(peak**2 / mse))


def topk_agreement(reference: np.ndarray, candidate: np.ndarray, k: int = 1) -> float:
    """Fraction of rows whose reference argmax is among the candidate's top ``k`` classes."""
    ref = np.asarray(reference).reshape(len(reference), -1)
    cand = np.asarray(candidate).reshape(len(candidate), -1)
    ref_top = ref.argmax(axis=1)
    k = min(k, cand.shape[1])
    cand_topk = np.argpartition(-cand, k - 1, axis=1)[:, :k]
    return float(np.mean([r in row for r, row in zip(ref_top, cand_topk)]))


def compare(
    reference: np.ndarray, candidate: np.ndarray, classification: bool = False
) -> Agreement:
    """All agreement metrics for one output; top-k only for (N, classes) logits."""
    reference = np.asarray(reference)
    candidate = np.asarray(candidate)
    if reference.shape != candidate.shape:
        raise ValueError(
            f"shape mismatch: reference {reference.shape} vs candidate {candidate.shape}"
        )
    diff = np.abs(candidate.astype(np.float64) - reference.astype(np.float64))
    is_logits = classification and reference.ndim == 2 and reference.shape[1] > 1
    return Agreement(
        max_abs=float(diff.max()) if diff.size else 0.0,
        mean_abs=float(diff.mean()) if diff.size else 0.0,
        rel_l2=relative_l2(reference, candidate),
        cosine=cosine_similarity(reference, candidate),
        psnr=psnr(reference, candidate),
        top1=topk_agreement(reference, candidate, 1) if is_logits else None,
        top5=topk_agreement(reference, candidate, 5) if is_logits else None,
    )


def per_sample_rel_l2(ref: np.ndarray, cand: np.ndarray) -> np.ndarray:
    """Relative L2 of each sample (row), inf where the reference row is zero and the candidate not."""
    r = ref.reshape(len(ref), -1).astype(np.float64)
    d = cand.reshape(len(cand), -1).astype(np.float64) - r
    num = np.linalg.norm(d, axis=1)
    den = np.linalg.norm(r, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(den > 0, num / np.where(den > 0, den, 1), np.where(num > 0, np.inf, 0.0))
    return np.nan_to_num(out, nan=np.inf)


def centred_cosine(reference: np.ndarray, candidate: np.ndarray) -> float | None:
    """Cosine of the two tensors after removing each map's mean (per sample, per channel).

    For (N, C, H, W) maps the mean over H, W is removed; for (N, D) the mean over D. This is the
    Pearson correlation of the maps, blind to a shared offset (values near 0.5) that makes the plain
    cosine ≈ 1 for any map. ``None`` when the reference is constant (nothing spatial to compare).
    """
    r = np.asarray(reference, dtype=np.float64)
    c = np.asarray(candidate, dtype=np.float64)
    axes = tuple(range(2, r.ndim)) if r.ndim >= 3 else tuple(range(1, r.ndim))
    if not axes:
        return None
    rc = (r - r.mean(axis=axes, keepdims=True)).ravel()
    cc = (c - c.mean(axis=axes, keepdims=True)).ravel()
    nr, nc = np.linalg.norm(rc), np.linalg.norm(cc)
    scale = max(1.0, float(np.abs(r).max()) if r.size else 1.0)
    if nr <= 1e-9 * scale * math.sqrt(max(rc.size, 1)):
        return None
    if nc == 0.0:
        return 0.0
    return float(np.dot(rc, cc) / (nr * nc))


def input_centred_cosine(reference: np.ndarray, candidate: np.ndarray) -> float | None:
    """Cosine after removing each output element's mean over the inputs (axis 0).

    What is left is how the output changes with the input. ``None`` with fewer than two inputs or
    when the reference does not change with the input at all.
    """
    r = np.asarray(reference, dtype=np.float64)
    c = np.asarray(candidate, dtype=np.float64)
    if len(r) < 2:
        return None
    rc, cc = (r - r.mean(axis=0)).ravel(), (c - c.mean(axis=0)).ravel()
    nr, nc = np.linalg.norm(rc), np.linalg.norm(cc)
    if nr <= 1e-9 * max(1.0, float(np.abs(r).max())) * math.sqrt(rc.size):
        return None
    return 0.0 if nc == 0.0 else float(np.dot(rc, cc) / (nr * nc))
