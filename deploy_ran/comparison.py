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

**Per-output criteria by kind.** Cosine and relative L2 are blind for outputs far from zero: a
spatially *inverted* sigmoid attention map whose values sit near 0.5 scores cosine 0.99998, and an
error of 2 nats on log-probabilities scores cosine 0.9998. So every output is given a *kind*
(:func:`output_kind`: from its name, else from its values) and the kind adds its own criteria
(:data:`KIND_CRITERIA`, flat keys ``"<kind>.<criterion>"`` in a criteria dict):

=========  =========================================================================================
logits     the table above; top-1 is counted only over *decided* inputs, whose reference top-1/top-2
           margin exceeds the measured noise (:func:`tie_noise`); near-ties are reported apart.
           Plus ``logits.min_input_centred_cosine``: the cosine after removing the mean over the
           inputs, i.e. of the part of the scores that depends on the input. Random weights give
           logits that are mostly one constant vector (cosine ≈ 1 for any candidate) and near-tied
           (top-1 not judged): an INT8 file that ignores its input scored cosine 0.998 and passed
           both, with input-centred cosine 2e-7 (a correct one: 0.97).
log_probs  as logits, plus a limit on max abs error in nats (``log_probs.max_abs``) and the finite
           check
map        values in [0, 1] (sigmoid attention maps): plus ``map.min_centred_cosine``, the cosine
           after removing each map's own mean (the Pearson correlation of the maps, so a flipped
           map fails), and ``map.max_abs`` (a probability off by more than this is wrong)
tensor     anything else: the table above
=========  =========================================================================================
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
#: Criteria an output kind adds to its precision's row (see the module docstring). Limits are the
#: measured worst case of correct files with a margin (README, "Precision as TensorRT computes it"):
#: the centred cosine of seeded random-weight maps, nearly flat, was 0.978 in FP16 (ran56_cifar
#: stage 2: the spread is a few FP16 steps) and 0.976–0.998 in INT8, while a flipped map scores
#: below 0.5; INT8 log-probabilities of wrn16_4_ar moved up to 0.85 nats with top-1 at 100 %.
KIND_CRITERIA: dict[str, dict[str, dict[str, float]]] = {
    "fp32": {
        "map": {"min_centred_cosine": 0.999, "max_abs": 1e-3},
        "log_probs": {"max_abs": 1e-3, "min_input_centred_cosine": 0.999},
        "logits": {"min_input_centred_cosine": 0.999},
    },
    "fp16": {
        "map": {"min_centred_cosine": 0.9, "max_abs": 0.02},
        "log_probs": {"max_abs": 0.1, "min_input_centred_cosine": 0.98},
        "logits": {"min_input_centred_cosine": 0.98},
    },
    "bf16": {
        "map": {"min_centred_cosine": 0.9, "max_abs": 0.05},
        "log_probs": {"max_abs": 0.3, "min_input_centred_cosine": 0.95},
        "logits": {"min_input_centred_cosine": 0.95},
    },
    "int8": {
        "map": {"min_centred_cosine": 0.9, "max_abs": 0.15},
        "log_probs": {"max_abs": 1.0, "min_input_centred_cosine": 0.9},
        "logits": {"min_input_centred_cosine": 0.9},
    },
}
OUTPUT_KINDS = ("logits", "log_probs", "map", "tensor")
#: Which quantile of the per-input max abs logit error is "the measured noise", and its multiple:
#: a top-1 flip needs the margin to shrink by |Δtop1| + |Δtop2| ≤ 2·max|Δ|; the median, times 3 for
#: the spread of errors between inputs, so that up to half the inputs broken cannot hide as ties.
TIE_QUANTILE = 0.5
TIE_FACTOR = 3.0
# criterion → (metric in Agreement, "max" = value must be ≤ limit / "min" = value must be ≥ limit)
CRITERIA = {
    "max_rel_l2": ("rel_l2", "max"),
    "max_abs": ("max_abs", "max"),
    "min_cosine": ("cosine", "min"),
    "min_psnr": ("psnr", "min"),
    "min_top1": ("top1", "min"),
    "min_top5": ("top5", "min"),
    "min_centred_cosine": ("centred_cosine", "min"),
    "min_input_centred_cosine": ("input_centred_cosine", "min"),
}
TOLERANCE_KEYS = ("atol", "rtol")
#: Criteria whose value is a fraction (agreement, cosine): the limit must lie in [0, 1].
FRACTION_CRITERIA = (
    "min_top1", "min_top5", "min_cosine", "min_centred_cosine", "min_input_centred_cosine"
)


def precision_family(precision: str) -> str:
    """``autocast-bf16`` → ``bf16``, ``autocast-fp16`` → ``fp16``; others unchanged."""
    fam = precision.split("-")[-1].lower()
    return fam if fam in DEFAULT_CRITERIA else "fp32"


def _split_key(key: str) -> tuple[str | None, str]:
    """``"map.max_abs"`` → ``("map", "max_abs")``; ``"max_abs"`` → ``(None, "max_abs")``."""
    if "." in key:
        kind, name = key.split(".", 1)
        return kind, name
    return None, key


def criteria_for(precision: str, overrides: Mapping[str, float | None] | None = None) -> dict:
    """Default criteria of ``precision`` with ``overrides`` applied (``None`` = keep default).

    Plain keys apply to every output; ``"<kind>.<criterion>"`` keys (``map.max_abs``,
    ``log_probs.max_abs``) only to outputs of that kind (:data:`KIND_CRITERIA`).
    """
    family = precision_family(precision)
    crit: dict[str, float] = dict(DEFAULT_CRITERIA[family])
    for kind, limits in KIND_CRITERIA[family].items():
        crit.update({f"{kind}.{k}": v for k, v in limits.items()})
    for key, value in (overrides or {}).items():
        kind, name = _split_key(key)
        if (kind is not None and kind not in OUTPUT_KINDS) or (
            name not in CRITERIA and name not in TOLERANCE_KEYS
        ) or (kind is not None and name in TOLERANCE_KEYS):
            raise DeployRanError(
                f"Unknown criterion {key!r}.",
                hint=f"Choose from: {', '.join([*CRITERIA, *TOLERANCE_KEYS])}, or "
                f"KIND.CRITERION for one kind of output ({', '.join(OUTPUT_KINDS)}), e.g. "
                "map.max_abs.",
            )
        if value is None:
            continue
        value = float(value)
        if math.isnan(value):
            raise DeployRanError(f"Criterion {key} is NaN.", hint="Give a number.")
        if name in FRACTION_CRITERIA and not 0.0 <= value <= 1.0:
            raise DeployRanError(
                f"Criterion {key} is a fraction in [0, 1], got {value:g}.",
                hint="E.g. 0.99 for 99 %.",
            )
        if name in ("max_rel_l2", "max_abs", *TOLERANCE_KEYS) and value < 0:
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
    """One output's agreement, its kind and the kind's own measurements.

    ``top1_decided`` is top-1 agreement over the inputs whose reference top-1/top-2 margin exceeds
    ``tie_noise`` (``near_ties`` inputs are left out of it; ``agreement.top1`` counts them all).
    ``centred_cosine`` is the cosine after removing each map's mean (maps only).
    """

    name: str
    shape: list[int]
    agreement: Agreement
    finite: bool = True
    kind: str = "tensor"
    centred_cosine: float | None = None
    input_centred_cosine: float | None = None
    top1_decided: float | None = None
    near_ties: int | None = None
    tie_noise: float | None = None

    def metrics(self) -> dict[str, float | None]:
        """Every metric a criterion can name (``top1`` is the decided top-1 when measured)."""
        values = self.agreement.as_dict()
        values["centred_cosine"] = self.centred_cosine
        values["input_centred_cosine"] = self.input_centred_cosine
        if self.top1_decided is not None or self.near_ties:
            values["top1"] = self.top1_decided
        return values

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "shape": self.shape,
            "kind": self.kind,
            "finite": self.finite,
            **self.agreement.as_dict(),
            "centred_cosine": self.centred_cosine,
            "input_centred_cosine": self.input_centred_cosine,
            "top1_decided": self.top1_decided,
            "near_ties": self.near_ties,
            "tie_noise": self.tie_noise,
        }


@dataclass
class WorstInput:
    name: str
    index: int
    rel_l2: float  # of this sample, worst over the outputs
    reference_top1: int | None = None
    candidate_top1: int | None = None


class Verdict:
    """The pass/fail reading of a list of :class:`Check` (shared by every comparison result)."""

    checks: list[Check]

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    @property
    def failed_checks(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def worst_failure(self) -> str:
        """One line naming the worst failed check (for error messages)."""
        bad = self.failed_checks
        if not bad:
            return "all checks passed"
        c = bad[0]
        if c.value is None:
            return f"output {c.output!r}: {c.criterion} {c.detail}".strip()
        return f"output {c.output!r}: {c.criterion} {c.value:.3g} (limit {c.limit:g}) {c.detail}".strip()


@dataclass
class Comparison(Verdict):
    """Per-output agreement, the criteria's verdicts and the worst inputs."""

    criteria: dict[str, float]
    outputs: list[OutputReport]
    checks: list[Check]
    worst: list[WorstInput] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


    def output(self, name: str) -> OutputReport | None:
        return next((o for o in self.outputs if o.name == name), None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "criteria": self.criteria,
            "outputs": [o.as_dict() for o in self.outputs],
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


def _judge(
    report: OutputReport, ref: np.ndarray, cand: np.ndarray, crit: Mapping[str, float]
) -> list[Check]:
    """The checks of one output: plain criteria, then its kind's (``kind.criterion``) ones."""
    name, metrics = report.name, report.metrics()
    checks = []
    plain = {k: v for k, v in crit.items() if "." not in k}
    # A kind's own limits are checked besides the plain ones, under their full key (map.max_abs).
    own = {k: v for k, v in crit.items() if k.startswith(f"{report.kind}.")}
    for full_key, limit in [*plain.items(), *own.items()]:
        key = full_key.split(".", 1)[-1]
        if key not in CRITERIA:
            continue
        metric, kind = CRITERIA[key]
        value = metrics.get(metric)
        if value is None:
            if key == "min_top1" and report.near_ties:
                checks.append(
                    Check(
                        name, full_key, None, limit, True,
                        f"all {report.near_ties} inputs are near-ties (margin ≤ noise "
                        f"{report.tie_noise:.3g}); not judged",
                    )
                )
            elif key == "min_centred_cosine" and report.kind == "map":
                checks.append(
                    Check(name, full_key, None, limit, True, "reference map is constant; not judged")
                )
            continue  # top-k on a non-classification output
        passed = bool(value <= limit) if kind == "max" else bool(value >= limit)
        detail = ""
        if key == "min_top1" and report.near_ties:
            detail = (
                f"over {report.shape[0] - report.near_ties} decided inputs; {report.near_ties} "
                f"near-tie(s) (margin ≤ noise {report.tie_noise:.3g}) left out"
            )
        checks.append(Check(name, full_key, float(value), limit, passed, detail))
    applicable = plain
    if "atol" in applicable:
        atol, rtol = applicable["atol"], applicable["rtol"]
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
    kinds: Mapping[str, str] | None = None,
) -> Comparison:
    """Compare every matched output, judge it against ``criteria`` and name the worst samples.

    Outputs are matched by name (by position when no name is shared). A candidate output with
    NaN or infinite values fails a ``finite`` check; its metrics are computed with those values
    replaced by 0 so the rest of the table stays readable. ``kinds`` names an output's kind
    (``logits``, ``log_probs``, ``map``, ``tensor``) where the caller knows it; otherwise
    :func:`output_kind` decides from the name and the reference values.
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
        kind = (kinds or {}).get(rname)
        if kind is not None and kind not in OUTPUT_KINDS:
            raise DeployRanError(
                f"Unknown output kind {kind!r} for {rname}.",
                hint=f"Choose one of: {', '.join(OUTPUT_KINDS)}.",
            )
        report = measure_output(label, r, c, finite, kind)
        classification = report.agreement.top1 is not None
        reports.append(report)
        checks.extend(_judge(report, r, c, crit))
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
