"""``verify`` (and every conversion's check): outputs × metrics, the criteria, the worst inputs.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from rich.console import RenderableType
from rich.markup import escape
from rich.table import Table

from deploy_ran.compare.results import VerifyResult
from deploy_ran.tables.cells import esc, num


def _output_labels(outputs: Sequence[Any]) -> list[str]:
    """Row labels: the name, its kind where it says more than the name, and the batch where one
    output was compared at several batch sizes (export's check runs batch 1 and 3)."""
    names = [o.name for o in outputs]
    labels = []
    for o in outputs:
        kind = getattr(o, "kind", "tensor")
        label = o.name + (f" ({kind})" if kind not in ("tensor", o.name) else "")
        if names.count(o.name) > 1 and getattr(o, "shape", None):
            label += f", batch {o.shape[0]}"
        labels.append(label)
    return labels


def _check_labels(checks: Sequence[Any], outputs: Sequence[Any]) -> list[str]:
    """A criterion that was checked once per batch size is labelled with that batch (its i-th
    occurrence belongs to the i-th run of that output, the order the runs were merged in)."""
    batches: dict[str, list[int]] = {}
    for o in outputs:
        if getattr(o, "shape", None):
            batches.setdefault(o.name, []).append(o.shape[0])
    seen: dict[tuple[str, str], int] = {}
    total = {(c.output, c.criterion): 0 for c in checks}
    for c in checks:
        total[(c.output, c.criterion)] += 1
    labels = []
    for c in checks:
        key = (c.output, c.criterion)
        i = seen[key] = seen.get(key, -1) + 1
        runs = batches.get(c.output, [])
        repeated = total[key] > 1 and total[key] == len(runs)
        labels.append(f"{c.output}, batch {runs[i]}" if repeated else c.output)
    return labels


def verify_tables(result: VerifyResult) -> list[Table]:
    """Outputs × metrics, the criteria with pass/fail, and the worst-matching inputs."""
    ref, cand = result.reference, result.candidate
    metrics = Table(
        title=f"{esc(cand['name'])} ({esc(cand['backend'])} {esc(cand['precision'])}) vs "
        f"{esc(ref['name'])} ({esc(ref['backend'])} {esc(ref['precision'])}) on "
        f"{result.inputs['count']} inputs from {escape(str(result.inputs['source']))}",
        title_justify="left",
    )
    for col in (
        "output",
        "shape",
        "max abs",
        "mean abs",
        "rel L2",
        "cosine",
        "PSNR dB",
        "top-1",
        "top-5",
    ):
        metrics.add_column(col, justify="left" if col == "output" else "right")
    for o, label in zip(result.outputs, _output_labels(result.outputs)):
        a = o.agreement
        metrics.add_row(
            escape(label),
            "×".join(map(str, o.shape)),
            num(a.max_abs),
            num(a.mean_abs),
            num(a.rel_l2),
            num(a.cosine, ".6f"),
            num(a.psnr, ".1f"),
            ("-" if a.top1 is None else f"{a.top1:.1%}")
            + (f" ({o.near_ties} near-tie)" if getattr(o, "near_ties", None) else ""),
            "-" if a.top5 is None else f"{a.top5:.1%}",
        )
    checks = Table(title=f"Criteria ({esc(result.precision)} candidate)", title_justify="left")
    for col in ("output", "criterion", "value", "limit", "result"):
        checks.add_column(col)
    for c, label in zip(result.checks, _check_labels(result.checks, result.outputs)):
        checks.add_row(
            escape(label),
            escape(c.criterion),
            num(c.value, ".4g") + (f" ({escape(c.detail)})" if c.detail else ""),
            num(c.limit, ".4g"),
            "[green]pass[/]" if c.passed else "[red]FAIL[/]",
        )
    worst = Table(title="Worst-matching inputs", title_justify="left")
    for col in ("input", "rel L2", "top-1 ref", "top-1 cand"):
        worst.add_column(col, justify="left" if col == "input" else "right")
    for w in result.worst:
        agree = w.reference_top1 == w.candidate_top1
        worst.add_row(
            escape(w.name),
            num(w.rel_l2),
            "-" if w.reference_top1 is None else str(w.reference_top1),
            "-"
            if w.candidate_top1 is None
            else (str(w.candidate_top1) if agree else f"[red]{w.candidate_top1}[/]"),
        )
    return [metrics, checks, worst]


def verify_report(result: VerifyResult, output: Any = None) -> list[RenderableType]:
    """verify's tables, notes, skipped images and the verdict."""
    out: list[RenderableType] = [*verify_tables(result)]
    out += [f"[yellow]note:[/] {esc(n)}" for n in result.notes]
    out += [f"[yellow]skipped:[/] {esc(s['error'])}" for s in result.inputs["skipped"][:5]]
    if result.passed:
        out.append(f"[green]✓ PASS[/] ({result.seconds:.1f} s)")
    else:
        failed = ", ".join(f"{c.output} {c.criterion}" for c in result.failed_checks)
        out.append(f"[red]✗ FAIL[/]: {esc(failed)}")
    if output is not None:
        out.append(f"wrote {esc(output)}")
    return out


def check_tables(check: Any | None, what: str, path: Any = None) -> list[RenderableType]:
    """A conversion's check (a VerifyResult) as verify prints it, or why there is none.

    The check ran on the file before it was renamed into place, so the candidate is named by its
    final ``path``; the worst-inputs table is left out (the inputs are seeded random samples).
    """
    if check is None:
        return [f"[yellow]  {escape(what)} check skipped (--skip-parity)[/]"]
    shown = copy.copy(check)
    if check.reference.get("backend") == "torch":
        shown.reference = {**check.reference, "name": "eager PyTorch"}
    if path is not None:
        shown.candidate = {**check.candidate, "name": str(path)}
    metrics, criteria, _worst = verify_tables(shown)
    metrics.title = f"{escape(what)} check: {metrics.title}"
    return [metrics, criteria]
