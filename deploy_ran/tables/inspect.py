"""``inspect`` and ``doctor``: what an ONNX file holds, and what this machine has installed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from rich.console import RenderableType
from rich.table import Table

from deploy_ran.tables.cells import esc, shape_text, titled_table


def doctor_table(env: Mapping[str, Any]) -> Table:
    table = Table(title="deploy-ran doctor", title_justify="left")
    table.add_column("component")
    table.add_column("status", overflow="fold")
    for key, value in env.items():
        table.add_row(esc(key), esc(value if isinstance(value, str) else json.dumps(value)))
    return table


def inspect_report(desc: Any) -> list[RenderableType]:
    """``inspect``: I/O, operators, every Resize, metadata, the static-graph checks."""
    out: list[RenderableType] = [
        f"[bold]{esc(desc.path)}[/]  {desc.size_bytes / 1e6:.1f} MB, IR {desc.ir_version}, opset "
        + ", ".join(f"{esc(d)} {v}" for d, v in desc.opsets.items())
        + f", {desc.parameters / 1e6:.2f} M weights, producer {esc(desc.producer or '-')}"
    ]
    io = titled_table(
        "Inputs and outputs", ("kind", "name", "dtype", "shape"), ("kind", "name", "dtype", "shape")
    )
    for kind, items in (("input", desc.inputs), ("output", desc.outputs)):
        for t in items:
            io.add_row(kind, esc(t.name), esc(t.dtype), shape_text(t.shape))
    ops = titled_table("Operators", ("op", "count"), ("op",))
    for op, count in desc.graph.op_histogram.most_common():
        ops.add_row(esc(op), str(count))
    out += [io, ops]
    if desc.graph.resizes:
        cols = ("name", "mode", "coordinates", "antialias", "output H×W", "size from", "ok")
        rz = titled_table("Resize nodes", cols, cols)
        for r in desc.graph.resizes:
            rz.add_row(
                esc(r.name),
                esc(r.mode),
                esc(r.coordinate_transformation_mode),
                str(r.antialias),
                f"{r.output_hw[0]}×{r.output_hw[1]}" if r.output_hw else "not constant",
                esc(r.source),
                "[green]yes[/]" if r.ok else "[red]no[/]",
            )
        out.append(rz)
    if desc.metadata:
        meta = Table(title="Metadata", title_justify="left")
        meta.add_column("key")
        meta.add_column("value", overflow="fold")
        for k, v in desc.metadata.items():
            meta.add_row(esc(k), esc(v))
        out.append(meta)
    if getattr(desc, "coverage", None) is not None:
        out.append(coverage_table(desc.coverage))
    out += _graph_lines(desc.graph)
    return out


def coverage_table(cov: Any) -> Table:
    """INT8 coverage (exporters.coverage): activation bytes per image by precision, and more."""
    table = titled_table(
        "INT8 coverage (activation bytes a strongly typed engine writes per image; estimate)",
        ("precision", "MiB per image", "share", "tensors"),
        ("precision",),
    )
    for precision, size in cov.bytes_by_precision.items():
        table.add_row(
            precision.upper(),
            f"{size / 2**20:.3f}",
            f"{cov.share(precision):.1%}",
            str(cov.tensors_by_precision.get(precision, 0)),
        )
    table.caption = (
        f"total {cov.total_bytes / 2**20:.3f} MiB; {cov.float_islands} float island(s); "
        f"{cov.unfoldable_qdq} Q/DQ pair(s) TensorRT cannot fold; "
        f"{cov.dq_fed_fraction():.0%} of BatchNorm/MaxPool/Resize inputs from a DequantizeLinear"
    )
    return table


def _graph_lines(graph: Any) -> list[RenderableType]:
    if graph.ok:
        return ["[green]✓[/] static-graph checks pass"]
    return ["[red]✗ static-graph checks:[/]", *(f"  - {esc(p)}" for p in graph.problems)]
