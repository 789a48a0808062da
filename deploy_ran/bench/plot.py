"""The benchmark PNG: every row a bar, nothing hidden.

One horizontal bar per row (backend × precision × batch size) of its median latency, on a log
axis so that a 0.5 ms row and a 500 ms row are both readable (a linear axis turns fast rows into
slivers); a whisker to p90; the throughput and both speedups written at the end of each bar. With
``bench --data`` a second panel beside it, sharing the rows, draws each row's top-1 with its 95 %
interval, so speed and accuracy are read on the same line. Colours say the backend; the legend
sits below the panels, never over a bar.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deploy_ran.bench.result import BenchResult
from deploy_ran.fileio import atomic_path

BACKEND_COLOURS = {
    "torch": "tab:orange",
    "ort": "tab:blue",
    "trt": "tab:green",
    "triton": "tab:purple",
}


def write_plot(result: BenchResult, path: str | Path) -> Path:
    """Write the PNG (atomically); see the module docstring for what it shows."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    ran = [r for r in result.rows if r.status == "ran" and r.latency]
    accuracy = any(r.top1 is not None for r in ran)
    height = max(3.0, 0.42 * len(ran) + 2.0)
    fig = Figure(figsize=(13.5 if accuracy else 10.5, height))
    if accuracy:
        ax, ax_acc = fig.subplots(1, 2, sharey=True, width_ratios=(2.4, 1))
    else:
        ax, ax_acc = fig.subplots(1, 1), None
    ys = list(range(len(ran)))[::-1]
    _speed_panel(ax, ran, ys)
    if ax_acc is not None:
        _accuracy_panel(ax_acc, ran, ys, result)
    backends = list(dict.fromkeys(r.backend for r in ran))
    if backends:
        handles = [Patch(color=BACKEND_COLOURS.get(b, "tab:gray"), label=b) for b in backends]
        fig.legend(
            handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False
        )
    env = result.environment
    gpus = env.get("gpus") or ["no GPU"]
    title = (
        f"{result.model} at {result.image_size}px on {result.device} · {env.get('cpu')} · "
        f"{gpus[0]} · {result.threads} thread(s)"
    )
    if result.warnings:
        title += "\nWARNING: " + " / ".join(dict.fromkeys(w.split(":")[0] for w in result.warnings))
    fig.suptitle(title, fontsize=9, color="red" if result.warnings else "black")
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    return Path(path)


def _row_name(r: Any) -> str:
    return f"{r.label} · b{r.batch_size}"


def _speed_panel(ax: Any, ran: list[Any], ys: list[int]) -> None:
    medians = [r.latency.median for r in ran]
    p90 = [r.latency.p90 for r in ran]
    colours = [BACKEND_COLOURS.get(r.backend, "tab:gray") for r in ran]
    ax.barh(ys, medians, color=colours, height=0.7)
    ax.errorbar(
        medians, ys, xerr=[[0] * len(ran), [max(0.0, p - m) for p, m in zip(p90, medians)]],
        fmt="none", ecolor="black", capsize=3, lw=0.8,
    )  # fmt: skip
    ax.set_xscale("log")
    lo, hi = (min(medians), max(p90)) if ran else (0.1, 1.0)
    ax.set_xlim(lo / 3, hi * 12)  # room right of the longest bar for its text
    for y, r, m, p in zip(ys, ran, medians, p90):
        parts = [f"{m:.3g} ms", f"{r.throughput:.1f} img/s"]
        if r.speedup is not None:
            parts.append(f"{r.speedup:.2f}× fp32")
        if r.speedup_vs_best_torch is not None and r.speedup_vs_best_torch != r.speedup:
            parts.append(f"{r.speedup_vs_best_torch:.2f}× best")
        ax.text(max(p, m) * 1.08, y, "  ".join(parts), va="center", fontsize=7)
    ax.set_yticks(ys, [_row_name(r) for r in ran], fontsize=7)
    ax.set_xlabel("median latency, ms (log scale; whisker to p90)")
    ax.set_title("Speed", fontsize=9)
    ax.grid(True, axis="x", which="both", alpha=0.25)


def _accuracy_panel(ax: Any, ran: list[Any], ys: list[int], result: BenchResult) -> None:
    rows = (result.accuracy or {}).get("rows", {})
    pts = [(y, r, rows.get(r.label)) for y, r in zip(ys, ran) if r.top1 is not None]
    for y, r, entry in pts:
        top1 = r.top1 * 100
        lo, hi = (entry or {}).get("top1_ci95", [r.top1, r.top1])
        colour = BACKEND_COLOURS.get(r.backend, "tab:gray")
        err = [[max(0.0, top1 - lo * 100)], [max(0.0, hi * 100 - top1)]]
        ax.errorbar([top1], [y], xerr=err, fmt="o", color=colour, ecolor="black", capsize=3, ms=5,
                    lw=0.8)  # fmt: skip
        text = f"{top1:.2f} %"
        if r.top1_p is not None:
            text += f"  Δ {r.top1_delta * 100:+.2f} (p={r.top1_p:.2g})"
        ax.annotate(text, (top1, y), xytext=(0, 6), textcoords="offset points", ha="center",
                    fontsize=6.5)  # fmt: skip
    if pts:
        lows = [(e or {}).get("top1_ci95", [r.top1])[0] * 100 for _, r, e in pts]
        highs = [(e or {}).get("top1_ci95", [0, r.top1])[-1] * 100 for _, r, e in pts]
        span = max(max(highs) - min(lows), 1.0)
        ax.set_xlim(max(0.0, min(lows) - 0.2 * span), min(100.0, max(highs) + 0.2 * span))
    n = (result.accuracy or {}).get("images")
    ax.set_xlabel("top-1 % (95 % interval)")
    ax.set_title(f"Accuracy on {n:,} labelled images" if n else "Accuracy", fontsize=9)
    ax.grid(True, axis="x", alpha=0.25)
