"""SIGINT, SIGTERM and SIGKILL at several points of every long command (issue 21, item 2).

Each command runs as its own process (``python cli.py ...``) and gets a signal after a delay:
early (models loading), middle and late. Whatever it was doing, it must exit ``128 + signal``
(130 for SIGINT, 143 for SIGTERM) with the one "Stopped by ..." message, no traceback, and no
temporary file in its output folder or this host's temp folder. The points are fractions of
an undisturbed run's time on this machine (measured first), from the seconds of importing
PyTorch to the end of the work; a run that finished before its signal is allowed, but at least
one point must hit a running command. After SIGKILL, which nothing can clean up after, the next run of the same command
removes what the killed one left (``triton-repo``'s ``.NAME.<pid>-<host>.*.tmp`` staging).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from registry import COMMANDS

ROOT = Path(__file__).resolve().parents[2]
FRACTIONS = (0.15, 0.5, 0.8)  # of an undisturbed run: importing, loading, working


def _temp_names() -> set[str]:
    return {n for n in os.listdir(tempfile.gettempdir()) if n.startswith("deploy-ran")}


def _leftovers(out: Path) -> list[str]:
    return [
        str(p) for p in out.rglob("*") if p.name.endswith((".tmp", ".lock")) or ".tmp" in p.name
    ]


def start(argv: list[str], cwd: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    return subprocess.Popen(
        [sys.executable, str(ROOT / "cli.py"), *argv],
        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        errors="backslashreplace",
    )  # fmt: skip


def argv_for(name: str, valid: dict, out: Path) -> list[str]:
    values = dict(valid, out=str(out), target=valid["onnx"])
    return [a.format(**values) if "{" in a else a for a in COMMANDS[name].argv]


#: Commands with enough work to interrupt. Each test runs its command four times as a process
#: (a minute on two busy cores), so only verify, whose SIGTERM once printed a traceback, runs
#: by default; the rest with -m slow.
SIGNALLED = ["verify", "infer", "triton-repo", "calibrate", "evaluate", "visualize", "export", "bench"]
SLOW = {"export", "bench", "calibrate", "visualize", "evaluate", "infer", "triton-repo"}


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=[pytest.mark.slow] if n in SLOW else []) for n in SIGNALLED]
)
def test_signal_stops_cleanly(name, sig, valid, tmp_path):
    hit = 0
    # Points of the run: fractions of how long an undisturbed run of the same command takes
    # here (start-up, model loading, work), measured first.
    started = time.perf_counter()
    (tmp_path / "timing").mkdir()
    first = start(argv_for(name, valid, tmp_path / "timing"), tmp_path)
    _, err = first.communicate(timeout=300)
    assert first.returncode == COMMANDS[name].valid_code, err[-2000:]
    took = time.perf_counter() - started
    for delay in (f * took for f in FRACTIONS):
        out = tmp_path / f"out{delay:.2f}"
        out.mkdir()
        before = _temp_names()
        proc = start(argv_for(name, valid, out), tmp_path)
        time.sleep(delay)
        sent = proc.poll() is None
        if sent:
            proc.send_signal(sig)
        try:
            stdout, stderr = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail(f"{name} did not stop within 120 s of {sig.name}")
        shown = f"{name} after {delay} s, rc={proc.returncode}\n{stderr[-2000:]}"
        assert "Traceback" not in stderr + stdout, shown
        assert not _leftovers(out), shown
        mine = {n for n in _temp_names() - before if f"-{proc.pid}-" in n}
        assert not mine, f"left in the temp folder: {mine}\n{shown}"
        output = COMMANDS[name].output
        done = output is not None and Path(output.format(out=out)).exists()
        if not sent or proc.returncode == COMMANDS[name].valid_code:
            continue  # finished before the signal arrived
        if proc.returncode == -sig and done:
            continue  # output written, then the signal came in the last moment of teardown
        hit += 1
        assert proc.returncode == 128 + sig, shown
        assert f"Stopped by {sig.name}" in stderr, shown
    assert hit, f"{name} always finished before {sig.name}; lengthen its work"


def test_sigkill_leftovers_of_triton_repo_are_removed_by_the_next_run(valid, tmp_path):
    """A run killed by SIGKILL mid-staging leaves ``.NAME.<pid>-<host>.*.tmp``; the next run
    removes it (a live writer's staging is never touched)."""
    repo = tmp_path / "repo"
    killed = 0
    for delay in (1.0, 2.0, 3.0, 4.0):
        proc = start(["triton-repo", valid["onnx"], "--output", str(repo), "--kind", "cpu",
                      "--force"], tmp_path)  # fmt: skip
        time.sleep(delay)
        if proc.poll() is None:
            proc.kill()
            killed += 1
        proc.communicate(timeout=60)
    from deploy_ran.fileio import owner_tag

    # and one staging folder as a killed run leaves it, whatever the timing above did
    dead = 2**22 + 12345
    while True:
        try:
            os.kill(dead, 0)
            dead += 1
        except ProcessLookupError:
            break
        except PermissionError:
            dead += 1
    host = owner_tag().split("-", 1)[1]
    repo.mkdir(exist_ok=True)
    stale = repo / f".m.{dead}-{host}.abcd1234.tmp"
    (stale / "1").mkdir(parents=True)
    (stale / "1" / "model.onnx").write_bytes(b"x" * 1000)
    other = repo / f".other.{dead}-{host}.abcd1234.tmp"
    other.mkdir()
    live = repo / f".m.{os.getpid()}-{host}.live1234.tmp"
    live.mkdir()
    proc = start(["triton-repo", valid["onnx"], "--output", str(repo), "--kind", "cpu", "--force"],
                 tmp_path)  # fmt: skip
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert not stale.exists() and not other.exists(), sorted(os.listdir(repo))
    assert live.exists(), "a live writer's staging folder must be kept"
    live.rmdir()
    assert not _leftovers(repo), _leftovers(repo)
