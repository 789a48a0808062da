"""The main job end to end on a built-in default: what ``python cli.py demo`` runs.

Each step calls the same library function its own CLI command uses, so the demo is a tour of the
toolkit, not a separate code path.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console


def run_demo(
    model: str,
    workdir: Path,
    *,
    image_size: int | None = None,
    runs: int = 10,
    console: Console | None = None,
) -> dict:
    """Export ``model`` to ONNX, check parity, and benchmark ONNX Runtime against eager PyTorch."""
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

    console.rule("[bold]2. latency at batch 1 (CPU): eager PyTorch vs ONNX Runtime")
    from deploy_ran.bench import run_benchmark
    from deploy_ran.tables import bench_table, environment_table

    with console.status(f"timing {runs} runs per backend…") as status:
        bench = run_benchmark(
            model,
            backends=["torch", "ort"],
            artifacts=[onnx_path],
            batch_sizes=[1],
            warmup=1.0,
            iterations=runs,
            image_size=result.image_size,
            output=workdir,
            progress=lambda m: status.update(f"timing: {m}…"),
        )
    console.print(bench_table(bench))
    console.print(environment_table(bench))
    for kind, path in bench.files.items():
        console.print(f"wrote {kind.upper()}: {path}")
    eager, ort_row = bench.row("torch", "fp32", 1), bench.row("ort", "fp32", 1)
    eager_ms = eager.latency.median if eager and eager.latency else float("nan")
    ort_ms = ort_row.latency.median if ort_row and ort_row.latency else float("nan")
    return {
        "onnx": str(onnx_path),
        "export_seconds": result.seconds,
        "rel_l2": worst.rel_l2,
        "eager_ms": eager_ms,
        "ort_ms": ort_ms,
        "speedup": eager_ms / ort_ms,
        "bench": bench.files,
    }
