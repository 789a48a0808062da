"""How one value shows in a table cell or a report line, for every command's tables.

Rich reads ``[...]`` as markup, so every string that comes from a user, a file or a library
message goes through :func:`esc` (a path ``a[1].onnx`` or a shape ``[batch, 3, H, W]`` must show
as written); only the tables' own ``[green]``-style tags are markup.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from rich.markup import escape
from rich.table import Table


def esc(value: Any) -> str:
    """``escape(str(value))``: user/file-derived text, shown as written."""
    return escape(str(value))


def shape_text(shape: Iterable[Any]) -> str:
    """A shape as ``[batch, 3, 224, 224]``, escaped (rich would read the brackets as markup)."""
    return escape("[" + ", ".join(map(str, shape)) + "]")


def titled_table(title: str, columns: Sequence[str], left: Sequence[str] = ()) -> Table:
    """A left-titled table; ``left`` columns are left-aligned, the others right-aligned."""
    table = Table(title=title, title_justify="left")
    for col in columns:
        table.add_column(col, justify="left" if col in left else "right")
    return table


def num(value: float | None, fmt: str = ".3g") -> str:
    """A metric: ``-`` when not measured, ``∞`` / ``-∞`` for infinities, else ``fmt``."""
    if value is None:
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return "∞" if value > 0 else "-∞"
    return format(value, fmt)


def pct(value: float | None) -> str:
    """A fraction as a percentage with two decimals, ``-`` when not measured."""
    return "-" if value is None else f"{value:.2%}"
