"""What kind an output is (logits, log-probabilities, attention map, tensor) and its own measurements.

Cosine and relative L2 are blind for outputs far from zero, so each output's kind adds its own
measurements (:func:`measure_output`): the centred cosine of a map, the input-centred cosine and
the near-ties of classification scores (:func:`tie_noise`). The limits on them live in
:mod:`deploy_ran.compare.criteria`.
"""

from __future__ import annotations

import numpy as np

from deploy_ran.compare.criteria import TIE_FACTOR, TIE_QUANTILE
from deploy_ran.compare.metrics import centred_cosine, compare, input_centred_cosine
from deploy_ran.compare.results import OutputReport


def output_kind(name: str, reference: np.ndarray) -> str:
    """``logits``, ``log_probs``, ``map`` or ``tensor`` for one output, by name then by values.

    Names the toolkit's models give (``log_probs``, ``attention*``) decide first; otherwise a
    (N, C) output whose rows are log-probabilities (all ≤ 0, logsumexp ≈ 0) is ``log_probs``, any
    other (N, C>1) output ``logits``, and a ≥3-D output with every value in [0, 1] a ``map``.
    """
    lowered = name.lower()
    ref = np.asarray(reference)
    finite = ref.size > 0 and bool(np.isfinite(ref).all())
    in_unit = finite and float(ref.min()) >= 0.0 and float(ref.max()) <= 1.0
    if "log_prob" in lowered or "logprob" in lowered:
        return "log_probs"
    if ("attention" in lowered or "mask" in lowered) and in_unit and ref.ndim >= 2:
        return "map"
    if ref.ndim == 2 and ref.shape[1] > 1:
        if finite and float(ref.max()) <= 0.0:
            r = ref.astype(np.float64)
            top = r.max(axis=1, keepdims=True)
            lse = top[:, 0] + np.log(np.exp(r - top).sum(axis=1))
            if np.all(np.abs(lse) < 1e-3):
                return "log_probs"
        return "logits"
    if ref.ndim >= 3 and in_unit:
        return "map"
    return "tensor"


def tie_noise(reference: np.ndarray, candidate: np.ndarray) -> tuple[float, np.ndarray]:
    """The measured noise of (N, C) scores and which inputs are near-ties under it.

    The noise is :data:`TIE_FACTOR` × the :data:`TIE_QUANTILE` quantile of each input's max abs
    error: a robust size of the candidate's error (a quantile, so a few broken inputs cannot
    declare every input a tie). An input whose reference top-1/top-2 margin is at most that noise
    can flip its top-1 without anything being wrong.
    """
    r = np.asarray(reference, dtype=np.float64)
    c = np.asarray(candidate, dtype=np.float64)
    per_input = np.abs(c - r).max(axis=1)
    noise = TIE_FACTOR * float(np.quantile(per_input, TIE_QUANTILE)) if len(r) else 0.0
    top2 = np.sort(r, axis=1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    return noise, margin <= noise


def measure_output(
    label: str, ref: np.ndarray, cand: np.ndarray, finite: bool, kind: str | None = None
) -> OutputReport:
    """Agreement of one output plus its kind's measurements (centred cosine, near-ties)."""
    kind = kind or output_kind(label.split("/")[0], ref)
    classification = kind in ("logits", "log_probs") and ref.ndim == 2 and ref.shape[1] > 1
    agreement = compare(ref, cand, classification=classification)
    report = OutputReport(label, list(ref.shape), agreement, finite, kind)
    if kind == "map":
        report.centred_cosine = centred_cosine(ref, cand)
    if classification and len(ref):
        report.input_centred_cosine = input_centred_cosine(ref, cand)
        noise, ties = tie_noise(ref, cand)
        report.tie_noise, report.near_ties = noise, int(ties.sum())
        decided = ~ties
        if decided.any():
            report.top1_decided = float(
                np.mean(ref[decided].argmax(1) == cand[decided].argmax(1))
            )
    return report
