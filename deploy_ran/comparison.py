"""Judge candidate outputs against reference outputs: the criteria and the one agreement table.

Every agreement table the toolkit prints (the export check, the FP16 check, the INT8 check after
calibration, sensitivity, ``verify``) is a :class:`Comparison` made by :func:`compare_outputs`
from named output arrays, with limits from :data:`DEFAULT_CRITERIA`. That keeps one meaning for
"relative L2 1e-4" and one place for every threshold. Running the two sides is the comparator's job
(:mod:`deploy_ran.comparator`, on runners); this module only sees arrays, so the floors below the
runners (calibration) can use it too.

========  ==========================================================
FP32      relative L2 ≤ 1e-4
FP16      relative L2 ≤ 1e-2 and top-1 agreement ≥ 99 %
BF16      relative L2 ≤ 3e-2 and top-1 agreement ≥ 98 % (PyTorch autocast on a CPU)
INT8      cosine similarity ≥ 0.99 and top-1 agreement ≥ 95 %
========  ==========================================================

Non-finite candidate values always fail (``finite`` check), whatever the precision.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from deploy_ran.errors import DeployRanError
from deploy_ran.metrics import Agreement, compare

DEFAULT_CRITERIA: dict[str, dict[str, float]] = {
    "fp32": {"max_rel_l2": 1e-4},
    "fp16": {"max_rel_l2": 1e-2, "min_top1": 0.99},
    "bf16": {"max_rel_l2": 3e-2, "min_top1": 0.98},
    "int8": {"min_cosine": 0.99, "min_top1": 0.95},
}
# criterion → (metric in Agreement, "max" = value must be ≤ limit / "min" = value must be ≥ limit)
CRITERIA = {
    "max_rel_l2": ("rel_l2", "max"),
    "max_abs": ("max_abs", "max"),
    "min_cosine": ("cosine", "min"),
    "min_psnr": ("psnr", "min"),
    "min_top1": ("top1", "min"),
    "min_top5": ("top5", "min"),
}
TOLERANCE_KEYS = ("atol", "rtol")
#: Criteria whose value is a fraction (agreement, cosine): the limit must lie in [0, 1].
FRACTION_CRITERIA = ("min_top1", "min_top5", "min_cosine")


def precision_family(precision: str) -> str:
    """``autocast-bf16`` → ``bf16``, ``autocast-fp16`` → ``fp16``; others unchanged."""
    fam = precision.split("-")[-1].lower()
    return fam if fam in DEFAULT_CRITERIA else "fp32"


def criteria_for(precision: str, overrides: Mapping[str, float | None] | None = None) -> dict:
    """Default criteria of ``precision`` with ``overrides`` applied (``None`` = keep default)."""
    crit: dict[str, float] = dict(DEFAULT_CRITERIA[precision_family(precision)])
    for key, value in (overrides or {}).items():
        if key not in CRITERIA and key not in TOLERANCE_KEYS:
            raise DeployRanError(
                f"Unknown verify criterion {key!r}.",
                hint=f"Choose from: {', '.join([*CRITERIA, *TOLERANCE_KEYS])}.",
            )
        if value is None:
            continue
        value = float(value)
        if math.isnan(value):
            raise DeployRanError(f"Criterion {key} is NaN.", hint="Give a number.")
        if key in FRACTION_CRITERIA and not 0.0 <= value <= 1.0:
            raise DeployRanError(
                f"Criterion {key} is a fraction in [0, 1], got {value:g}.",
                hint="E.g. 0.99 for 99 %.",
            )
        if key in ("max_rel_l2", "max_abs", *TOLERANCE_KEYS) and value < 0:
            raise DeployRanError(f"Criterion {key} must be ≥ 0, got {value:g}.")
        crit[key] = value
    if ("atol" in crit) != ("rtol" in crit):  # one given: the other is 0, as in numpy.allclose
        crit.setdefault("atol", 0.0)
        crit.setdefault("rtol", 0.0)
    return crit


# ------------------------------------------------------------------------------------ result


@dataclass
class Check:
    """One criterion on one output."""

    output: str
    criterion: str
    value: float | None
    limit: float
    passed: bool
    detail: str = ""


@dataclass
class OutputReport:
    name: str
    shape: list[int]
    agreement: Agreement
    finite: bool = True


@dataclass
class WorstInput:
    name: str
    index: int
    rel_l2: float  # of this sample, worst over the outputs
    reference_top1: int | None = None
    candidate_top1: int | None = None


@dataclass
class Comparison:
    """Per-output agreement, the criteria's verdicts and the worst inputs."""

    criteria: dict[str, float]
    outputs: list[OutputReport]
    checks: list[Check]
    worst: list[WorstInput] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    @property
    def failed_checks(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def output(self, name: str) -> OutputReport | None:
        return next((o for o in self.outputs if o.name == name), None)

    def worst_failure(self) -> str:
        """One line naming the worst failed check (for error messages)."""
        bad = self.failed_checks
        if not bad:
            return "all checks passed"
        c = bad[0]
        if c.value is None:
            return f"output {c.output!r}: {c.criterion} {c.detail}".strip()
        return f"output {c.output!r}: {c.criterion} {c.value:.3g} (limit {c.limit:g}) {c.detail}".strip()

    def as_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "criteria": self.criteria,
            "outputs": [
                {"name": o.name, "shape": o.shape, "finite": o.finite, **o.agreement.as_dict()}
                for o in self.outputs
            ],
            "checks": [asdict(c) for c in self.checks],
            "worst_inputs": [asdict(w) for w in self.worst],
            "notes": self.notes,
        }


def _per_sample_rel_l2(ref: np.ndarray, cand: np.ndarray) -> np.ndarray:
    r = ref.reshape(len(ref), -1).astype(np.float64)
    d = cand.reshape(len(cand), -1).astype(np.float64) - r
    num = np.linalg.norm(d, axis=1)
    den = np.linalg.norm(r, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(den > 0, num / np.where(den > 0, den, 1), np.where(num > 0, np.inf, 0.0))
    return np.nan_to_num(out, nan=np.inf)


def _checks_for(
    name: str, agreement: Agreement, ref: np.ndarray, cand: np.ndarray, crit: Mapping[str, float]
) -> list[Check]:
    checks = []
    for key, (metric, kind) in CRITERIA.items():
        if key not in crit:
            continue
        value = getattr(agreement, metric)
        if value is None:  # top-k on a non-classification output
            continue
        limit = crit[key]
        passed = bool(value <= limit) if kind == "max" else bool(value >= limit)
        checks.append(Check(name, key, float(value), limit, passed))
    if "atol" in crit:
        atol, rtol = crit["atol"], crit["rtol"]
        r, c = ref.astype(np.float64), cand.astype(np.float64)
        bad = ~(np.abs(c - r) <= atol + rtol * np.abs(r))
        frac = float(bad.mean()) if bad.size else 0.0
        checks.append(
            Check(
                name,
                "allclose",
                frac,
                0.0,
                not bad.any(),
                f"{int(bad.sum())} of {bad.size} elements outside |c-r| ≤ {atol:g} + {rtol:g}·|r|",
            )
        )
    return checks


def match_outputs(
    reference: Sequence[str], candidate: Sequence[str], notes: list[str]
) -> list[tuple[str, str]]:
    """Pairs of (reference output, candidate output) to compare: by name, else by position."""
    common = [n for n in reference if n in candidate]
    if common:
        for side, names in (("reference", reference), ("candidate", candidate)):
            extra = [n for n in names if n not in common]
            if extra:
                notes.append(f"outputs only the {side} has, not compared: {', '.join(extra)}")
        return [(n, n) for n in common]
    if len(reference) == len(candidate):
        notes.append("output names differ; compared by position")
        return list(zip(reference, candidate))
    raise DeployRanError(
        f"The two sides share no output: reference {list(reference)}, candidate "
        f"{list(candidate)}.",
        hint="Compare artifacts of the same model with the same options (e.g. attention maps).",
    )


def compare_outputs(
    reference: Mapping[str, np.ndarray],
    candidate: Mapping[str, np.ndarray],
    criteria: Mapping[str, float],
    *,
    sample_names: Sequence[str] | None = None,
    show_worst: int = 5,
) -> Comparison:
    """Compare every matched output, judge it against ``criteria`` and name the worst samples.

    Outputs are matched by name (by position when no name is shared). A candidate output with
    NaN or infinite values fails a ``finite`` check; its metrics are computed with those values
    replaced by 0 so the rest of the table stays readable.
    """
    notes: list[str] = []
    crit = dict(criteria)
    reports: list[OutputReport] = []
    checks: list[Check] = []
    total = len(next(iter(reference.values()))) if reference else 0
    sample_scores = np.zeros(total)
    top1: dict[str, np.ndarray] = {}
    for rname, cname in match_outputs(list(reference), list(candidate), notes):
        r, c = np.asarray(reference[rname]), np.asarray(candidate[cname])
        label = rname if rname == cname else f"{rname}/{cname}"
        if r.shape != c.shape:
            checks.append(
                Check(label, "shape", None, 0.0, False, f"{list(r.shape)} vs {list(c.shape)}")
            )
            continue
        finite = bool(np.isfinite(c).all())
        if not finite:
            bad = int((~np.isfinite(c)).sum())
            checks.append(
                Check(label, "finite", float(bad), 0.0, False, f"{bad} of {c.size} values NaN/inf")
            )
            c = np.nan_to_num(c, nan=0.0, posinf=0.0, neginf=0.0)
        classification = r.ndim == 2 and r.shape[1] > 1
        agreement = compare(r, c, classification=classification)
        reports.append(OutputReport(label, list(r.shape), agreement, finite))
        checks.extend(_checks_for(label, agreement, r, c, crit))
        if len(r) == total and total:
            sample_scores = np.maximum(sample_scores, _per_sample_rel_l2(r, c))
        if classification and not top1:
            top1 = {"reference": r.argmax(1), "candidate": c.argmax(1)}
    names = list(sample_names) if sample_names is not None else [f"sample[{i}]" for i in range(total)]
    order = np.argsort(-sample_scores, kind="stable")[: max(0, show_worst)] if total else []
    worst = [
        WorstInput(
            names[i],
            int(i),
            float(sample_scores[i]),
            int(top1["reference"][i]) if top1 else None,
            int(top1["candidate"][i]) if top1 else None,
        )
        for i in order
    ]
    return Comparison(crit, reports, checks, worst, notes)
