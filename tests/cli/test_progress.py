"""Progress on stderr: a line per step in a log (not minutes of silence), a bounded number of
lines per calibration phase, nothing under --json; bench reports each row as it is measured."""

from __future__ import annotations

import io
import json

from rich.console import Console
from typer.testing import CliRunner

import cli_render
from cli import app
from deploy_ran.bench import BenchSettings, run_benchmark


def _captured(monkeypatch) -> io.StringIO:
    buffer = io.StringIO()
    monkeypatch.setattr(cli_render, "err_console", Console(file=buffer, width=200))
    return buffer


def test_a_log_gets_one_line_per_step_and_a_few_per_phase(monkeypatch):
    buffer = _captured(monkeypatch)
    with cli_render.Progress("calibrating m.onnx", live=False) as progress:
        progress.say("exporting")
        progress.say("exporting")  # repeated: not printed again
        progress("checking")
        for done in range(0, 501):
            progress.phase("collect", done, 500)
        progress.done("ort fp32, batch 1: median 1.00 ms")
    lines = buffer.getvalue().splitlines()
    assert sum("calibrating m.onnx: exporting" in line for line in lines) == 1
    assert any("calibrating m.onnx: checking" in line for line in lines)
    collect = [line for line in lines if "calibrate (ONNX Runtime)" in line]
    assert "0/500" in collect[0] and "500/500" in collect[-1]
    assert 3 <= len(collect) <= 12  # the start, every tenth, the end: never one per image
    assert any("✓ ort fp32, batch 1" in line for line in lines)


def test_a_moving_counter_prints_now_and_then_not_once_per_batch(monkeypatch):
    buffer = _captured(monkeypatch)
    with cli_render.Progress("verifying", live=False) as progress:
        for done in range(1, 126):
            progress.say(f"reference {done}/125")
        progress.say("candidate 1/125")  # a new step: printed at once
    lines = buffer.getvalue().splitlines()
    assert sum("reference" in line for line in lines) <= 3
    assert any("candidate 1/125" in line for line in lines)


def test_quiet_progress_prints_nothing(monkeypatch):
    buffer = _captured(monkeypatch)
    with cli_render.Progress("benchmarking", quiet=True, live=False) as progress:
        progress.say("loading")
        progress.phase("collect", 1, 2)
        progress.done("a row")
    assert buffer.getvalue() == ""


def test_bench_hands_each_row_over_as_it_is_measured(tmp_path):
    seen = []
    result = run_benchmark(
        BenchSettings("ran56_cifar", checkpoint=tmp_path / "missing.pt", iterations=1),
        row_done=seen.append,
    )
    assert seen == result.rows and len(seen) == 2


def test_bench_json_stays_parseable_and_rows_are_reported_without_it(tmp_path):
    args = ["bench", "ran56_cifar", "--checkpoint", str(tmp_path / "missing.pt"),
            "--iterations", "1", "--no-plot", "-o", str(tmp_path / "b.json")]  # fmt: skip
    quiet = CliRunner().invoke(app, [*args, "--json"])
    assert quiet.exit_code == 0, quiet.output
    assert json.loads(quiet.stdout)["rows"]  # stdout is exactly the JSON
    assert "benchmarking" not in quiet.stderr
    loud = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert loud.exit_code == 0, loud.output
    assert "benchmarking ran56_cifar" in loud.stderr
    assert "torch fp32" in loud.stderr and "failed" in loud.stderr  # the row, as it finished
