"""``verify`` (and every conversion's check): outputs × metrics, the criteria, the worst inputs.
"""

from __future__ import annotations

import copy
from typing import Any

from rich.console import RenderableType
from rich.markup import escape
from rich.table import Table

from deploy_ran.compare.results import VerifyResult
from deploy_ran.tables.cells import esc, num


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
    for o in result.outputs:
        a = o.agreement
        kind = getattr(o, "kind", "tensor")
        metrics.add_row(
            escape(o.name) + (f" ({kind})" if kind != "tensor" else ""),
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
    for c in result.checks:
        checks.add_row(
            escape(c.output),
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
