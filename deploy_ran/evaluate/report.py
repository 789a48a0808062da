"""What ``evaluate`` shows a person: a table, the JSON, and a PNG.

The table has one row per target (top-1 with its 95 % interval, top-5, mean confidence, ECE) and,
for every target but the reference, the paired comparison (Δ top-1 with its interval, predictions
changed as lost/gained, exact McNemar p, the verdict). The PNG draws each target's top-1 with its
interval on one axis (so overlapping intervals are seen as such) and, for at most 50 classes, the
confusion matrix of the reference and of the candidate furthest from it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import RenderableType
from rich.markup import escape
from rich.table import Table

from deploy_ran.evaluate.run import EvaluateResult
from deploy_ran.fileio import atomic_path, check_writable, json_text

MAX_SKIPPED_SHOWN = 5


def _pct(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value * 100:.{digits}f}"


def _size(value: int | None) -> str:
    if value is None:
        return "-"
    return f"{value / 1e6:.2f} MB" if value >= 1e5 else f"{value / 1e3:.1f} kB"


def evaluate_table(result: EvaluateResult) -> Table:
    n = result.targets[0].metrics.n if result.targets else 0
    table = Table(
        title=f"Accuracy on {escape(result.data['source'])} ({n:,} images, "
        f"{result.num_classes} classes; Δ against {escape(result.reference)})",
        title_justify="left",
    )
    for col in ("target", "precision", "size"):
        table.add_column(col, justify="left" if col != "size" else "right")
    for col in ("top-1 % (95% CI)", "top-5 %", "conf %", "ECE %", "Δ top-1 pt (95% CI)",
                "changed (−/+)", "McNemar p"):  # fmt: skip
        table.add_column(col, justify="right")
    table.add_column("verdict", justify="left")
    for t in result.targets:
        m = t.metrics
        row = [
            escape(t.target), f"{t.backend} {t.precision}", _size(t.file_bytes),
            f"{_pct(m.top1)} ({_pct(m.top1_ci[0], 1)}–{_pct(m.top1_ci[1], 1)})",
            _pct(m.top5), _pct(m.mean_confidence, 1), _pct(m.ece, 1),
        ]  # fmt: skip
        c = result.comparisons.get(t.target)
        if c is None:
            row += ["reference", "", "", ""]
        else:
            row += [
                f"{c.delta * 100:+.2f} ({c.ci_low * 100:+.2f}…{c.ci_high * 100:+.2f})",
                f"{c.changed} (−{c.lost}/+{c.gained})",
                f"{c.p_value:.3g}",
                ("[red]" if c.significant and c.delta < 0 else "") + escape(c.verdict),
            ]
        table.add_row(*row)
    return table


def evaluate_report(result: EvaluateResult, files: dict[str, Path] | None = None) -> list[RenderableType]:
    """The table, the images left out, the files written."""
    out: list[RenderableType] = [evaluate_table(result)]
    if result.skipped:
        out.append(
            f"[yellow]skipped {len(result.skipped)} unreadable image(s) for every target:[/]"
        )
        out += [
            f"  {escape(s['path'])}: {escape(s['error'])}" for s in result.skipped[:MAX_SKIPPED_SHOWN]
        ]
        if len(result.skipped) > MAX_SKIPPED_SHOWN:
            out.append(f"  … {len(result.skipped) - MAX_SKIPPED_SHOWN} more (all in the JSON)")
    for kind, path in (files or {}).items():
        out.append(f"wrote {kind}: {escape(str(path))}")
    return out


def write_json(result: EvaluateResult, path: str | Path) -> Path:
    """The full result as JSON (atomically)."""
    from deploy_ran.fileio import atomic_write_text

    path = check_writable(path)
    atomic_write_text(path, json_text(result.as_dict()))
    return Path(path)


def write_plot(result: EvaluateResult, path: str | Path) -> Path:
    """Accuracy with intervals per target, and confusion matrices for ≤ 50 classes (atomically)."""
    from matplotlib.figure import Figure

    path = check_writable(path)
    confusions = _confusion_targets(result)
    panels = 1 + len(confusions)
    fig = Figure(figsize=(5.5 + 4.2 * len(confusions), max(2.6, 0.5 * len(result.targets) + 1.6)))
    axes = fig.subplots(1, panels, squeeze=False)[0]
    _accuracy_panel(axes[0], result)
    for ax, t in zip(axes[1:], confusions):
        _confusion_panel(fig, ax, t, result.class_names)
    fig.suptitle(
        f"{result.data['source']} — {result.targets[0].metrics.n:,} images", fontsize=10
    )
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    return Path(path)


def _confusion_targets(result: EvaluateResult) -> list[Any]:
    """The reference and the candidate with the largest |Δ top-1| (when the classes fit)."""
    if result.targets[0].metrics.confusion is None:
        return []
    ref = result.target(result.reference)
    if not result.comparisons:
        return [ref]
    worst = max(result.comparisons, key=lambda k: (abs(result.comparisons[k].delta), result.comparisons[k].changed))
    return [ref, result.target(worst)]


def _accuracy_panel(ax: Any, result: EvaluateResult) -> None:
    names = [t.target for t in result.targets]
    y = np.arange(len(names))[::-1]
    top1 = np.asarray([t.metrics.top1 for t in result.targets]) * 100
    lo = np.asarray([t.metrics.top1_ci[0] for t in result.targets]) * 100
    hi = np.asarray([t.metrics.top1_ci[1] for t in result.targets]) * 100
    colors = ["tab:gray" if n == result.reference else "tab:blue" for n in names]
    for c_name, cmp in result.comparisons.items():
        if cmp.significant:
            colors[names.index(c_name)] = "tab:red" if cmp.delta < 0 else "tab:green"
    ax.errorbar(top1, y, xerr=[top1 - lo, hi - top1], fmt="none", ecolor="black", capsize=4, lw=1)
    ax.scatter(top1, y, c=colors, zorder=3, s=36)
    for yi, t, name in zip(y, top1, names):
        cmp = result.comparisons.get(name)
        text = f"{t:.2f} %" + ("" if cmp is None else f"  Δ {cmp.delta * 100:+.2f} pt, p={cmp.p_value:.2g}")
        ax.annotate(text, (t, yi), xytext=(0, 7), textcoords="offset points", ha="center", fontsize=7)
    ax.set_yticks(y, [Path(n).name for n in names], fontsize=8)
    span = max(hi.max() - lo.min(), 1.0)
    ax.set_xlim(max(0.0, lo.min() - 0.15 * span), min(100.0, hi.max() + 0.15 * span))
    ax.set_ylim(-0.7, len(names) - 0.3)
    ax.set_xlabel("top-1 % (95 % Wilson interval)")
    ax.set_title("accuracy (grey: reference; red/green: significant loss/gain)", fontsize=8)
    ax.grid(axis="x", alpha=0.3)


def _confusion_panel(fig: Any, ax: Any, target: Any, class_names: list[str] | None) -> None:
    matrix = np.asarray(target.metrics.confusion, dtype=np.float64)
    rows = matrix.sum(axis=1, keepdims=True)
    shown = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)
    image = ax.imshow(shown, cmap="Blues", vmin=0.0, vmax=1.0)
    k = matrix.shape[0]
    ticks = np.arange(k)
    labels = class_names if class_names and len(class_names) == k else [str(i) for i in ticks]
    size = 7 if k <= 20 else 5
    ax.set_xticks(ticks, labels, rotation=90, fontsize=size)
    ax.set_yticks(ticks, labels, fontsize=size)
    if k <= 15:
        for i in range(k):
            for j in range(k):
                if matrix[i, j]:
                    ax.text(j, i, int(matrix[i, j]), ha="center", va="center", fontsize=6,
                            color="white" if shown[i, j] > 0.5 else "black")  # fmt: skip
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{Path(target.target).name}: top-1 {target.metrics.top1 * 100:.2f} %", fontsize=8)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
