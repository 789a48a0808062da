"""Two questions about a graph that every floor asks: its real inputs, and the batch it runs.

``graph.input`` also lists initializers in graphs written by older exporters (IR < 4), so "the
inputs a caller must feed" is ``graph.input`` minus the initializers; six modules used to write
that set difference themselves. A graph exported with a static batch runs only that batch, so "the
batch to run" is the static one when there is one, else the one asked for. Both live here, on the
ground floor, so exporters, calibration and runners import the same answer.
"""

from __future__ import annotations

from typing import Any


def graph_inputs(graph: Any) -> list[Any]:
    """The ``ValueInfoProto`` inputs of ``graph`` (a ``GraphProto`` or a ``ModelProto``) that a
    caller feeds: declared inputs that are not initializers, in declaration order."""
    graph = getattr(graph, "graph", graph)
    initializers = {i.name for i in graph.initializer}
    return [i for i in graph.input if i.name not in initializers]


def batch_to_run(static_batch: int | None, requested: int | None) -> int | None:
    """The batch size to run: a graph's ``static_batch`` when it has one (it runs no other),
    else ``requested`` (``None``: the caller's own default)."""
    return static_batch or requested
