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
  batch size × runs / total timed seconds (= batch / mean latency), in images/s; two speedups:
  ``speedup_vs_torch_fp32`` = median latency of eager PyTorch FP32 at the same batch size / the
  row's median, ``speedup_vs_best_torch`` = median of the fastest PyTorch row (any precision,
  layout, mode) at the same batch size in the same run / the row's median.
- **Rows**: *ran*, *failed* (with the error) or *skipped* (backend not installed, static batch of
  another size, no engine given). One backend failing never stops the others.
- Rows are measured batch size by batch size, every backend in turn, so that backends compared
  with each other were measured close together in time. With ``interleave=True`` the backends of
  one batch size take turns run by run, so that a shared machine's changing load hits them alike.

Results go to a terminal table, JSON and CSV whose file name records the environment (CPU, GPU,
library versions), and a PNG plot (throughput against batch size, latency percentiles).

The modules, one job each: :mod:`~deploy_ran.bench.settings` (:class:`BenchSettings`, what to
measure), :mod:`~deploy_ran.bench.timing` (timers, timing loops, statistics),
:mod:`~deploy_ran.bench.run` (:func:`run_benchmark`: runners → rows),
:mod:`~deploy_ran.bench.result` (:class:`BenchResult`, :class:`BenchRow`),
:mod:`~deploy_ran.bench.report` (JSON/CSV/PNG files) and :mod:`~deploy_ran.bench.loader` (images/s
of one ``infer`` loader worker, full against reduced-size JPEG decoding).

    from deploy_ran.bench import BenchSettings, run_benchmark
    result = run_benchmark(BenchSettings("ran92", batch_sizes=(1, 8), iterations=50))
"""

from deploy_ran.bench.loader import LoaderResult, loader_benchmark
from deploy_ran.bench.report import CSV_FIELDS, output_paths, save_result, write_plot
from deploy_ran.bench.result import BenchResult, BenchRow
from deploy_ran.bench.run import run_benchmark
from deploy_ran.bench.settings import BenchSettings
from deploy_ran.bench.timing import (
    MIN_ITERATIONS,
    STAT_FIELDS,
    LatencyStats,
    runner_overhead,
    time_in_turns,
    time_runner,
)
from deploy_ran.environment import environment_tag

__all__ = [
    "CSV_FIELDS",
    "MIN_ITERATIONS",
    "STAT_FIELDS",
    "BenchResult",
    "BenchRow",
    "BenchSettings",
    "LatencyStats",
    "LoaderResult",
    "environment_tag",
    "loader_benchmark",
    "output_paths",
    "run_benchmark",
    "runner_overhead",
    "save_result",
    "time_in_turns",
    "time_runner",
    "write_plot",
]
