"""Does the machine let the numbers mean anything? Load, cores and threads, told with the result.

A speedup measured on a busy machine is a measurement of the other jobs: a new user got "84.55×"
from ``bench ran56_cifar`` on a loaded 2-core host, and 1.78× with ``--threads 1``. So ``bench``

* reads the load average (1/5/15 min, ``os.getloadavg``) before and after the run, and the cores
  this process may use (its affinity mask);
* gives every CPU backend the same thread count, by default the *idle* cores at the start
  (usable cores − the rounded 1-minute load, at least 1), so that backends are compared on the
  same cores and none is handed cores another job holds;
* records the threads each backend reports it used (``runner.describe()["threads"]``) and warns,
  loudly, when the machine was busy (another job's load of at least half the cores before or
  after the run) or oversubscribed (a backend ran more threads than the cores left to it).

The load average is a coarse signal (a 1-minute moving average that also counts the benchmark's
own threads afterwards); the warnings say what was seen, and the JSON keeps the numbers.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

#: Other jobs' 1-minute load, as a share of the usable cores, that makes timings suspect.
BUSY_SHARE = 0.5


def usable_cores() -> int:
    """Cores this process may run on (the affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def load_average() -> tuple[float, float, float] | None:
    """``(1, 5, 15)``-minute load averages, ``None`` where the OS has none."""
    try:
        one, five, fifteen = os.getloadavg()
    except (AttributeError, OSError):
        return None
    return (round(one, 2), round(five, 2), round(fifteen, 2))


def idle_cores(cores: int, load: tuple[float, float, float] | None) -> int:
    """Cores no other job is using now: ``cores − round(1-min load)``, between 1 and ``cores``."""
    if load is None:
        return cores
    return max(1, min(cores, cores - round(load[0])))


@dataclass
class MachineReport:
    """The machine a benchmark ran on: cores, load before/after, threads given and used."""

    cores: int
    load_before: tuple[float, float, float] | None
    threads: int
    threads_from: str  # "threads setting" | "idle cores at start" | "GPU run: all cores"
    load_after: tuple[float, float, float] | None = None
    threads_used: dict[str, Any] = field(default_factory=dict)  # row label → threads reported
    warnings: list[str] = field(default_factory=list)

    def finish(self, threads_used: dict[str, Any], on_gpu: bool) -> None:
        """Read the load after the run and decide the warnings."""
        self.load_after = load_average()
        self.threads_used = threads_used
        self.warnings = self._judge(on_gpu)

    def _judge(self, on_gpu: bool) -> list[str]:
        out = []
        before = self.load_before[0] if self.load_before else None
        if before is not None and before >= BUSY_SHARE * self.cores:
            out.append(
                f"BUSY MACHINE: the 1-minute load was {before:.2f} on {self.cores} usable core(s) "
                "before the run; other jobs were competing for the cores, so latencies and "
                "speedups are not trustworthy. Re-run on an idle machine, or pin --threads to the "
                "idle cores."
            )
        if self.load_after is not None and not on_gpu:
            # The benchmark itself adds up to `threads` of load; what is left is other jobs.
            others = self.load_after[0] - self.threads
            if others >= BUSY_SHARE * self.cores:
                out.append(
                    f"BUSY MACHINE: the 1-minute load after the run was {self.load_after[0]:.2f}, "
                    f"about {others:.1f} more than this benchmark's {self.threads} thread(s) on "
                    f"{self.cores} core(s): other jobs ran during the measurement."
                )
        if not on_gpu:
            over = {
                k: v for k, v in self.threads_used.items() if isinstance(v, int) and v > self.cores
            }
            if over:
                shown = ", ".join(f"{k}: {v}" for k, v in over.items())
                out.append(
                    f"OVERSUBSCRIBED: {shown} thread(s) on {self.cores} usable core(s); threads "
                    "wait for cores and the timings measure the scheduler. Use --threads "
                    f"{self.cores} or fewer."
                )
            elif before is not None and self.threads > idle_cores(self.cores, self.load_before):
                out.append(
                    f"OVERSUBSCRIBED: {self.threads} thread(s) per backend while other jobs held "
                    f"about {round(before)} of {self.cores} core(s). Use --threads "
                    f"{idle_cores(self.cores, self.load_before)} (the idle cores) or fewer."
                )
        return out

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def plan_threads(threads: int | None, on_gpu: bool) -> MachineReport:
    """Read the machine and choose the thread count every backend gets (see the module)."""
    cores, load = usable_cores(), load_average()
    if threads is not None:
        return MachineReport(cores, load, threads, "threads setting")
    if on_gpu:
        return MachineReport(cores, load, cores, "GPU run: all cores")
    return MachineReport(cores, load, idle_cores(cores, load), "idle cores at start")
