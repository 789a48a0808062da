"""``export``, FP16 conversion and ``build-engine``: what was written, and the check it passed.
"""

from __future__ import annotations

from typing import Any

from rich.console import RenderableType

from deploy_ran.tables.calibrate import quantize_report
from deploy_ran.tables.cells import esc, shape_text, titled_table
from deploy_ran.tables.verify import check_tables


def export_report(result: Any) -> list[RenderableType]:
    """What ``export`` wrote: size, opset, batch, input shape, Resize nodes, parity."""
    batch = "batch" if result.dynamic_batch else result.batch
    batch_txt = "dynamic batch" if result.dynamic_batch else f"static batch {result.batch}"
    out: list[RenderableType] = [
        f"[green]✓[/] wrote [bold]{esc(result.path)}[/] ({result.path.stat().st_size / 1e6:.1f} MB, "
        f"opset {result.opset}, {batch_txt}, input {esc(result.input_name)} "
        f"{shape_text([batch, 3, result.image_size, result.image_size])}) in {result.seconds:.1f} s"
    ]
    resizes = result.graph.resizes
    if resizes:
        sizes = sorted({r.output_hw for r in resizes if r.output_hw})
        out.append(
            f"  {len(resizes)} Resize node(s), all bilinear align_corners with constant output "
            f"sizes {', '.join(f'{h}×{w}' for h, w in sizes)}; shapes static except the batch"
        )
    else:
        out.append("  no Resize nodes; shapes static except the batch")
    return out + check_tables(getattr(result, "check", None), "Parity", result.path)


def fp16_report(result: Any) -> list[RenderableType]:
    """What the FP16 conversion wrote: casts, what stayed FP32, the check against its reference."""
    return [
        f"[green]✓[/] wrote [bold]{esc(result.path)}[/] (FP16, {result.size_bytes / 1e6:.1f} MB, "
        f"{result.casts} cast(s) added) in {result.seconds:.1f} s",
        f"  kept in FP32: op types {esc(', '.join(result.keep_fp32) or '-')} "
        f"({len(result.kept_nodes)} node(s) in this graph); graph I/O stays FP32; "
        f"static-graph checks {'pass' if result.graph.ok else 'FAIL'}",
        *check_tables(getattr(result, "check", None), "FP16", result.path),
    ]


def conversion_report(result: Any) -> list[RenderableType]:
    """The reports of the stages a conversion ran (export, FP16, INT8), in that order."""
    stages = ((result.export, export_report), (result.fp16, fp16_report))
    out = [item for stage, report in stages if stage is not None for item in report(stage)]
    return out + (quantize_report(result.int8) if result.int8 is not None else [])


def engine_report(result: Any) -> list[RenderableType]:
    """What ``build-engine`` wrote, its warnings and (with --layer-info) the layer precisions."""
    out: list[RenderableType] = [
        f"[green]✓[/] wrote [bold]{esc(result.plan)}[/] ({result.plan.stat().st_size / 1e6:.1f} MB, "
        f"{result.precision.upper()}, TensorRT {esc(result.tensorrt_version)}, {esc(result.gpu['name'])}) "
        f"in {result.seconds:.1f} s; metadata in {esc(result.sidecar)}",
        *(f"[yellow]Warning:[/] {esc(w)}" for w in result.warnings),
    ]
    if result.layer_info is not None:
        table = titled_table(
            f"Layer precisions ({esc(result.layer_info)})", ("precision", "layers"), ("precision",)
        )
        for name, count in sorted(result.layer_precisions.items(), key=lambda kv: -kv[1]):
            table.add_row(esc(name), str(count))
        out.append(table)
    return out
