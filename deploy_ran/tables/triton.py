"""``triton-repo``: what was written and how to serve and check it.
"""

from __future__ import annotations

from typing import Any

from rich.markup import escape


def triton_summary(result: Any) -> list[str]:
    """What ``triton-repo`` wrote, its notes and how to serve and check it."""
    lines = [
        f"[green]✓[/] wrote [bold]{escape(str(result.repository / m))}[/]" for m in result.models
    ]
    lines += [f"[yellow]Note:[/] {escape(note)}" for note in result.notes]
    lines.append(
        f"Serve with tritonserver --model-repository={escape(str(result.repository.resolve()))} "
        f"(README: Triton); check it: python cli.py verify MODEL "
        f"triton://HOST:8000/{escape(result.models[0])}"
    )
    return lines
