"""How one runner is timed: inputs, timers, warm-up, the timing loops and latency statistics.

Nothing here knows about rows, backends or files; :mod:`deploy_ran.bench.run` decides what to
time and :mod:`deploy_ran.bench.report` what to write.

- **Inputs**: one seeded random batch per batch size, in the runner's input dtype.
- **Timer**: on a CPU, and on a GPU with host↔device copies included (``copies=True``), a host
  timer (``time.perf_counter``) around ``runner.run`` followed by ``synchronize``. On a GPU with
  ``copies=False``, inputs are staged on the device once and CUDA events recorded on the runner's
  stream time ``run_staged`` alone (device time, no copies). A CPU has no copies to exclude.
- **Length**: ``iterations`` runs, or runs until ``duration`` seconds have passed (at least
  :data:`MIN_ITERATIONS`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deploy_ran.runners import BaseRunner

#: The name of the CUDA-event timer, as rows and reports record it.
CUDA_EVENTS = "cuda events"

MIN_ITERATIONS = 5
STAT_FIELDS = ("min", "mean", "median", "p90", "p95", "p99", "max", "std")


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


def random_batch(runner: BaseRunner, batch: int, seed: int = 0) -> np.ndarray:
    """A seeded random normal batch in the runner's input shape and dtype."""
    spec = runner.input_spec[0]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(spec.shape_for(batch), dtype=np.float32)
    return np.ascontiguousarray(x.astype(spec.dtype))


def run_timer(
    runner: BaseRunner, batch: int, copies: bool = True
) -> tuple[Callable[[], float], str]:
    """A function that runs ``runner`` once at ``batch`` and returns the latency in ms, and the
    name of its timer (see the module docstring for which timer is used when)."""
    x = random_batch(runner, batch)
    if copies or not runner.is_cuda:

        def once() -> float:
            t0 = time.perf_counter()
            runner.run(x)
            runner.synchronize()
            return (time.perf_counter() - t0) * 1e3

        return once, "host perf_counter"
    from deploy_ran.runners.cuda_timing import cuda_event_timer

    return cuda_event_timer(runner, runner.stage(x)), CUDA_EVENTS


def warm_up(once: Callable[[], float], seconds: float) -> int:
    """One run, then runs for ``seconds`` (at least two in all); returns the number of runs.

    First runs pay for memory allocation, lazy initialisation, on a GPU kernel selection, and in
    PyTorch's compile mode compilation (seconds to minutes): the clock starts after the first
    run, so a long compilation does not eat the warm-up that follows it."""
    once()
    runs = 1
    t_end = time.perf_counter() + max(0.0, seconds)
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


def time_in_turns(
    timers: Sequence[Callable[[], float]],
    *,
    duration: float | None = 5.0,
    iterations: int | None = None,
) -> list[list[float] | Exception]:
    """Per-run latencies (ms) of every timer, run in round-robin, one run each per round.

    On a shared machine, load changes over seconds; alternating runs lets every timer see the
    same conditions, so their ratios stay meaningful when absolute times drift. A timer that
    raises leaves the rounds; its entry in the result is the exception instead of its samples.
    Stops after ``iterations`` rounds, or once ``duration`` × the number of timers still running
    has passed (each gets about ``duration`` seconds of its own) and every one has
    :data:`MIN_ITERATIONS` runs.
    """
    results: list[list[float] | Exception] = [[] for _ in timers]
    active = list(range(len(timers)))
    started = time.perf_counter()
    rounds = 0
    while active:
        for i in list(active):
            samples = results[i]
            assert isinstance(samples, list)
            try:
                samples.append(timers[i]())
            except Exception as exc:
                results[i] = exc
                active.remove(i)
        rounds += 1
        if iterations is not None:
            if rounds >= iterations:
                break
        elif rounds >= MIN_ITERATIONS and (
            time.perf_counter() - started >= (duration or 0) * len(active)
        ):
            break
    return results


def runner_overhead(
    onnx_path: str | Path, *, batch: int = 1, iterations: int = 50, threads: int | None = None
) -> dict[str, Any]:
    """``OrtRunner.run`` against a bare ``InferenceSession.run`` on the same session and inputs.

    The two calls alternate (ABAB…) so that machine load hits both alike; the overhead is the
    ratio of medians minus one.
    """
    from deploy_ran.runners.ort_runner import OrtRunner

    with OrtRunner(onnx_path, threads=threads) as runner:
        x = random_batch(runner, batch)
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
