"""The main job end to end on a built-in default: what ``python cli.py demo`` runs.

Each step calls the same library function its own CLI command uses, so the demo is a tour of the
toolkit, not a separate code path.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table


def _median_latency_ms(fn, runs: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def run_demo(
    model: str,
    workdir: Path,
    *,
    image_size: int | None = None,
    runs: int = 10,
    console: Console | None = None,
) -> dict:
    """Export ``model`` to ONNX, check parity, and time ONNX Runtime against eager PyTorch (CPU)."""
    import onnxruntime as ort

    from deploy_ran.models import create_model
    from exporters.onnx import export_onnx

    console = console or Console()
    onnx_path = workdir / f"{model}.onnx"
    console.rule(f"[bold]1. export {model} → {onnx_path}")
    with console.status("exporting…") as status:
        result = export_onnx(
            model, onnx_path, image_size=image_size, progress=lambda m: status.update(m + "…")
        )
    worst = max(result.parity, key=lambda c: c.rel_l2)
    console.print(
        f"[green]✓[/] exported in {result.seconds:.1f} s; ONNX Runtime vs eager PyTorch: "
        f"worst relative L2 {worst.rel_l2:.2e} (limit 1e-4), max abs {worst.max_abs:.2e}"
    )

    console.rule("[bold]2. latency at batch 1 (CPU, median)")
    size = result.image_size
    eager = create_model(model, image_size=size)
    x = torch.randn(1, 3, size, size)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    feed = {result.input_name: x.numpy()}

    def run_eager() -> None:
        with torch.inference_mode():
            eager(x)

    with console.status(f"timing {runs} runs per backend…"):
        eager_ms = _median_latency_ms(run_eager, runs)
        ort_ms = _median_latency_ms(lambda: session.run(None, feed), runs)
    table = Table(title=f"{model} at {size}×{size}, batch 1, {torch.get_num_threads()} threads")
    table.add_column("backend")
    table.add_column("median ms", justify="right")
    table.add_column("speedup", justify="right")
    table.add_row("eager PyTorch FP32", f"{eager_ms:.1f}", "1.00×")
    table.add_row("ONNX Runtime FP32 (CPU)", f"{ort_ms:.1f}", f"{eager_ms / ort_ms:.2f}×")
    console.print(table)
    return {
        "onnx": str(onnx_path),
        "export_seconds": result.seconds,
        "rel_l2": worst.rel_l2,
        "eager_ms": eager_ms,
        "ort_ms": ort_ms,
        "speedup": eager_ms / ort_ms,
    }
