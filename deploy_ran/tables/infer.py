"""``infer``: the one-line summary of a run (local or on Ray).
"""

from __future__ import annotations

from typing import Any

from deploy_ran.tables.cells import esc


def infer_summary(result: Any) -> str:
    """One line: images, speed, and where the time went (loader workers, or Ray workers)."""
    how = (
        f"{result.workers} Ray workers"
        if "ray" in (getattr(result, "runner", None) or {})
        else f"{result.workers} loader workers, backend busy {result.backend_busy:.0%} of the time, "
        f"{result.bound}-bound"
    )
    return (
        f"[green]✓[/] {result.processed} image(s) in {result.seconds:.1f} s "
        f"({result.images_per_s:.1f} img/s, batch {result.batch_size}, {how}); {result.failed} "
        f"unreadable; {result.already_done} already in the output; wrote {esc(result.output)}"
    )
