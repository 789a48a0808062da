"""How fast is it? Latency and throughput per backend × precision × batch size, through runners.

Method (stated in every result, because numbers without it cannot be compared):

- **Inputs**: one seeded random batch per batch size, in the runner's input dtype.
- **Warm-up**: ``warmup`` seconds (at least 2 runs) before timing, per row: first runs pay for
  memory allocation, lazy initialisation and, on a GPU, kernel selection.
- **Timing**: one sample per run. On a CPU, and on a GPU with host↔device copies included
  (default, ``copies=True``: host arrays in, host arrays out, what an application sees), a host
  timer (``time.perf_counter``) around ``runner.run`` followed by ``synchronize``. On a GPU with
  ``copies=False``, inputs are staged on the device once and CUDA events recorded on the runner's
  stream time ``run_staged`` alone (device time, no copies). A CPU has no copies to exclude.
- **Length**: ``iterations`` runs, or runs until ``duration`` seconds have passed (at least
  ``MIN_ITERATIONS``).
- **Statistics**: min/mean/median/p90/p95/p99/max/std of the per-run latency in ms; throughput =
  batch size × runs / total timed seconds (= batch / mean latency), in images/s; speedup = median
  latency of eager PyTorch FP32 at the same batch size / the row's median latency.
- **Rows**: *ran*, *failed* (with the error) or *skipped* (backend not installed, static batch of
  another size, no engine given). One backend failing never stops the others.
- Rows are measured batch size by batch size, every backend in turn, so that backends compared
  with each other were measured close together in time. With ``interleave=True`` the backends of
  one batch size take turns run by run, so that a shared machine's changing load hits them alike.

Results go to a terminal table, JSON and CSV whose file name records the environment (CPU, GPU,
library versions), and a PNG plot (throughput against batch size, latency percentiles).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from deploy_ran.environment import collect_environment
from deploy_ran.errors import DeployRanError
from deploy_ran.fileio import atomic_path, atomic_write_text, check_writable, temp_dir
from deploy_ran.runners import BACKENDS, BackendUnavailableError, BaseRunner, load_runner
from deploy_ran.runners.loader import backend_for

MIN_ITERATIONS = 5
STAT_FIELDS = ("min", "mean", "median", "p90", "p95", "p99", "max", "std")
CSV_FIELDS = (
    "label",
    "backend",
    "precision",
    "device",
    "artifact",
    "batch_size",
    "status",
    "reason",
    "iterations",
    *(f"{s}_ms" for s in STAT_FIELDS),
    "throughput_ips",
    "speedup_vs_torch_fp32",
    "timer",
    "copies_included",
)


@dataclass(frozen=True)
class LatencyStats:
    """Per-run latency statistics in milliseconds."""

    min: float
    mean: float
    median: float
    p90: float
    p95: float
    p99: float
    max: float
    std: float

    @classmethod
    def from_samples(cls, samples_ms: Sequence[float]) -> LatencyStats:
        a = np.asarray(samples_ms, dtype=np.float64)
        p = np.percentile(a, [50, 90, 95, 99])
        return cls(
            min=float(a.min()),
            mean=float(a.mean()),
            median=float(p[0]),
            p90=float(p[1]),
            p95=float(p[2]),
            p99=float(p[3]),
            max=float(a.max()),
            std=float(a.std(ddof=1)) if len(a) > 1 else 0.0,
        )


@dataclass
class BenchRow:
    """One backend configuration at one batch size."""

    label: str
    backend: str
    precision: str
    device: str
    artifact: str | None
    batch_size: int
    status: str  # "ran" | "failed" | "skipped"
    reason: str | None = None
    iterations: int = 0
    latency: LatencyStats | None = None
    throughput: float | None = None  # images/s
    speedup: float | None = None  # vs eager PyTorch FP32, same batch size
    timer: str | None = None
    copies_included: bool | None = None
    runner: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["latency_ms"] = d.pop("latency")
        d["throughput_ips"] = d.pop("throughput")
        d["speedup_vs_torch_fp32"] = d.pop("speedup")
        return d

    def csv_row(self) -> dict[str, Any]:
        row: dict[str, Any] = {
            "label": self.label,
            "backend": self.backend,
            "precision": self.precision,
            "device": self.device,
            "artifact": self.artifact or "",
            "batch_size": self.batch_size,
            "status": self.status,
            "reason": self.reason or "",
            "iterations": self.iterations,
            "throughput_ips": _fmt(self.throughput),
            "speedup_vs_torch_fp32": _fmt(self.speedup),
            "timer": self.timer or "",
            "copies_included": "" if self.copies_included is None else self.copies_included,
        }
        for s in STAT_FIELDS:
            row[f"{s}_ms"] = _fmt(getattr(self.latency, s) if self.latency else None)
        return row


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


@dataclass
class BenchResult:
    """Everything ``bench`` measured, with the method and the environment."""

    model: str
    image_size: int
    device: str
    batch_sizes: list[int]
    copies_included: bool
    cuda_graphs: bool
    warmup_s: float
    duration_s: float | None
    iterations: int | None
    threads: int
    environment: dict[str, Any]
    started_at: str
    rows: list[BenchRow]
    notes: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    interleaved: bool = False

    def row(self, backend: str, precision: str, batch_size: int) -> BenchRow | None:
        """The first row for a backend/precision/batch size (``None`` if absent)."""
        for r in self.rows:
            if (r.backend, r.precision, r.batch_size) == (backend, precision, batch_size):
                return r
        return None

    def method(self) -> dict[str, Any]:
        return {
            "warmup_s": self.warmup_s,
            "duration_s": self.duration_s,
            "iterations": self.iterations,
            "min_iterations": MIN_ITERATIONS,
            "copies_included": self.copies_included,
            "cuda_graphs": self.cuda_graphs,
            "interleaved": self.interleaved,
            "order": "backends in turn, one run each (interleaved)"
            if self.interleaved
            else "batch size by batch size, each backend's runs back to back",
            "timer": "cuda events on the runner's stream"
            if (self.device.startswith("cuda") and not self.copies_included)
            else "host perf_counter (+ synchronize)",
            "throughput": "batch_size * runs / timed seconds",
            "speedup": "median latency of torch fp32 at the same batch size / row median",
            "inputs": "seeded random normal batch in the runner's input dtype",
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "image_size": self.image_size,
            "device": self.device,
            "batch_sizes": self.batch_sizes,
            "threads": self.threads,
            "started_at": self.started_at,
            "method": self.method(),
            "environment": self.environment,
            "environment_tag": environment_tag(self.environment),
            "rows": [r.as_dict() for r in self.rows],
            "notes": self.notes,
        }

    def default_stem(self) -> str:
        """``bench_MODEL_SIZEpx_DEVICE_<environment tag>``: the file name records the environment."""
        device = "cuda" if self.device.startswith("cuda") else "cpu"
        return (
            f"bench_{self.model}_{self.image_size}px_{device}_{environment_tag(self.environment)}"
        )

    def save(self, output: str | Path | None = None, plot: bool = True) -> dict[str, Path]:
        """Write JSON + CSV (+ PNG); ``output`` is a folder (names from the environment) or a
        ``.json`` path (CSV/PNG beside it, same stem). Each file is written atomically."""
        json_path, csv_path, png_path = output_paths(output, self.default_stem())
        atomic_write_text(json_path, json.dumps(self.as_dict(), indent=2) + "\n")
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(CSV_FIELDS), lineterminator="\n")
        writer.writeheader()
        for r in self.rows:
            writer.writerow(r.csv_row())
        atomic_write_text(csv_path, buf.getvalue())
        paths = {"json": json_path, "csv": csv_path}
        if plot:
            write_plot(self, png_path)
            paths["png"] = png_path
        self.files = {k: str(v) for k, v in paths.items()}
        return paths


def output_paths(output: str | Path | None, stem: str) -> tuple[Path, Path, Path]:
    """(json, csv, png) paths for ``output`` (a folder, or a file whose stem is kept)."""
    out = Path(output) if output is not None else Path("bench_results")
    if out.suffix.lower() in (".json", ".csv", ".png"):
        base = out.with_suffix("")
    else:
        out.mkdir(parents=True, exist_ok=True)
        base = out / stem
    paths = tuple(base.with_name(base.name + ext) for ext in (".json", ".csv", ".png"))
    for p in paths:
        check_writable(p)
    return paths  # type: ignore[return-value]


def _slug(text: str) -> str:
    text = re.sub(r"\((R|TM|tm|r)\)", "", text)
    text = re.sub(r"\b(CPU|Processor|with Radeon Graphics)\b", "", text)
    text = text.replace("@", " ").replace("+", "-")
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-.").lower()


def environment_tag(env: dict[str, Any]) -> str:
    """CPU model, GPU (or ``nogpu``) and library versions as one file-name-safe string."""
    gpus = env.get("gpus") or []
    parts = [
        _slug(str(env.get("cpu", "cpu"))),
        _slug(str(gpus[0])) if gpus else "nogpu",
        "torch" + _slug(str(env.get("torch", "unknown"))),
        "ort" + _slug(str(env.get("onnxruntime", "unknown"))),
    ]
    trt = str(env.get("tensorrt", ""))
    if trt and re.match(r"^\d", trt):
        parts.append("trt" + _slug(trt))
    return "_".join(p for p in parts if p)


# ---------------------------------------------------------------------------------- timing


def _random_batch(runner: BaseRunner, batch: int, seed: int = 0) -> np.ndarray:
    spec = runner.input_spec[0]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(spec.shape_for(batch), dtype=np.float32)
    return np.ascontiguousarray(x.astype(spec.dtype))


def run_timer(
    runner: BaseRunner, batch: int, copies: bool = True
) -> tuple[Callable[[], float], str]:
    """A function that runs ``runner`` once at ``batch`` and returns the latency in ms, and the
    name of its timer (see the module docstring for which timer is used when)."""
    x = _random_batch(runner, batch)
    if copies or not runner.device.startswith("cuda"):

        def once() -> float:
            t0 = time.perf_counter()
            runner.run(x)
            runner.synchronize()
            return (time.perf_counter() - t0) * 1e3

        return once, "host perf_counter"
    from deploy_ran.runners.cuda_timing import cuda_event_timer

    return cuda_event_timer(runner, runner.stage(x)), "cuda events"


def warm_up(once: Callable[[], float], seconds: float) -> int:
    """Run for ``seconds`` (at least twice); returns the number of runs."""
    t_end = time.perf_counter() + max(0.0, seconds)
    runs = 0
    while runs < 2 or time.perf_counter() < t_end:
        once()
        runs += 1
    return runs


def time_runner(
    runner: BaseRunner,
    batch: int,
    *,
    warmup: float = 1.0,
    duration: float | None = 5.0,
    iterations: int | None = None,
    copies: bool = True,
) -> tuple[list[float], str]:
    """Per-run latencies (ms) of ``runner`` at ``batch``, and the name of the timer used."""
    once, timer = run_timer(runner, batch, copies)
    warm_up(once, warmup)
    samples: list[float] = []
    started = time.perf_counter()
    while True:
        samples.append(once())
        if iterations is not None:
            if len(samples) >= iterations:
                break
        elif len(samples) >= MIN_ITERATIONS and time.perf_counter() - started >= (duration or 0):
            break
    return samples, timer


# ------------------------------------------------------------------------------ the benchmark


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

    @property
    def label(self) -> str:
        if self.runner is not None:
            return self.runner.label + self.suffix
        precision = "" if self.precision == "-" else f" {self.precision}"
        return f"{self.backend}{precision}{self.suffix}"


def _parse_batch_sizes(batch_sizes: Sequence[int]) -> list[int]:
    sizes = sorted({int(b) for b in batch_sizes})
    if not sizes or sizes[0] < 1:
        raise DeployRanError(
            f"Batch sizes must be positive integers, got {list(batch_sizes)}.",
            hint="Use e.g. --batch-sizes 1,8,32.",
        )
    return sizes


def _check_artifact(path: Path, model: str, image_size: int) -> dict[str, Any]:
    """An artifact must be for the benchmarked model and size (else its speedup means nothing)."""
    from deploy_ran.artifacts import read_artifact_info
    from deploy_ran.trt_compat import read_sidecar

    if not path.exists():
        raise DeployRanError(f"Artifact {path} does not exist.", hint="Check --artifacts.")
    if path.suffix.lower() == ".onnx":
        info = read_artifact_info(path)
        meta = {"model": info.model, "image_size": info.image_size, "precision": info.precision}
    else:
        side = read_sidecar(path) or {}
        meta = {
            "model": side.get("model"),
            "image_size": side.get("image_size"),
            "precision": side.get("precision", "?"),
        }
    if meta["model"] and meta["model"] != model:
        raise DeployRanError(
            f"{path} is an artifact of {meta['model']}, not {model}.",
            hint=f"Benchmark it with `bench {meta['model']}`, or pass {model}'s artifacts.",
        )
    if meta["image_size"] and int(meta["image_size"]) != image_size:
        raise DeployRanError(
            f"{path} takes {meta['image_size']} px inputs; this benchmark is at {image_size} px.",
            hint=f"Add --image-size {meta['image_size']}.",
        )
    return meta


def run_benchmark(
    model: str,
    *,
    backends: Sequence[str] | None = None,
    artifacts: Sequence[str | Path] = (),
    batch_sizes: Sequence[int] = (1,),
    warmup: float = 1.0,
    duration: float | None = 5.0,
    iterations: int | None = None,
    device: str = "cpu",
    copies: bool = True,
    cuda_graphs: bool = False,
    interleave: bool = False,
    threads: int | None = None,
    torch_precisions: Sequence[str] = ("fp32",),
    image_size: int | None = None,
    checkpoint: str | Path | None = None,
    options: dict[str, Any] | None = None,
    workdir: str | Path | None = None,
    output: str | Path | None = None,
    plot: bool = True,
    progress: Callable[[str], None] | None = None,
) -> BenchResult:
    """Benchmark ``model`` on each backend (see the module docstring for the method).

    ``artifacts``: existing ONNX files (any precision; their metadata says which) and engines.
    With ``ort`` among the backends and no FP32 ONNX among the artifacts, the FP32 ONNX is exported
    into ``workdir`` (a temporary folder by default). ``output``: where to save (see
    :meth:`BenchResult.save`); ``None`` saves nothing.
    """
    from deploy_ran.models import get_spec
    from deploy_ran.runners.ort_runner import default_threads

    say = progress or (lambda _m: None)
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    spec = get_spec(model)
    size = image_size or spec.image_size
    sizes = _parse_batch_sizes(batch_sizes)
    if iterations is not None and iterations < 1:
        raise DeployRanError(f"--iterations must be ≥ 1, got {iterations}.", hint="Use 20.")
    if iterations is None and (duration is None or duration <= 0):
        raise DeployRanError("Give --duration S (> 0) or --iterations N.", hint="--duration 5")
    if warmup < 0:
        raise DeployRanError(f"--warmup must be ≥ 0 s, got {warmup}.", hint="--warmup 1")
    on_gpu = device.startswith("cuda")
    if cuda_graphs and not on_gpu:
        raise DeployRanError("CUDA graphs need a GPU.", hint="Add --device cuda, or drop the flag.")
    artifact_paths = [Path(a) for a in artifacts]
    kinds = {p: backend_for(p) for p in artifact_paths}
    for p, kind in kinds.items():
        if kind == "torch":
            raise DeployRanError(
                f"--artifacts takes .onnx/.plan/.engine files, got {p}.",
                hint="The PyTorch model is benchmarked from MODEL itself.",
            )
    if backends is None:
        backends = ["torch", "ort"] + (["trt"] if "trt" in kinds.values() else [])
    backends = [b.strip().lower() for b in backends if b.strip()]
    unknown = sorted(set(backends) - set(BACKENDS))
    if unknown or not backends:
        raise DeployRanError(
            f"Unknown backend(s) {', '.join(unknown) or '(none given)'}.",
            hint=f"Choose from: {', '.join(BACKENDS)}.",
        )
    for p, kind in kinds.items():
        if kind not in backends:
            raise DeployRanError(
                f"{p} runs on the {kind} backend, which is not in --backends {','.join(backends)}.",
                hint=f"Add {kind} to --backends.",
            )
    metas = {p: _check_artifact(p, model, size) for p in artifact_paths}
    env = collect_environment()
    if output is not None:
        output_paths(output, "bench_check")  # fail on an unwritable output before measuring
    threads = threads or default_threads()
    notes: list[str] = []

    configs: list[_Config] = []
    if "torch" in backends:
        for precision in torch_precisions:
            configs.append(
                _Config(
                    "torch",
                    model,
                    precision,
                    None,
                    {
                        "precision": precision,
                        "checkpoint": checkpoint,
                        "image_size": size,
                        "options": options,
                    },
                )
            )
    with contextlib.ExitStack() as stack:
        if "ort" in backends:
            onnx_files = [p for p in artifact_paths if kinds[p] == "ort"]
            if not any(metas[p]["precision"] == "fp32" for p in onnx_files):
                if workdir is None:
                    folder = stack.enter_context(temp_dir("deploy-ran-bench-"))
                else:
                    folder = Path(workdir)
                    folder.mkdir(parents=True, exist_ok=True)
                from exporters.onnx import export_onnx

                say(f"exporting {model} to FP32 ONNX")
                try:
                    exported = export_onnx(
                        model,
                        folder / f"{model}.onnx",
                        checkpoint=checkpoint,
                        image_size=size,
                        progress=lambda m: say(f"exporting {model}: {m}"),
                        **(options or {}),
                    )
                    onnx_files.insert(0, exported.path)
                    notes.append(f"FP32 ONNX exported by bench ({exported.seconds:.0f} s)")
                except DeployRanError as exc:  # the other backends still run
                    configs.append(
                        _Config("ort", "", "fp32", None, error=("failed", f"export: {exc.message}"))
                    )
            for p in onnx_files:
                configs.append(
                    _Config("ort", str(p), metas.get(p, {}).get("precision", "fp32"), str(p))
                )
        if "trt" in backends:
            engines = [p for p in artifact_paths if kinds[p] == "trt"]
            for p in engines:
                configs.append(_Config("trt", str(p), metas[p]["precision"], str(p)))
            if not engines:
                from deploy_ran.environment import tensorrt_status

                configs.append(
                    _Config(
                        "trt",
                        "",
                        "-",
                        None,
                        error=(
                            "skipped",
                            "no engine given (build one with `build-engine` and pass it with "
                            f"--artifacts); TensorRT here: {tensorrt_status()}",
                        ),
                    )
                )

        # Build every runner once, up front.
        for cfg in configs:
            if cfg.error is not None:
                continue
            say(f"loading {cfg.label}")
            try:
                cfg.runner = load_runner(
                    cfg.target,
                    device=device,
                    threads=threads,
                    cuda_graph=cuda_graphs,
                    **cfg.kwargs,
                )
                cfg.precision = cfg.runner.precision
                stack.callback(cfg.runner.close)
            except BackendUnavailableError as exc:
                cfg.error = ("skipped", exc.message)
            except Exception as exc:  # any backend failure is a row, not a crash
                cfg.error = ("failed", _reason(exc))
        labels = [c.label for c in configs]
        for cfg in configs:
            if cfg.artifact and labels.count(cfg.label) > 1:
                cfg.suffix = f" · {Path(cfg.artifact).name}"

        rows: list[BenchRow] = []
        for batch in sizes:
            if interleave:
                rows.extend(
                    _measure_interleaved(
                        configs, batch, device, warmup, duration, iterations, copies, say
                    )
                )
                continue
            for cfg in configs:
                rows.append(
                    _measure_row(cfg, batch, device, warmup, duration, iterations, copies, say)
                )
    _add_speedups(rows)
    environment = {**env, "bench_threads": str(threads)}
    result = BenchResult(
        model=model,
        image_size=size,
        device=device,
        batch_sizes=sizes,
        copies_included=copies or not on_gpu,
        cuda_graphs=cuda_graphs,
        interleaved=interleave,
        warmup_s=warmup,
        duration_s=None if iterations is not None else duration,
        iterations=iterations,
        threads=threads,
        environment=environment,
        started_at=started_at,
        rows=rows,
        notes=notes,
    )
    if output is not None:
        result.save(output, plot=plot)
    return result


def _reason(exc: BaseException) -> str:
    if isinstance(exc, DeployRanError):
        return exc.message
    first = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {first}"[:300]


def _new_row(cfg: _Config, batch: int, device: str) -> BenchRow:
    """The row of ``cfg`` at ``batch``, already *skipped*/*failed* when it cannot run."""
    runner = cfg.runner
    row = BenchRow(
        label=cfg.label,
        backend=cfg.backend,
        precision=cfg.precision,
        device=runner.device if runner else device,
        artifact=cfg.artifact,
        batch_size=batch,
        status="ran",
        runner=runner.describe() if runner else {},
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
    row.copies_included = copies or not row.device.startswith("cuda")


def _measure_row(
    cfg: _Config,
    batch: int,
    device: str,
    warmup: float,
    duration: float | None,
    iterations: int | None,
    copies: bool,
    say: Callable[[str], None],
) -> BenchRow:
    row = _new_row(cfg, batch, device)
    if row.status != "ran":
        return row
    assert cfg.runner is not None
    say(f"{cfg.label}, batch {batch}")
    try:
        samples, timer = time_runner(
            cfg.runner,
            batch,
            warmup=warmup,
            duration=duration,
            iterations=iterations,
            copies=copies,
        )
    except Exception as exc:
        row.status, row.reason = "failed", _reason(exc)
        return row
    _finish_row(row, samples, timer, copies)
    return row


def _measure_interleaved(
    configs: list[_Config],
    batch: int,
    device: str,
    warmup: float,
    duration: float | None,
    iterations: int | None,
    copies: bool,
    say: Callable[[str], None],
) -> list[BenchRow]:
    """Every runnable row at ``batch`` in round-robin, one run each per round.

    On a shared machine, load changes over seconds; alternating runs lets every backend see the
    same conditions, so their ratio (the speedup) stays meaningful when absolute times drift.
    The price, on a CPU: one backend's thread pool keeps spinning for a while after its run
    (OpenMP, ONNX Runtime) and slows the next backend, so absolute latencies come out higher than
    in back-to-back runs on a quiet machine.
    Stops after ``iterations`` rounds, or once ``duration`` × the number of rows has passed
    (each row gets about ``duration`` seconds of its own) and every row has ``MIN_ITERATIONS``.
    """
    rows = [_new_row(cfg, batch, device) for cfg in configs]
    active: list[tuple[BenchRow, Callable[[], float], str, list[float]]] = []
    for cfg, row in zip(configs, rows):
        if row.status != "ran":
            continue
        assert cfg.runner is not None
        say(f"{cfg.label}, batch {batch}: warm-up")
        try:
            once, timer = run_timer(cfg.runner, batch, copies)
            warm_up(once, warmup)
        except Exception as exc:
            row.status, row.reason = "failed", _reason(exc)
            continue
        active.append((row, once, timer, []))
    say(f"batch {batch}: {len(active)} backends in turn")
    started = time.perf_counter()
    rounds = 0
    while active:
        for entry in list(active):
            row, once, _, samples = entry
            try:
                samples.append(once())
            except Exception as exc:
                row.status, row.reason = "failed", _reason(exc)
                active.remove(entry)
        rounds += 1
        if iterations is not None:
            if rounds >= iterations:
                break
        elif rounds >= MIN_ITERATIONS and (
            time.perf_counter() - started >= (duration or 0) * len(active)
        ):
            break
    for row, _, timer, samples in active:
        _finish_row(row, samples, timer, copies)
    return rows


def _add_speedups(rows: list[BenchRow]) -> None:
    base = {
        r.batch_size: r.latency.median
        for r in rows
        if r.backend == "torch" and r.precision == "fp32" and r.status == "ran" and r.latency
    }
    for r in rows:
        if r.status == "ran" and r.latency and r.batch_size in base and r.latency.median > 0:
            r.speedup = base[r.batch_size] / r.latency.median


# ---------------------------------------------------------------------------------- plot


def write_plot(result: BenchResult, path: str | Path) -> Path:
    """PNG: throughput against batch size per backend, and latency percentiles per row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ran = [r for r in result.rows if r.status == "ran" and r.latency]
    fig, (ax1, ax2) = plt.subplots(
        1, 2, figsize=(13 + 0.6 * max(0, len(ran) - 6), 5.5), width_ratios=(1, 1.3)
    )
    labels = list(dict.fromkeys(r.label for r in ran))
    for label in labels:
        pts = sorted((r.batch_size, r.throughput) for r in ran if r.label == label)
        ax1.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
    ax1.set_xscale("log", base=2)
    ax1.set_xticks(result.batch_sizes, [str(b) for b in result.batch_sizes])
    ax1.minorticks_off()
    ax1.set_xlabel("batch size")
    ax1.set_ylabel("throughput (images/s)")
    ax1.set_title("Throughput")
    ax1.grid(True, alpha=0.3)
    if labels:
        ax1.legend(fontsize=8)
    pcts = ("median", "p90", "p95", "p99")
    width = 0.8 / len(pcts)
    xs = np.arange(len(ran))
    for i, pct in enumerate(pcts):
        ax2.bar(xs + i * width, [getattr(r.latency, pct) for r in ran], width, label=pct)
    ax2.set_xticks(xs + width * (len(pcts) - 1) / 2)
    ax2.set_xticklabels(
        [f"{r.label}\nbatch {r.batch_size}".replace(" · ", "\n") for r in ran],
        fontsize=7,
        rotation=30,
        ha="right",
    )
    ax2.set_ylabel("latency (ms)")
    ax2.set_title("Latency percentiles")
    ax2.grid(True, axis="y", alpha=0.3)
    if ran:
        ax2.legend(fontsize=8)
    env = result.environment
    gpus = env.get("gpus") or ["no GPU"]
    fig.suptitle(
        f"{result.model} at {result.image_size}px on {result.device} · {env.get('cpu')} · "
        f"{gpus[0]} · torch {env.get('torch')} · onnxruntime {env.get('onnxruntime')} · "
        f"{result.threads} threads",
        fontsize=9,
    )
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return Path(path)


# ------------------------------------------------------------------ runner overhead (ORT)


def runner_overhead(
    onnx_path: str | Path, *, batch: int = 1, iterations: int = 50, threads: int | None = None
) -> dict[str, Any]:
    """``OrtRunner.run`` against a bare ``InferenceSession.run`` on the same session and inputs.

    The two calls alternate (ABAB…) so that machine load hits both alike; the overhead is the
    ratio of medians minus one.
    """
    from deploy_ran.runners.ort_runner import OrtRunner

    with OrtRunner(onnx_path, threads=threads) as runner:
        x = _random_batch(runner, batch)
        feed = {runner.input_spec[0].name: x}
        session = runner.session
        for _ in range(3):
            runner.run(x)
            session.run(None, feed)
        bare, wrapped = [], []
        for i in range(iterations):
            order = (0, 1) if i % 2 == 0 else (1, 0)
            for which in order:
                t0 = time.perf_counter()
                if which == 0:
                    session.run(None, feed)
                else:
                    runner.run(x)
                (bare if which == 0 else wrapped).append((time.perf_counter() - t0) * 1e3)
    b, w = float(np.median(bare)), float(np.median(wrapped))
    return {
        "onnx": str(onnx_path),
        "batch": batch,
        "iterations": iterations,
        "threads": runner.describe()["threads"],
        "bare_session_median_ms": b,
        "runner_median_ms": w,
        "overhead": w / b - 1.0 if b > 0 else math.nan,
    }
