"""Rich tables for the results of ``verify`` and ``bench``.

Shared by the command line and the demo pipeline so that both print the same thing; the numbers
themselves come from :mod:`deploy_ran.verify` and :mod:`deploy_ran.bench`.
"""

from __future__ import annotations

import json
import math

from rich.markup import escape
from rich.table import Table

from deploy_ran.bench import BenchResult
from deploy_ran.verify import VerifyResult

STATS = ("min", "mean", "median", "p90", "p95", "p99", "max", "std")


def _num(value: float | None, fmt: str = ".3g") -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return "∞" if value > 0 else "-∞"
    return format(value, fmt)


def bench_table(result: BenchResult) -> Table:
    """One row per backend × precision × batch size: latency statistics, throughput, speedup."""
    method = result.method()
    title = (
        f"{result.model} at {result.image_size}×{result.image_size} on {result.device}, "
        f"{result.threads} threads · {method['timer']}, "
        f"{'copies included' if result.copies_included else 'no host↔device copies'}"
    )
    table = Table(title=title + " · latency in ms", title_justify="left")
    table.add_column("backend", no_wrap=True)
    table.add_column("batch", justify="right")
    for col in STATS:
        table.add_column(col, justify="right")
    table.add_column("img/s", justify="right")
    table.add_column("speedup", justify="right")
    table.add_column("status", no_wrap=True)
    reasons: list[str] = []
    for r in result.rows:
        if r.status == "ran" and r.latency:
            table.add_row(
                escape(r.label),
                str(r.batch_size),
                *(_num(getattr(r.latency, k), ".2f") for k in STATS),
                _num(r.throughput, ".1f"),
                "-" if r.speedup is None else f"{r.speedup:.2f}×",
                f"[green]ran[/] ×{r.iterations}",
            )
            continue
        reason = r.reason or ""
        if reason not in reasons:
            reasons.append(reason)
        color = "yellow" if r.status == "skipped" else "red"
        table.add_row(
            escape(r.label),
            str(r.batch_size),
            *(["-"] * (len(STATS) + 2)),
            f"[{color}]{r.status}[/] ({reasons.index(reason) + 1})",
        )
    if reasons:
        table.caption = "\n".join(f"({i}) {escape(t)}" for i, t in enumerate(reasons, 1))
        table.caption_justify = "left"
    return table


def environment_table(result: BenchResult) -> Table:
    """The environment the numbers were measured in, printed with them."""
    env = result.environment
    table = Table(title="Environment", title_justify="left", show_header=False)
    table.add_column("key", style="dim")
    table.add_column("value", overflow="fold")
    keys = (
        "cpu",
        "cpu_count",
        "bench_threads",
        "gpus",
        "cuda",
        "python",
        "torch",
        "onnxruntime",
        "onnxruntime_providers",
        "tensorrt",
        "platform",
    )
    for key in keys:
        if key in env:
            value = env[key]
            table.add_row(key, escape(value if isinstance(value, str) else json.dumps(value)))
    return table


def verify_tables(result: VerifyResult) -> list[Table]:
    """Outputs × metrics, the criteria with pass/fail, and the worst-matching inputs."""
    ref, cand = result.reference, result.candidate
    metrics = Table(
        title=f"{escape(cand['name'])} ({cand['backend']} {cand['precision']}) vs "
        f"{escape(ref['name'])} ({ref['backend']} {ref['precision']}) on "
        f"{result.inputs['count']} inputs from {escape(result.inputs['source'])}",
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
            _num(a.max_abs),
            _num(a.mean_abs),
            _num(a.rel_l2),
            _num(a.cosine, ".6f"),
            _num(a.psnr, ".1f"),
            ("-" if a.top1 is None else f"{a.top1:.1%}")
            + (f" ({o.near_ties} near-tie)" if getattr(o, "near_ties", None) else ""),
            "-" if a.top5 is None else f"{a.top5:.1%}",
        )
    checks = Table(title=f"Criteria ({result.precision} candidate)", title_justify="left")
    for col in ("output", "criterion", "value", "limit", "result"):
        checks.add_column(col)
    for c in result.checks:
        checks.add_row(
            escape(c.output),
            c.criterion,
            _num(c.value, ".4g") + (f" ({escape(c.detail)})" if c.detail else ""),
            _num(c.limit, ".4g"),
            "[green]pass[/]" if c.passed else "[red]FAIL[/]",
        )
    worst = Table(title="Worst-matching inputs", title_justify="left")
    for col in ("input", "rel L2", "top-1 ref", "top-1 cand"):
        worst.add_column(col, justify="left" if col == "input" else "right")
    for w in result.worst:
        agree = w.reference_top1 == w.candidate_top1
        worst.add_row(
            escape(w.name),
            _num(w.rel_l2),
            "-" if w.reference_top1 is None else str(w.reference_top1),
            "-"
            if w.candidate_top1 is None
            else (str(w.candidate_top1) if agree else f"[red]{w.candidate_top1}[/]"),
        )
    return [metrics, checks, worst]
