"""What ``evaluate`` writes: the JSON and a PNG (the terminal table is in
:mod:`deploy_ran.tables.evaluate`).

The PNG draws each target's top-1 with its interval on one axis (so overlapping intervals are seen
as such) and, for at most 50 classes, the confusion matrix of the reference and of the candidate
furthest from it. Both files are written atomically, and checked before any work.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from deploy_ran.evaluate.run import EvaluateResult
from deploy_ran.fileio import atomic_path, check_writable, json_text


def check_outputs(json_path: Any, plot: Any, inputs: dict[str, Any]) -> None:
    """Before any work: the outputs are writable, end as they should, and replace no input."""
    from deploy_ran.errors import DeployRanError
    from deploy_ran.fileio import refuse_output_over_inputs

    refuse_output_over_inputs({"output": json_path, "plot": plot}, inputs)
    if plot is not None and Path(plot).suffix.lower() != ".png":
        raise DeployRanError(
            f"The plot {plot} must be a .png file.", hint="Name it e.g. accuracy.png.", param="plot"
        )
    for path in (json_path, plot):
        if path is not None:
            check_writable(path)


def write_outputs(result: EvaluateResult, json_path: Any, plot: Any) -> dict[str, Path]:
    """Write the JSON and the PNG that were asked for; returns {kind: path}."""
    files: dict[str, Path] = {}
    if json_path is not None:
        files["JSON"] = write_json(result, json_path)
    if plot is not None:
        files["PNG"] = write_plot(result, plot)
    return files


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
    fig.suptitle(f"{result.data['source']} — {result.targets[0].metrics.n:,} images", fontsize=10)
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
    worst = max(
        result.comparisons,
        key=lambda k: (abs(result.comparisons[k].delta), result.comparisons[k].changed),
    )
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
    ax.errorbar(
        top1,
        y,
        xerr=[np.maximum(top1 - lo, 0.0), np.maximum(hi - top1, 0.0)],
        fmt="none",
        ecolor="black",
        capsize=4,
        lw=1,
    )
    ax.scatter(top1, y, c=colors, zorder=3, s=36)
    for yi, t, name in zip(y, top1, names):
        cmp = result.comparisons.get(name)
        text = f"{t:.2f} %" + (
            "" if cmp is None else f"  Δ {cmp.delta * 100:+.2f} pt, p={cmp.p_value:.2g}"
        )
        ax.annotate(
            text, (t, yi), xytext=(0, 7), textcoords="offset points", ha="center", fontsize=7
        )
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
