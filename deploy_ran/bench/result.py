"""What a benchmark returns: one row per backend configuration × batch size, with the method and
the environment, in the JSON form the reports store (:meth:`BenchResult.as_dict`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from deploy_ran.bench.timing import CUDA_EVENTS, MIN_ITERATIONS, LatencyStats
from deploy_ran.device import describes_cuda
from deploy_ran.environment import environment_tag


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
    speedup_vs_best_torch: float | None = None  # vs the fastest PyTorch row, same batch size
    best_torch: str | None = None  # label of that fastest PyTorch row
    timer: str | None = None
    copies_included: bool | None = None
    layout: str | None = None  # memory layout that ran, where the backend says (NCHW, ...)
    mode: str | None = None  # PyTorch: eager | compile
    compile_seconds: float | None = None  # compile mode: first run at this batch (untimed)
    runner: dict[str, Any] = field(default_factory=dict)
    file_bytes: int | None = None  # size of the artifact (ONNX file, engine) this row ran
    top1: float | None = None  # bench --data: top-1 on the labelled data (fraction)
    top1_delta: float | None = None  # top1 - eager PyTorch FP32's top1 on the same images
    top1_p: float | None = None  # exact McNemar p of that difference

    @property
    def speedup_vs_torch_fp32(self) -> float | None:
        return self.speedup

    @property
    def timing(self) -> str:
        """The timing method in a few words, e.g. ``host timer, copies included``."""
        if self.timer is None:
            return "-"
        timer = "CUDA events" if self.timer == CUDA_EVENTS else "host timer"
        copies = "copies included" if self.copies_included else "no copies"
        return f"{timer}, {copies}"

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["latency_ms"] = d.pop("latency")
        d["throughput_ips"] = d.pop("throughput")
        d["speedup_vs_torch_fp32"] = d.pop("speedup")
        d["timing"] = self.timing
        return d


def is_torch_fp32_eager(row: BenchRow) -> bool:
    """The ``speedup_vs_torch_fp32`` baseline: eager PyTorch FP32 (any layout)."""
    return row.backend == "torch" and row.precision == "fp32" and row.mode in (None, "eager")


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
    files: dict[str, str] = field(default_factory=dict)  # kind ("json", "csv", "png") → path
    interleaved: bool = False
    loader: dict[str, Any] | None = None  # bench --loader: LoaderResult.as_dict() + feeding
    machine: dict[str, Any] | None = None  # MachineReport.as_dict(): cores, load, threads
    accuracy: dict[str, Any] | None = None  # bench --data: data, images, reference, per label
    warnings: list[str] = field(default_factory=list)  # busy / oversubscribed machine

    @property
    def threads_per_backend(self) -> dict[str, Any]:
        """Threads each row's backend reported using (``runner.describe()``), by label."""
        return {r.label: r.runner.get("threads") for r in self.rows if r.runner}

    def row(self, backend: str, precision: str, batch_size: int) -> BenchRow | None:
        """The first row for a backend/precision/batch size (``None`` if absent)."""
        for r in self.rows:
            if (r.backend, r.precision, r.batch_size) == (backend, precision, batch_size):
                return r
        return None

    def baselines(self) -> dict[str, dict[str, str | None]]:
        """Per batch size, the labels of the two speedup baselines (``None`` when absent)."""
        out: dict[str, dict[str, str | None]] = {}
        for b in self.batch_sizes:
            fp32 = next(
                (
                    r.label
                    for r in self.rows
                    if r.batch_size == b
                    and r.status == "ran"
                    and r.speedup == 1.0
                    and is_torch_fp32_eager(r)
                ),
                None,
            )
            best = next(
                (r.best_torch for r in self.rows if r.batch_size == b and r.best_torch), None
            )
            out[str(b)] = {"torch_fp32": fp32, "best_torch": best}
        return out

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
            if (describes_cuda(self.device) and not self.copies_included)
            else "host perf_counter (+ synchronize)",
            "throughput": "batch_size * runs / timed seconds",
            "speedup": "median latency of torch fp32 at the same batch size / row median",
            "speedup_vs_torch_fp32": "median latency of eager PyTorch FP32 at the same batch "
            "size / the row's median latency",
            "speedup_vs_best_torch": "median latency of the fastest PyTorch row (any precision, "
            "layout, mode) at the same batch size in this run / the row's median latency",
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
            "baselines": self.baselines(),
            "rows": [r.as_dict() for r in self.rows],
            "notes": self.notes,
            "warnings": self.warnings,
            "machine": self.machine,
            **({"loader": self.loader} if self.loader is not None else {}),
            **({"accuracy": self.accuracy} if self.accuracy is not None else {}),
        }
