"""The benchmark itself: which runners to build from the settings, in what order to time them,
and how their timings become rows.

- **Rows**: *ran*, *failed* (with the error) or *skipped* (backend not installed, static batch of
  another size, no engine given). One backend failing never stops the others.
- Every runner is built once, up front. Rows are then measured batch size by batch size, every
  backend in turn, so that backends compared with each other were measured close together in
  time. With ``interleave`` the backends of one batch size take turns run by run, so that a shared
  machine's changing load hits them alike.
- **Speedups**, both per row: ``speedup_vs_torch_fp32`` = median latency of eager PyTorch FP32
  at the same batch size / the row's median; ``speedup_vs_best_torch`` = median latency of the
  fastest PyTorch row (any precision, layout or mode) at the same batch size in this run / the
  row's median. The first is the classic "× faster than PyTorch"; the second is what a user who
  already runs PyTorch at its best would gain.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from deploy_ran.bench.machine import plan_threads
from deploy_ran.bench.report import output_paths, save_result
from deploy_ran.bench.result import BenchResult, BenchRow, is_torch_fp32_eager
from deploy_ran.bench.settings import BenchSettings
from deploy_ran.bench.targets import BenchTargets, resolve_bench_targets
from deploy_ran.bench.timing import (
    LatencyStats,
    run_timer,
    time_in_turns,
    time_runner,
    warm_up,
)
from deploy_ran.device import Device, DeviceError, describes_cuda
from deploy_ran.environment import collect_environment
from deploy_ran.errors import DeployRanError
from deploy_ran.fileio import temp_dir
from deploy_ran.runners import BackendUnavailableError, BaseRunner, honoured_options, load_runner
from deploy_ran.target import Target

Say = Callable[[str], None]


@dataclass
class _Config:
    """A backend configuration to build (a runner) and measure at every batch size."""

    backend: str
    target: str
    precision: str  # expected; the runner's own precision replaces it once built
    artifact: str | None
    kwargs: dict[str, Any] = field(default_factory=dict)
    runner: BaseRunner | None = None
    error: tuple[str, str] | None = None  # (status, reason) when it could not be built
    suffix: str = ""  # tells apart artifacts that share a label
    suffix_hint: str = ""  # what tells this row apart before its runner exists (e.g. " compile")

    @property
    def label(self) -> str:
        if self.runner is not None:
            return self.runner.label + self.suffix
        precision = "" if self.precision == "-" else f" {self.precision}"
        return f"{self.backend}{precision}{self.suffix_hint}{self.suffix}"


def run_benchmark(
    settings: BenchSettings,
    progress: Say | None = None,
    row_done: Callable[[BenchRow], None] | None = None,
) -> BenchResult:
    """Benchmark ``settings.model`` on each backend (see :mod:`deploy_ran.bench` for the method).

    Saves JSON/CSV (+ PNG) when ``settings.output`` is set (see
    :func:`deploy_ran.bench.report.save_result`). ``progress(message)`` is told what is being
    done; ``row_done(row)`` gets each row as soon as it is measured (a long run shows results
    as they come, not only at the end).
    """

    say = progress or (lambda _m: None)
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    plan = resolve_bench_targets(
        settings.model, settings.artifacts, settings.backends, settings.image_size
    )
    # From here on the model is a name (a file target carries its own), for rows and reports.
    settings = replace(settings, model=plan.model, image_size=plan.image_size)
    size, kinds, metas, backends = plan.image_size, plan.kinds, plan.metas, plan.backends
    env = collect_environment()
    if settings.output is not None:
        output_paths(
            settings.output, "bench_check"
        )  # fail on an unwritable output before measuring
    machine = plan_threads(settings.threads, settings.on_gpu)
    threads = machine.threads
    notes: list[str] = []
    if machine.threads_from == "idle cores at start" and threads < machine.cores:
        notes.append(
            f"{threads} thread(s) per backend: the idle cores of {machine.cores} at the start "
            f"(1-minute load {machine.load_before[0] if machine.load_before else '?'})"
        )

    with contextlib.ExitStack() as stack:
        configs: list[_Config] = []
        if "torch" in backends:
            configs += _torch_configs(settings, size)
        if "ort" in backends:
            configs += _ort_configs(settings, plan, stack, notes, say)
        if "trt" in backends:
            configs += _trt_configs(kinds, metas)
        configs += [  # served models: the server runs them as its config says
            _Config(kind, t.text, "-", t.text) for t, kind in kinds.items() if t.kind == "served"
        ]
        _load_runners(configs, settings, threads, stack, say)
        rows: list[BenchRow] = []
        for batch in settings.batch_sizes:
            if settings.interleave:
                measured = _measure_interleaved(configs, batch, settings, say)
            else:
                measured = (_measure_row(cfg, batch, settings, say) for cfg in configs)
            for row in measured:
                rows.append(row)
                if row_done is not None:
                    row_done(row)
        accuracy = _measure_accuracy(configs, settings, say) if settings.data else None
    add_speedups(rows)
    add_accuracy(rows, accuracy)
    machine.finish(_threads_used(rows), settings.on_gpu)
    loader = _measure_loader(settings.model, size, rows, say) if settings.loader else None
    result = BenchResult(
        model=settings.model,
        image_size=size,
        device=settings.device or "cpu",
        batch_sizes=list(settings.batch_sizes),
        copies_included=settings.copies_included,
        cuda_graphs=settings.cuda_graphs,
        interleaved=settings.interleave,
        warmup_s=settings.warmup,
        duration_s=None if settings.iterations is not None else settings.duration,
        iterations=settings.iterations,
        threads=threads,
        environment={**env, "bench_threads": str(threads)},
        started_at=started_at,
        rows=rows,
        notes=notes,
        loader=loader,
        machine=machine.as_dict(),
        accuracy=accuracy,
        warnings=machine.warnings,
    )
    if settings.output is not None:
        save_result(result, settings.output, plot=settings.plot)
    return result


# ------------------------------------------------------------------------- what to measure


def _torch_configs(settings: BenchSettings, size: int) -> list[_Config]:
    """One PyTorch row per precision × layout × mode (eager first, so the baseline is measured
    first); layouts that resolve to the same one for a precision are one row."""
    from deploy_ran.runners.torch_runner import default_channels_last

    device_type = Device.parse(settings.device).kind  # no CUDA check: the runner's says why
    configs = []
    for precision in settings.torch_precisions:
        seen: set[bool] = set()
        for layout in settings.torch_layouts:
            channels_last = (
                default_channels_last(device_type, precision)
                if layout == "default"
                else layout == "channels_last"
            )
            if channels_last in seen:
                continue
            seen.add(channels_last)
            for mode in settings.torch_modes:
                configs.append(
                    _Config(
                        "torch",
                        settings.model,
                        precision,
                        None,
                        {
                            "precision": precision,
                            "checkpoint": settings.checkpoint,
                            "image_size": size,
                            "options": settings.options,
                            # None keeps the runner's default (recorded as such in the row)
                            "channels_last": None if layout == "default" else channels_last,
                            **({"allow_tf32": True} if settings.allow_tf32 else {}),
                            **({"mode": mode} if mode != "eager" else {}),
                        },
                        suffix_hint=(" channels_last" if channels_last else "")
                        + (f" {mode}" if mode != "eager" else ""),
                    )
                )
    return configs


def _ort_configs(
    settings: BenchSettings,
    plan: BenchTargets,
    stack: contextlib.ExitStack,
    notes: list[str],
    say: Say,
) -> list[_Config]:
    """One row per ONNX artifact, preceded, for a model name, by its FP32 ONNX when none is given
    (the reference every reduced-precision file is judged against): a matching ``NAME.onnx`` in
    ``workdir`` is reused, else one is exported there (or in a temporary folder)."""
    model, size, metas = settings.model, plan.image_size, plan.metas
    configs: list[_Config] = []
    onnx_files: list[Any] = [t for t, kind in plan.kinds.items() if kind == "ort"]
    has_fp32 = any(metas[t]["precision"] == "fp32" for t in onnx_files)
    if plan.export_reference and not has_fp32:
        from deploy_ran.compare.runner_checks import RunnerChecks
        from deploy_ran.convert import ExportConfig, convert, export_differences

        export = ExportConfig(
            checkpoint=settings.checkpoint, image_size=size, options=settings.options or {}
        )
        here = Path(f"{model}.onnx")
        if settings.workdir is not None:
            folder = settings.workdir
            folder.mkdir(parents=True, exist_ok=True)
        elif here.is_file() and not export_differences(model, here, export):
            folder = Path(".")  # a matching export in the current folder: reused, never rewritten
        else:
            folder = stack.enter_context(temp_dir("deploy-ran-bench-"))
        say(f"FP32 ONNX of {model}")
        try:
            converted = convert(
                model,
                "fp32",
                output=folder / f"{model}.onnx",
                export=export,
                checks=RunnerChecks(),
                reuse_matching=True,
                progress=lambda m: say(f"exporting {model}: {m}"),
            )
            onnx_files.insert(0, converted.path)
            notes.append(
                f"FP32 ONNX reused: {converted.path} (its metadata matches the request)"
                if converted.export is None
                else f"FP32 ONNX exported by bench ({converted.export.seconds:.0f} s)"
            )
        except DeployRanError as exc:  # the other backends still run
            configs.append(
                _Config("ort", "", "fp32", None, error=("failed", f"export: {exc.message}"))
            )
    cuda: dict[str, Any] = (
        {"provider_options": {"CUDAExecutionProvider": dict(settings.ort_cuda_options)}}
        if settings.ort_cuda_options
        else {}
    )
    if settings.allow_tf32:
        cuda["allow_tf32"] = True
    for p in onnx_files:
        configs.append(
            _Config("ort", str(p), metas.get(p, {}).get("precision", "fp32"), str(p), dict(cuda))
        )
    return configs


def _trt_configs(kinds: dict[Target, str], metas: dict[Target, dict[str, Any]]) -> list[_Config]:
    engines = [p for p in kinds if kinds[p] == "trt"]
    if engines:
        return [_Config("trt", str(p), metas[p]["precision"], str(p)) for p in engines]
    from deploy_ran.environment import tensorrt_status

    reason = (
        "no engine given (build one, e.g. with `build-engine`, and pass it among the "
        f"artifacts); TensorRT here: {tensorrt_status()}"
    )
    return [_Config("trt", "", "-", None, error=("skipped", reason))]


def _load_runners(
    configs: list[_Config],
    settings: BenchSettings,
    threads: int,
    stack: contextlib.ExitStack,
    say: Say,
) -> None:
    """Build every runner once (closed when ``stack`` closes); a failure marks its config."""
    for cfg in configs:
        if cfg.error is not None:
            continue
        say(f"loading {cfg.label}")
        try:
            # The shared settings go to the backends that honour them (an engine has no threads).
            shared = honoured_options(
                cfg.target, threads=threads, cuda_graph=settings.cuda_graphs
            )
            cfg.runner = load_runner(cfg.target, device=settings.device, **shared, **cfg.kwargs)
            cfg.precision = cfg.runner.precision
            stack.callback(cfg.runner.close)
        except (BackendUnavailableError, DeviceError) as exc:  # no GPU, or an engine on a CPU
            cfg.error = ("skipped", exc.message)
        except Exception as exc:  # any backend failure is a row, not a crash
            cfg.error = ("failed", _reason(exc))
    labels = [c.label for c in configs]
    for cfg in configs:
        if cfg.artifact and labels.count(cfg.label) > 1:
            cfg.suffix = f" · {Path(cfg.artifact).name}"


# ------------------------------------------------------------------------------- measuring


def _reason(exc: BaseException) -> str:
    if isinstance(exc, DeployRanError):
        return exc.message
    first = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {first}"[:300]


def _new_row(cfg: _Config, batch: int, device: str) -> BenchRow:
    """The row of ``cfg`` at ``batch``, already *skipped*/*failed* when it cannot run."""
    runner = cfg.runner
    described = runner.describe() if runner else {}
    row = BenchRow(
        label=cfg.label,
        backend=cfg.backend,
        precision=cfg.precision,
        device=runner.device if runner else device,
        artifact=cfg.artifact,
        batch_size=batch,
        status="ran",
        layout=described.get("layout"),
        mode=described.get("mode") or cfg.kwargs.get("mode") or None,
        runner=described,
        file_bytes=_file_bytes(cfg.artifact),
    )
    if cfg.error is not None:
        row.status, row.reason = cfg.error
    elif runner is not None and runner.fixed_batch is not None and runner.fixed_batch != batch:
        row.status, row.reason = "skipped", f"static batch of {runner.fixed_batch}"
    return row


def _finish_row(row: BenchRow, samples: list[float], timer: str, copies: bool) -> None:
    row.iterations = len(samples)
    row.latency = LatencyStats.from_samples(samples)
    row.throughput = row.batch_size * len(samples) / (sum(samples) / 1e3)
    row.timer = timer
    row.copies_included = copies or not describes_cuda(row.device)


def _measure_row(cfg: _Config, batch: int, settings: BenchSettings, say: Say) -> BenchRow:
    row = _new_row(cfg, batch, settings.device or "cpu")
    if row.status != "ran":
        return row
    assert cfg.runner is not None
    say(f"{cfg.label}, batch {batch}")
    try:
        samples, timer = time_runner(
            cfg.runner,
            batch,
            warmup=settings.warmup,
            duration=settings.duration,
            iterations=settings.iterations,
            copies=settings.copies,
        )
    except Exception as exc:
        row.status, row.reason = "failed", _reason(exc)
        return row
    _finish_row(row, samples, timer, settings.copies)
    _record_compile(row, cfg.runner)
    return row


def _record_compile(row: BenchRow, runner: BaseRunner) -> None:
    """Compile mode: the untimed first run at this batch (compilation), apart from the timings."""
    seconds = getattr(runner, "compile_seconds", None)
    if not seconds:
        return
    row.runner = runner.describe()
    key = "x".join(map(str, runner.input_spec[0].shape_for(row.batch_size)))
    row.compile_seconds = seconds.get(key)


def _measure_interleaved(
    configs: list[_Config], batch: int, settings: BenchSettings, say: Say
) -> list[BenchRow]:
    """Every runnable row at ``batch`` in round-robin (:func:`time_in_turns`).

    The price, on a CPU: one backend's thread pool keeps spinning for a while after its run
    (OpenMP, ONNX Runtime) and slows the next backend, so absolute latencies come out higher than
    in back-to-back runs on a quiet machine; the ratios are what interleaving protects.
    """
    rows = [_new_row(cfg, batch, settings.device or "cpu") for cfg in configs]
    active: list[tuple[BenchRow, Callable[[], float], str]] = []
    for cfg, row in zip(configs, rows):
        if row.status != "ran":
            continue
        assert cfg.runner is not None
        say(f"{cfg.label}, batch {batch}: warm-up")
        try:
            once, timer = run_timer(cfg.runner, batch, settings.copies)
            warm_up(once, settings.warmup)
        except Exception as exc:
            row.status, row.reason = "failed", _reason(exc)
            continue
        active.append((row, once, timer))
        _record_compile(row, cfg.runner)
    say(f"batch {batch}: {len(active)} backends in turn")
    outcomes = time_in_turns(
        [once for _, once, _ in active],
        duration=settings.duration,
        iterations=settings.iterations,
    )
    for (row, _, timer), outcome in zip(active, outcomes):
        if isinstance(outcome, Exception):
            row.status, row.reason = "failed", _reason(outcome)
        else:
            _finish_row(row, outcome, timer, settings.copies)
    return rows


def add_speedups(rows: list[BenchRow]) -> None:
    """Fill both speedups of every row that ran (see the module docstring); a row whose baseline
    is missing at its batch size keeps ``None``."""
    ran = [r for r in rows if r.status == "ran" and r.latency and r.latency.median > 0]
    fp32: dict[int, float] = {}
    best: dict[int, BenchRow] = {}
    for r in ran:
        assert r.latency is not None
        if is_torch_fp32_eager(r):
            fp32.setdefault(r.batch_size, r.latency.median)
        if r.backend == "torch":
            held = best.get(r.batch_size)
            if held is None or r.latency.median < held.latency.median:  # type: ignore[union-attr]
                best[r.batch_size] = r
    for r in ran:
        assert r.latency is not None
        if r.batch_size in fp32:
            r.speedup = fp32[r.batch_size] / r.latency.median
        if r.batch_size in best:
            b = best[r.batch_size]
            r.speedup_vs_best_torch = b.latency.median / r.latency.median  # type: ignore[union-attr]
            r.best_torch = b.label


def _measure_loader(model: str, size: int, rows: list[BenchRow], say: Say) -> dict[str, Any]:
    """One loader worker on 12-MP JPEGs at ``size`` (see :mod:`deploy_ran.bench.loader`), and
    how many such workers the fastest row of each batch size would need to stay fed."""
    from deploy_ran.bench.loader import loader_benchmark
    from deploy_ran.models import get_spec

    result = loader_benchmark(get_spec(model).preprocessing(size), progress=say)
    feeding: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r.status != "ran" or not r.throughput:
            continue
        held = feeding.get(str(r.batch_size))
        if held is None or r.throughput > held["images_per_s"]:
            feeding[str(r.batch_size)] = {
                "fastest_row": r.label,
                "images_per_s": r.throughput,
                **{
                    f"workers_needed_{mode}": result.workers_to_feed(r.throughput, mode)
                    for mode in result.images_per_s
                },
            }
    return {**result.as_dict(), "feeding": feeding}


# ------------------------------------------------------------------------------- accuracy


def _file_bytes(artifact: str | None) -> int | None:
    try:
        return Path(artifact).stat().st_size if artifact else None
    except OSError:
        return None


def _threads_used(rows: list[BenchRow]) -> dict[str, Any]:
    return {r.label: r.runner.get("threads") for r in rows if r.runner}


def _measure_accuracy(configs: list[_Config], settings: BenchSettings, say: Say) -> dict[str, Any]:
    """Top-1 of every built runner on ``settings.data`` (see :mod:`deploy_ran.bench.accuracy`)."""
    from deploy_ran.bench.accuracy import measure_accuracy

    runners = {c.label: c.runner for c in configs if c.runner is not None}
    reference = next(
        (
            c.label
            for c in configs
            if c.runner is not None
            and c.backend == "torch"
            and c.runner.precision == "fp32"
            and c.kwargs.get("mode", "eager") == "eager"
        ),
        None,
    )
    say(f"accuracy on {settings.data}")
    per_label, summary = measure_accuracy(
        runners, settings.data, labels=settings.labels, reference=reference,
        max_images=settings.data_images,
    )  # fmt: skip
    return {**summary, "rows": per_label}


def add_accuracy(rows: list[BenchRow], accuracy: dict[str, Any] | None) -> None:
    """Copy each configuration's top-1 (and Δ against eager FP32) onto its rows."""
    if not accuracy:
        return
    for r in rows:
        entry = accuracy["rows"].get(r.label)
        if entry is not None:
            r.top1 = entry["top1"]
            r.top1_delta = entry.get("top1_delta")
            r.top1_p = entry.get("top1_p")
