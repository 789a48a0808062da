"""The main job end to end on a built-in default: what ``python cli.py demo`` runs.

export → FP16 → calibrate INT8 → verify each against eager PyTorch → bench → TensorRT engine.
Each step calls the same library function its own CLI command uses, so the demo is a tour of the
toolkit, not a separate code path. Everything runs on the CPU with ONNX Runtime; the TensorRT step
builds the engine where TensorRT and a GPU exist and otherwise prints the command that finishes
the job on a GPU host. Without a checkpoint the weights are the seeded random initialisation and
the calibration data is the built-in sample: numbers show the pipeline works, not accuracy.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager as ContextManager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table

DEMO_CALIBRATION_IMAGES = 64  # a demo; real deployments calibrate on 500+ of their own images
DEMO_VERIFY_IMAGES = 32


@dataclass
class DemoResult:
    """Artifacts and numbers of one demo run (also written as ``demo_summary.json``)."""

    model: str
    artifacts: dict[str, str] = field(default_factory=dict)
    parity: dict[str, dict[str, Any]] = field(default_factory=dict)
    bench: dict[str, Any] = field(default_factory=dict)
    engine: str | None = None  # the plan; None where no engine was built (no TensorRT here)


def _verify_data(path: Path, onnx_path: Path, count: int) -> Path:
    """Held-out crops of the built-in sample photos (another seed than calibration), as .npz."""
    from calibration.data import plan_calibration_data
    from deploy_ran.artifacts import read_artifact_info
    from deploy_ran.fileio import atomic_path

    info = read_artifact_info(onnx_path)
    plan = plan_calibration_data(
        None,
        input_shape=(3, info.image_size, info.image_size),
        preprocessing=info.preprocessing,
        num_images=count,
        seed=1,
    )
    images = plan.load().images
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, x=images)
    return path


def _status_step(console: Console) -> Callable[[str], ContextManager[Callable[[str], None]]]:
    """``step(title)`` as a rich status line on ``console``."""

    @contextlib.contextmanager
    def step(title: str) -> Iterator[Callable[[str], None]]:
        with console.status(f"{title}…") as status:
            yield lambda message: status.update(f"{title}: {message}…")

    return step


def run_demo(
    model: str,
    workdir: Path,
    *,
    image_size: int | None = None,
    runs: int = 10,
    calibration_images: int = DEMO_CALIBRATION_IMAGES,
    console: Console | None = None,
    step: Callable[[str], ContextManager[Callable[[str], None]]] | None = None,
) -> DemoResult:
    """Run the whole pipeline for ``model`` into ``workdir``; see the module docstring.

    ``step(title)`` is entered around each long step and yields a ``say(message)`` for its
    progress (the CLI shows it on stderr); default: a status line on ``console``.
    """
    from calibration.data import BUILTIN_NOTE
    from deploy_ran.bench import BenchSettings, run_benchmark
    from deploy_ran.compare.runner_checks import RunnerChecks
    from deploy_ran.convert import CalibrationConfig, ExportConfig, convert
    from deploy_ran.fileio import atomic_write_text, json_text
    from deploy_ran.tables import bench_table, environment_table
    from deploy_ran.trt_compat import TensorRTUnavailable
    from deploy_ran.verify import verify
    from exporters.tensorrt import build_engine

    console = console or Console()
    step = step or _status_step(console)
    summary = DemoResult(model)
    fp32_path = workdir / f"{model}.onnx"

    checks = RunnerChecks()
    console.rule(f"[bold]1/6 export {model} → {fp32_path}")
    with step("exporting") as say:
        exported = convert(
            model,
            "fp32",
            output=fp32_path,
            export=ExportConfig(image_size=image_size),
            checks=checks,
            progress=say,
        ).export
    assert exported is not None and exported.check is not None
    console.print(
        f"[green]✓[/] FP32 ONNX in {exported.seconds:.1f} s, {len(exported.graph.resizes)} static "
        f"bilinear Resize nodes; ONNX Runtime vs eager PyTorch: relative L2 "
        f"{exported.check.max_rel_l2():.2e} (limit {exported.check.criteria['max_rel_l2']:g})"
    )

    console.rule("[bold]2/6 FP16 ONNX")
    with step("converting to FP16") as say:
        fp16 = convert(
            fp32_path, "fp16", checks=checks, progress=say
        ).fp16
    assert fp16 is not None
    console.print(f"[green]✓[/] {fp16.path} ({fp16.size_bytes / 1e6:.1f} MB, FP32 I/O)")

    console.rule(f"[bold]3/6 INT8 Q/DQ ONNX ({calibration_images} built-in calibration images)")
    console.print(f"[yellow]{escape(BUILTIN_NOTE)}[/]")
    with step("calibrating") as say:
        int8 = convert(
            fp32_path,
            "int8",
            calibration=CalibrationConfig(
                num_images=calibration_images, eval_images=min(16, calibration_images)
            ),
            checks=checks,
            calibration_progress=lambda phase, done, total: say(f"{phase}: {done}/{total}"),
        ).int8
    assert int8 is not None
    console.print(
        f"[green]✓[/] {int8.path} ({int8.size_bytes / 1e6:.1f} MB, {int8.method.label()}, "
        f"{int8.qdq['quantize']} activation Q/DQ pairs) in {int8.seconds['total']:.0f} s; "
        f"{escape(int8.ranges.cache_note)}"
    )
    summary.artifacts = {"fp32": str(fp32_path), "fp16": str(fp16.path), "int8": str(int8.path)}

    console.rule("[bold]4/6 verify each file against eager PyTorch FP32 (held-out sample crops)")
    data = _verify_data(workdir / "verify_inputs.npz", fp32_path, DEMO_VERIFY_IMAGES)
    table = Table(
        title=f"{model}: ONNX Runtime (CPU) vs eager PyTorch FP32, {DEMO_VERIFY_IMAGES} images"
    )
    for col in (
        "file",
        "precision",
        "relative L2",
        "cosine",
        "top-1 agreement",
        "criteria",
        "result",
    ):
        table.add_column(
            col, justify="left" if col in ("file", "precision", "criteria", "result") else "right"
        )
    for precision, path in summary.artifacts.items():
        with step(f"verifying {path}"):
            result = verify(model, path, data=str(data), image_size=exported.image_size)
        first = result.outputs[0].agreement
        summary.parity[precision] = {"passed": result.passed, **first.as_dict()}
        # the criteria that applied to this model's outputs (per-kind ones only where that kind is)
        applied = dict.fromkeys(f"{c.criterion.replace('_', ' ')} {c.limit:g}" for c in result.checks)
        criteria = ", ".join(applied)
        table.add_row(
            Path(path).name,
            precision,
            f"{first.rel_l2:.2e}",
            f"{first.cosine:.5f}",
            "-" if first.top1 is None else f"{first.top1:.1%}",
            criteria,
            "[green]pass[/]" if result.passed else "[red]fail[/]",
        )
    console.print(table)

    console.rule("[bold]5/6 bench at batch 1: eager PyTorch vs ONNX Runtime FP32/FP16/INT8 (CPU)")
    with step(f"timing {runs} runs per backend") as say:
        bench = run_benchmark(
            BenchSettings(
                model,
                backends=("torch", "ort"),
                artifacts=(fp32_path, fp16.path, int8.path),
                batch_sizes=(1,),
                warmup=1.0,
                iterations=runs,
                image_size=exported.image_size,
                output=workdir,
            ),
            progress=say,
        )
    console.print(bench_table(bench))
    console.print(environment_table(bench))
    summary.bench = {"files": bench.files, "rows": [r.as_dict() for r in bench.rows]}
    for kind, path in bench.files.items():
        console.print(f"wrote {kind.upper()}: {path}")

    console.rule("[bold]6/6 TensorRT engine (INT8)")
    plan = workdir / f"{model}.int8.plan"
    try:
        built = build_engine(int8.path, plan)
        summary.engine = str(built.plan)
        console.print(
            f"[green]✓[/] {built.plan} (TensorRT {built.tensorrt_version}, {built.gpu['name']})"
        )
    except TensorRTUnavailable as exc:
        console.print(f"[yellow]skipped:[/] {escape(exc.message)}")
        console.print(
            "Finish on a GPU host with TensorRT:\n"
            f"  python cli.py build-engine {int8.path} --output {plan}\n"
            f"  python cli.py verify {model} {plan} --device cuda\n"
            f"  python cli.py bench {model} --backends torch,ort,trt --artifacts {plan} --device cuda",
            highlight=False,
            soft_wrap=True,
        )
    summary_path = workdir / "demo_summary.json"
    atomic_write_text(summary_path, json_text(asdict(summary)))
    console.print(f"summary: {summary_path}")
    return summary
