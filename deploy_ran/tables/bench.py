"""``bench``: the latency table (fitted to the console's width), its environment and notes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.markup import escape
from rich.table import Table

from deploy_ran.bench import BenchResult
from deploy_ran.tables.cells import esc, num

#: Latency columns of the table (JSON and CSV carry every statistic, mean and p95 too); on a
#: console too narrow for them all, the bench table keeps NARROW_STATS.
STATS = ("min", "median", "p90", "p99", "max", "std")


NARROW_STATS = ("median", "p99")


#: The bench table's layout column, kept narrow (JSON/CSV keep PyTorch's names).
LAYOUT_SHORT = {"channels_last": "NHWC", "NCHW": "NCHW", "NHWC (prefer_nhwc)": "NHWC"}


def _ms(value: float | None) -> str:
    """A latency in ms to four significant digits (1350, 171.1, 3.809): narrow columns, and
    the JSON/CSV keep every digit."""
    if value is None:
        return "-"
    return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.4g}"


class _FitToWidth:
    """Renders the bench table with every latency column where the console is wide enough, else
    with fewer (:data:`NARROW_STATS`, then the median alone and no layout column, which the
    labels still name), so that no number is ever cut off or pushed off the edge."""

    LEVELS = ((STATS, True), (NARROW_STATS, True), (("median",), False))

    def __init__(self, result: BenchResult) -> None:
        self.result = result

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        for stats, layout in self.LEVELS:
            table = _bench_table(self.result, stats, layout)
            if _min_width(table) <= options.max_width:
                break
        yield table


def _min_width(table: Table) -> int:
    """The narrowest a table renders without cutting a cell of a ``no_wrap`` column: those at
    their widest cell, folding columns at their ``min_width``, plus padding and borders."""
    from rich.text import Text

    total = len(table.columns) + 1  # vertical borders
    for col in table.columns:
        if col.no_wrap:
            cells = [col.header, *col.cells]
            widest = max(
                (Text.from_markup(c).cell_len if isinstance(c, str) else 0) for c in cells
            )
        else:
            widest = col.min_width or 1
        total += widest + 2  # one space of padding each side
    return total


def bench_table(result: BenchResult) -> RenderableType:
    """One row per backend × precision × batch size: latency statistics, throughput, both
    speedups (the caption names their baselines) and each row's layout and timing method.
    Fits the console: fewer latency columns on a narrow one (JSON/CSV keep them all)."""
    return _FitToWidth(result)


def _bench_table(result: BenchResult, stats: Sequence[str], layout: bool = True) -> Table:
    title = (
        f"{esc(result.model)} at {result.image_size}×{result.image_size} on {esc(result.device)}, "
        f"{result.threads} threads"
    )
    timings = {r.timing for r in result.rows if r.status == "ran" and r.latency}
    shared = len(timings) == 1  # one timing method for every row: say it once, in the title
    if shared:
        title += f" · {escape(next(iter(timings)))}"
    table = Table(title=title + " · latency in ms", title_justify="left")
    # Numbers never wrap or get cut: when the table is wider than the console, the label and
    # status columns fold onto more lines instead (rich narrows wrapping columns first).
    table.add_column("backend", overflow="fold", min_width=12)
    table.add_column("batch", justify="right", no_wrap=True)
    for col in stats:
        table.add_column(col, justify="right", no_wrap=True)
    table.add_column("img/s", justify="right", no_wrap=True)
    table.add_column("× fp32", justify="right", no_wrap=True)
    table.add_column("× best", justify="right", no_wrap=True)
    sizes = any(r.file_bytes for r in result.rows)
    accuracy = any(r.top1 is not None for r in result.rows)
    if sizes:
        table.add_column("MB", justify="right", no_wrap=True)
    if accuracy:
        table.add_column("top-1 %", justify="right", no_wrap=True)
        table.add_column("Δ pt (p)", justify="right", no_wrap=True)
    if layout:
        table.add_column("layout", no_wrap=True)
    if not shared:
        table.add_column("timing", overflow="fold")
    table.add_column("status", overflow="fold", min_width=8)
    reasons: list[str] = []
    for r in result.rows:
        if r.status == "ran" and r.latency:
            compiled = f" (compile {r.compile_seconds:.0f} s)" if r.compile_seconds else ""
            table.add_row(
                escape(r.label),
                str(r.batch_size),
                *(_ms(getattr(r.latency, k)) for k in stats),
                num(r.throughput, ".1f"),
                "-" if r.speedup is None else f"{r.speedup:.2f}×",
                "-" if r.speedup_vs_best_torch is None else f"{r.speedup_vs_best_torch:.2f}×",
                *([_mb(r.file_bytes)] if sizes else []),
                *(_accuracy_cells(r) if accuracy else []),
                *([escape(LAYOUT_SHORT.get(r.layout or "", r.layout or "-"))] if layout else []),
                *([] if shared else [escape(r.timing)]),
                f"[green]ran[/] ×{r.iterations}{compiled}",
            )
            continue
        reason = r.reason or ""
        if reason not in reasons:
            reasons.append(reason)
        color = "yellow" if r.status == "skipped" else "red"
        table.add_row(
            escape(r.label),
            str(r.batch_size),
            *(["-"] * (len(stats) + 3 + layout + (not shared) + sizes + 2 * accuracy)),
            f"[{color}]{r.status}[/] ({reasons.index(reason) + 1})",
        )
    lines = [_baseline_line(result)]
    if result.loader:
        ips = result.loader["images_per_s"]
        lines.append(
            "loader, one worker, {}×{} JPEGs: ".format(*result.loader["photo_size"])
            + ", ".join(f"{m} decoding {v:.1f} img/s" for m, v in ips.items())
            + f" (infer decodes: {result.loader['infer_decoding']})"
        )
        for batch, feed in result.loader.get("feeding", {}).items():
            need = feed.get("workers_needed_infer")
            if need is not None:
                lines.append(
                    f"batch {batch}: the fastest row ({escape(feed['fastest_row'])}, "
                    f"{feed['images_per_s']:.1f} img/s) needs {need:.1f} infer loader worker(s)"
                )
    lines += [f"({i}) {escape(t)}" for i, t in enumerate(reasons, 1)]
    table.caption = "\n".join(lines)
    table.caption_justify = "left"
    return table


def _mb(value: int | None) -> str:
    return "-" if value is None else f"{value / 1e6:.2f}"


def _accuracy_cells(row: Any) -> list[str]:
    """top-1 % and its difference from eager PyTorch FP32 (red when significant, p < 0.05)."""
    if row.top1 is None:
        return ["-", "-"]
    delta = "-"
    if row.top1_delta is not None and row.top1_p is None:
        delta = "ref"
    elif row.top1_delta is not None:
        delta = f"{row.top1_delta * 100:+.2f} ({row.top1_p:.2g})"
        if row.top1_p is not None and row.top1_p < 0.05:
            delta = f"[red]{delta}[/]" if row.top1_delta < 0 else f"[green]{delta}[/]"
    return [f"{row.top1 * 100:.2f}", delta]


def _baseline_line(result: BenchResult) -> str:
    """What the two speedup columns are measured against, batch size by batch size."""
    base = result.baselines()
    fp32 = sorted({b["torch_fp32"] for b in base.values() if b["torch_fp32"]})
    best = ", ".join(
        f"batch {k}: {escape(v['best_torch'])}" for k, v in base.items() if v["best_torch"]
    )
    return (
        f"× fp32 = vs eager PyTorch FP32 ({escape(', '.join(fp32)) or 'not measured'}); "
        f"× best = vs the fastest PyTorch row of the batch ({best or 'none ran'}); layout NHWC = "
        "channels_last"
    )


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


def bench_report(result: BenchResult) -> list[RenderableType]:
    return [
        *(f"[bold red]WARNING: {esc(w)}[/]" for w in result.warnings),
        bench_table(result),
        *machine_lines(result),
        environment_table(result),
        *(f"[yellow]note:[/] {esc(n)}" for n in result.notes),
        *(f"wrote {esc(kind.upper())}: {esc(path)}" for kind, path in result.files.items()),
    ]


def machine_lines(result: BenchResult) -> list[str]:
    """Load before/after, cores, threads per backend, the accuracy data; warnings repeated last
    so they are seen under a long table too."""
    m = result.machine or {}
    out = []
    if m:
        load = lambda v: "n/a" if not v else "/".join(f"{x:.2f}" for x in v)  # noqa: E731
        used = ", ".join(
            f"{esc(k)} {v}" for k, v in (m.get("threads_used") or {}).items() if v is not None
        )
        out.append(
            f"machine: {m['cores']} usable core(s); load 1/5/15 min {load(m.get('load_before'))} "
            f"before, {load(m.get('load_after'))} after; {m['threads']} thread(s) per backend "
            f"({esc(m['threads_from'])})" + (f"; threads used: {used}" if used else "")
        )
    if result.accuracy:
        a = result.accuracy
        ref = f"Δ against {esc(a['reference'])}" if a.get("reference") else "no eager FP32 row: no Δ"
        out.append(
            f"accuracy: top-1 on {a['images']:,} labelled image(s) of {esc(a['data'])}"
            + (f" ({a['skipped']} unreadable, left out)" if a.get("skipped") else "")
            + f"; {ref}, (p) = exact McNemar"
        )
    out += [f"[bold red]WARNING: {esc(w)}[/]" for w in result.warnings]
    return out
