"""``calibrate``: warnings, the cache, what was quantized, INT8 vs FP32 and the sensitivity tables.
"""

from __future__ import annotations

from typing import Any

from rich.console import RenderableType

from deploy_ran.tables.cells import esc, pct, titled_table
from deploy_ran.tables.inspect import coverage_table


def quantize_report(result: Any) -> list[RenderableType]:
    """The calibrate report: warnings, skipped files, cache, what was quantized, INT8 vs FP32."""
    from calibration.data import BUILTIN_NOTE, SYNTHETIC_NOTE

    out: list[RenderableType] = []
    for warning in result.warnings:
        if warning != BUILTIN_NOTE:
            style = "bold yellow" if warning == SYNTHETIC_NOTE else "yellow"
            out.append(f"[{style}]Warning:[/] {esc(warning)}")
    skipped = result.data.get("skipped") or []
    if skipped:
        out.append(f"[yellow]Skipped {len(skipped)} unreadable file(s):[/]")
        out += [f"  - {esc(i['file'])}: {esc(i['reason'])}" for i in skipped[:10]]
        if len(skipped) > 10:
            out.append(f"  … and {len(skipped) - 10} more (see --json)")
    out.append(f"[cyan]Cache:[/] {esc(result.ranges.cache_note)}")
    kept: dict[str, int] = {}
    for _node, op, why in result.plan.kept_float:
        label = f"{op} (excluded)" if why == "excluded" else op
        kept[label] = kept.get(label, 0) + 1
    groups = result.plan.excluded_groups
    timing = ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items() if k != "total")
    out += [
        f"[green]✓[/] wrote [bold]{esc(result.path)}[/] ({result.size_bytes / 1e6:.1f} MB, from "
        f"{result.source_size_bytes / 1e6:.1f} MB) in {result.seconds['total']:.1f} s: "
        f"{esc(result.method.label())} on {result.ranges.num_images} image(s), "
        f"{result.qdq['int8_weights']} INT8 weight tensors (per-channel), "
        f"{result.qdq['quantize']} activation Q/DQ pairs (per-tensor, zero point 0), "
        f"placement {esc(result.placement)}, float part {result.float_precision.upper()}",
        "  kept in higher precision: "
        + esc(", ".join(f"{n}× {op}" for op, n in kept.items()) or "nothing")
        + (f"; excluded groups: {esc(', '.join(groups))}" if groups else ""),
        f"  time: {timing}",
    ]
    cols = ("output", "relative L2", "cosine", "max abs", "top-1 agreement")
    table = titled_table(
        f"INT8 vs FP32 (ONNX Runtime CPU, {result.eval_images} of the calibration images)",
        cols,
        ("output",),
    )
    for row in result.agreement:
        table.add_row(
            esc(row.output),
            f"{row.rel_l2:.3e}",
            f"{row.cosine:.5f}",
            f"{row.max_abs:.3e}",
            pct(row.top1),
        )
    out.append(table)
    if result.coverage is not None:
        out.append(coverage_table(result.coverage))
    if result.sensitivity is not None:
        out += _sensitivity_report(result.sensitivity, result.sensitivity_path)
    return out


def _sensitivity_report(report: Any, path: Any) -> list[RenderableType]:
    sens = titled_table(
        f"Sensitivity: each group quantized alone ({report.eval_images} images, "
        f"{esc(report.method)}); all INT8: relative L2 {report.all_int8.rel_l2:.3e}, top-1 "
        + pct(report.all_int8.top1),
        ("group", "INT8 convs", "activations", "relative L2", "top-1", "rank"),
        ("group",),
    )
    for g in report.groups:
        sens.add_row(
            esc(g.group),
            str(g.weight_nodes),
            str(g.activations),
            f"{g.rel_l2:.3e}",
            pct(g.top1),
            str(g.rank),
        )
    out: list[RenderableType] = [sens]
    if report.target_agreement is not None:
        steps = titled_table(
            f"--exclude auto: target top-1 agreement {report.target_agreement:.2%}",
            ("kept in FP32", "relative L2", "top-1"),
            ("kept in FP32",),
        )
        for step in report.steps:
            steps.add_row(
                esc(", ".join(step.excluded)) or "(nothing: all INT8)",
                f"{step.rel_l2:.3e}",
                pct(step.top1),
            )
        verdict = "[green]met[/]" if report.met_target else "[red]not met[/]"
        out += [
            steps,
            f"  target {verdict}; kept in FP32: {esc(', '.join(report.excluded) or 'nothing')}",
        ]
    if path:
        out.append(f"  sensitivity report: {esc(path)}")
    return out
