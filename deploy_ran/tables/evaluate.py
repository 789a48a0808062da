"""``evaluate``: the accuracy table, the verdict lines and a Markdown table for a README.

One row per target (top-1 with its 95 % interval, top-5, mean confidence, ECE, file size) and,
for every target but the reference, the paired comparison (Δ top-1 with its interval, images
lost/gained, exact McNemar p); the verdicts in words follow as lines a person can paste.
"""

from __future__ import annotations

import math
from pathlib import Path

from rich.console import RenderableType
from rich.markup import escape
from rich.table import Table

from deploy_ran.evaluate import EvaluateResult

MAX_SKIPPED_SHOWN = 5


def _pct(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value * 100:.{digits}f}"


def _size(value: int | None) -> str:
    if value is None:
        return "-"
    return f"{value / 1e6:.2f} MB" if value >= 1e5 else f"{value / 1e3:.1f} kB"


def _short(target: str) -> str:
    """A file target by its name (the title and the JSON keep the full path)."""
    return Path(target).name if ("/" in target or "\\" in target) else target


def evaluate_table(result: EvaluateResult) -> Table:
    """One row per target; Δ columns against the reference (intervals are 95 %)."""
    n = result.targets[0].metrics.n if result.targets else 0
    table = Table(
        title=f"Accuracy on {escape(result.data['source'])}: {n:,} images, "
        f"{result.num_classes} classes; Δ against {escape(_short(result.reference))}",
        title_justify="left",
    )
    table.add_column("target", justify="left")
    table.add_column("runs as", justify="left")
    for col in ("size", "top-1 % [95% CI]", "top-5 %", "conf %", "ECE %",
                "Δ top-1 pt [95% CI]", "lost/gained", "McNemar p"):  # fmt: skip
        table.add_column(col, justify="right")
    for t in result.targets:
        m = t.metrics
        row = [
            escape(_short(t.target)), f"{t.backend} {t.precision}", _size(t.file_bytes),
            f"{_pct(m.top1)} [{_pct(m.top1_ci[0], 1)}, {_pct(m.top1_ci[1], 1)}]",
            _pct(m.top5), _pct(m.mean_confidence, 1), _pct(m.ece, 1),
        ]  # fmt: skip
        c = result.comparisons.get(t.target)
        if c is None:
            row += ["reference", "", ""]
        else:
            colour = "red" if c.significant and c.delta < 0 else "green" if c.significant else ""
            delta = f"{c.delta * 100:+.2f} [{c.ci_low * 100:+.2f}, {c.ci_high * 100:+.2f}]"
            row += [
                f"[{colour}]{delta}[/]" if colour else delta,
                f"{c.lost}/{c.gained}",
                f"{c.p_value:.3g}",
            ]
        table.add_row(*row)
    return table


def weakest_classes(result: EvaluateResult, count: int = 3) -> list[str]:
    """Per target, its ``count`` least accurate classes (the JSON has every class)."""
    lines = []
    for t in result.targets:
        ranked = sorted(
            (c for c in t.metrics.per_class if c["accuracy"] is not None),
            key=lambda c: (c["accuracy"], -c["n"]),
        )[:count]
        if ranked and ranked[0]["accuracy"] < 1.0:
            shown = ", ".join(
                f"{escape(c['name'])} {c['accuracy'] * 100:.1f} % ({c['correct']}/{c['n']})"
                for c in ranked
            )
            lines.append(f"[dim]{escape(_short(t.target))}: weakest classes {shown}[/]")
    return lines


def verdict_lines(result: EvaluateResult) -> list[str]:
    """``int8.onnx vs model.onnx: loses 1.80 pt, p=0.003 (12 predictions changed: 10 lost, 2 gained)``."""
    ref = _short(result.reference)
    return [
        f"{escape(_short(name))} vs {escape(ref)}: {'[bold]' if c.significant else ''}"
        f"{escape(c.verdict)}{'[/]' if c.significant else ''} ({c.changed} prediction(s) "
        f"changed: {c.lost} right→wrong, {c.gained} wrong→right)"
        for name, c in result.comparisons.items()
    ]


def markdown_table(result: EvaluateResult, names: dict[str, str] | None = None) -> str:
    """The table as Markdown for a README (``names`` relabels targets, e.g. ``{path: "INT8"}``):
    top-1 with its interval, and Δ against the reference with its interval, McNemar p, verdict."""
    names = names or {}
    n = result.targets[0].metrics.n if result.targets else 0
    lines = [
        f"| target | runs as | size | top-1 % [95% CI] | Δ top-1 pt [95% CI] | lost/gained | "
        f"McNemar p | verdict ({n:,} images) |",
        "|---|---|--:|--:|--:|--:|--:|---|",
    ]
    for t in result.targets:
        m, c = t.metrics, result.comparisons.get(t.target)
        top1 = f"{_pct(m.top1)} [{_pct(m.top1_ci[0], 1)}, {_pct(m.top1_ci[1], 1)}]"
        if c is None:
            rest = "reference | | | "
        else:
            rest = (
                f"{c.delta * 100:+.2f} [{c.ci_low * 100:+.2f}, {c.ci_high * 100:+.2f}] | "
                f"{c.lost}/{c.gained} | {c.p_value:.3g} | {c.verdict}"
            )
        name = names.get(t.target, _short(t.target))
        lines.append(
            f"| {name} | {t.backend} {t.precision} | {_size(t.file_bytes)} | {top1} | {rest} |"
        )
    return "\n".join(lines) + "\n"


def evaluate_report(
    result: EvaluateResult, files: dict[str, Path] | None = None
) -> list[RenderableType]:
    """The table, the images left out, the files written."""
    out: list[RenderableType] = [evaluate_table(result), *verdict_lines(result)]
    out += weakest_classes(result)
    out += [
        f"[red]{escape(_short(t.target))}: {t.metrics.nonfinite} image(s) gave NaN/inf logits "
        "(counted wrong)[/]"
        for t in result.targets
        if t.metrics.nonfinite
    ]
    if result.skipped:
        out.append(
            f"[yellow]skipped {len(result.skipped)} unreadable image(s) for every target:[/]"
        )
        out += [
            f"  {escape(s['path'])}: {escape(s['error'])}"
            for s in result.skipped[:MAX_SKIPPED_SHOWN]
        ]
        if len(result.skipped) > MAX_SKIPPED_SHOWN:
            out.append(f"  … {len(result.skipped) - MAX_SKIPPED_SHOWN} more (all in the JSON)")
    for kind, path in (files or {}).items():
        out.append(f"wrote {kind}: {escape(str(path))}")
    return out
