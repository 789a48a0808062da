"""Paired statistics for "is this accuracy difference real?".

Two models judged on the *same* images are paired: only the images where exactly one of them is
right carry information about the difference. So every accuracy comparison the toolkit reports
gives

* ``b``/``c``: images the reference got right and the candidate wrong (lost), and the reverse
  (gained), plus how many predictions changed at all;
* an exact McNemar p-value (two-sided binomial test of ``b`` against ``b + c`` at 1/2), which is
  right for the small discordant counts these comparisons produce, where the chi-square form is not;
* a 95 % interval on the accuracy difference by Newcombe's hybrid score method for paired
  proportions (his method 10), which stays inside [-1, 1] and behaves for counts near zero;
* a verdict in words that a person can paste.

Wilson's score interval is used for a single accuracy. Plain NumPy + SciPy (a scikit-learn
dependency), no state.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import binomtest

Z95 = 1.959963984540054
#: Significance level for verdicts and for defaults chosen from a measured difference.
ALPHA = 0.05


def wilson_interval(successes: int, total: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a proportion (``(nan, nan)`` for an empty sample)."""
    if total <= 0:
        return (math.nan, math.nan)
    p = successes / total
    denom = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denom
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def mcnemar_exact(lost: int, gained: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts (1.0 when there are none)."""
    n = lost + gained
    if n == 0:
        return 1.0
    return float(binomtest(min(lost, gained), n, 0.5, alternative="two-sided").pvalue)


def newcombe_paired_interval(
    both: int, lost: int, gained: int, neither: int, z: float = Z95
) -> tuple[float, float]:
    """95 % interval for ``acc(candidate) - acc(reference)`` on paired data (Newcombe 1998, #10).

    ``lost``: reference right, candidate wrong; ``gained``: the reverse.
    """
    n = both + lost + gained + neither
    if n == 0:
        return (math.nan, math.nan)
    p_ref = (both + lost) / n
    p_cand = (both + gained) / n
    l1, u1 = wilson_interval(both + lost, n, z)
    l2, u2 = wilson_interval(both + gained, n, z)
    # Correlation correction between the two marginal proportions.
    a, b, c, d = both, lost, gained, neither
    rows = (a + b) * (c + d) * (a + c) * (b + d)
    if rows == 0:
        phi = 0.0
    else:
        num = a * d - b * c
        # Newcombe's continuity-corrected phi: shrink |ad - bc| by n/2, floored at 0.
        num = max(abs(num) - n / 2, 0.0) * (1 if num >= 0 else -1)
        phi = num / math.sqrt(rows)
    diff = p_cand - p_ref
    lower = diff - math.sqrt(
        max((p_cand - l2) ** 2 - 2 * phi * (p_cand - l2) * (u1 - p_ref) + (u1 - p_ref) ** 2, 0.0)
    )
    upper = diff + math.sqrt(
        max((u2 - p_cand) ** 2 - 2 * phi * (u2 - p_cand) * (p_ref - l1) + (p_ref - l1) ** 2, 0.0)
    )
    return (max(-1.0, lower), min(1.0, upper))


@dataclass(frozen=True)
class PairedComparison:
    """A candidate's accuracy against a reference's, on the same labelled images."""

    n: int
    reference_correct: int
    candidate_correct: int
    lost: int  # reference right, candidate wrong
    gained: int  # reference wrong, candidate right
    changed: int  # predictions that differ at all (right or wrong)
    delta: float  # candidate accuracy - reference accuracy (fraction)
    ci_low: float
    ci_high: float
    p_value: float  # exact McNemar

    @property
    def significant(self) -> bool:
        return self.p_value < ALPHA

    @property
    def verdict(self) -> str:
        """``"no significant difference"``, ``"loses 1.8 pt, p=0.003"`` or ``"gains …"``."""
        if not self.significant:
            return f"no significant difference ({self.delta * 100:+.2f} pt, p={self.p_value:.2g})"
        word = "loses" if self.delta < 0 else "gains"
        return f"{word} {abs(self.delta) * 100:.2f} pt, p={self.p_value:.2g}"

    def as_dict(self) -> dict:
        out = asdict(self)
        out["significant"] = self.significant
        out["verdict"] = self.verdict
        return out


def compare_paired(
    reference_pred: np.ndarray, candidate_pred: np.ndarray, labels: np.ndarray
) -> PairedComparison:
    """Paired comparison of two top-1 prediction vectors against the same labels."""
    ref = np.asarray(reference_pred).reshape(-1)
    cand = np.asarray(candidate_pred).reshape(-1)
    y = np.asarray(labels).reshape(-1)
    if not (ref.shape == cand.shape == y.shape):
        raise ValueError(
            f"paired comparison needs equal lengths, got {ref.shape[0]}, {cand.shape[0]} "
            f"predictions for {y.shape[0]} labels"
        )
    ref_ok, cand_ok = ref == y, cand == y
    both = int(np.sum(ref_ok & cand_ok))
    lost = int(np.sum(ref_ok & ~cand_ok))
    gained = int(np.sum(~ref_ok & cand_ok))
    neither = int(np.sum(~ref_ok & ~cand_ok))
    n = int(y.shape[0])
    low, high = newcombe_paired_interval(both, lost, gained, neither)
    return PairedComparison(
        n=n,
        reference_correct=both + lost,
        candidate_correct=both + gained,
        lost=lost,
        gained=gained,
        changed=int(np.sum(ref != cand)),
        delta=(gained - lost) / n if n else math.nan,
        ci_low=low,
        ci_high=high,
        p_value=mcnemar_exact(lost, gained),
    )
