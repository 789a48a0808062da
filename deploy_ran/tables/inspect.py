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
    out += _graph_lines(desc.graph)
    return out


def _graph_lines(graph: Any) -> list[RenderableType]:
    if graph.ok:
        return ["[green]✓[/] static-graph checks pass"]
    return ["[red]✗ static-graph checks:[/]", *(f"  - {esc(p)}" for p in graph.problems)]
