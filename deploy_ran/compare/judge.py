"""Judge candidate outputs against reference outputs: the one agreement table and its verdicts.

Every agreement table the toolkit prints (the export check, the FP16 check, the INT8 check after
calibration, sensitivity, ``verify``) is a :class:`~deploy_ran.compare.results.Comparison` made by
:func:`compare_outputs` from named output arrays, with limits from
:mod:`deploy_ran.compare.criteria`. Running the two sides is :mod:`deploy_ran.compare.run`'s job
(on runners); this module only sees arrays, so the floors below the runners (calibration) can use
it too. Non-finite candidate values always fail (``finite`` check), whatever the precision.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from deploy_ran.compare.criteria import CRITERIA, OUTPUT_KINDS
from deploy_ran.compare.kinds import measure_output
from deploy_ran.compare.metrics import per_sample_rel_l2
from deploy_ran.compare.results import Check, Comparison, OutputReport, WorstInput
from deploy_ran.errors import DeployRanError


def judge_output(
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
        checks.extend(judge_output(report, r, c, crit))
        if len(r) == total and total:
            sample_scores = np.maximum(sample_scores, per_sample_rel_l2(r, c))
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
