"""``models``: the model zoo as a table, and as JSON rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.console import RenderableType
from rich.table import Table

from deploy_ran.tables.cells import esc


def _count(value: float | None, unit: float, digits: int = 2) -> str:
    return "-" if value is None else f"{value / unit:.{digits}f}"


def model_rows(specs: Iterable[Any]) -> list[dict[str, Any]]:
    """``models --json``: one dict per model spec."""
    return [
        {
            "name": s.name,
            "family": s.family,
            "input": list(s.input_shape),
            "num_classes": s.num_classes,
            "params": s.params,
            "macs": s.macs,
            "paper_params_m": s.paper_params,
            "paper_macs_g": s.paper_macs,
            "outputs": list(s.outputs),
            "reference": s.reference,
            "reference_url": s.reference_url,
            "description": s.description,
        }
        for s in specs
    ]


def models_report(specs: Iterable[Any]) -> list[RenderableType]:
    """The model zoo: input, parameters and multiply-adds (ours and the paper's), reference."""
    table = Table(title="deploy-ran model zoo", title_justify="left")
    table.add_column("name", style="bold cyan", no_wrap=True)
    table.add_column("family", no_wrap=True)
    table.add_column("input", justify="right", no_wrap=True)
    for col in ("params (M)", "paper (M)", "MACs (G)", "paper (G)"):
        table.add_column(col, justify="right")
    table.add_column("reference")
    for s in specs:
        table.add_row(
            esc(s.name),
            esc(s.family),
            f"{s.image_size}²·{s.num_classes}",
            _count(s.params, 1e6),
            "-" if s.paper_params is None else f"{s.paper_params:.1f}",
            _count(s.macs, 1e9, 3 if s.macs < 1e9 else 2),
            "-" if s.paper_macs is None else f"{s.paper_macs:.1f}",
            esc(s.reference),
        )
    note = (
        "input = image size² · classes; MACs = multiply-adds of convolutions and the classifier "
        "at the default size; `models --json` adds descriptions and links."
    )
    return [table, note]
