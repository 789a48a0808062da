"""``visualize``: the attention maps drawn, their shapes and value ranges.
"""

from __future__ import annotations

from typing import Any

from rich.console import RenderableType

from deploy_ran.tables.cells import esc, shape_text, titled_table


def attention_report(result: Any, output: Any) -> list[RenderableType]:
    """The attention maps ``visualize`` drew: shape per image and value range per map."""
    out: list[RenderableType] = [f"[yellow]Note:[/] {esc(n)}" for n in result.notes]
    table = titled_table(
        f"Attention maps ({esc(result.backend)}, {result.image_size}×{result.image_size} input)",
        ("output", "shape per image", "min", "max"),
        ("output",),
    )
    for index, amap in enumerate(result.items[0].maps):
        values = [item.maps[index].values for item in result.items]
        table.add_row(
            esc(amap.name),
            shape_text(amap.values.shape),
            f"{min(float(v.min()) for v in values):.3g}",
            f"{max(float(v.max()) for v in values):.3g}",
        )
    return out + [table, f"[green]✓[/] wrote [bold]{esc(output)}[/] ({len(result.items)} image(s))"]
