"""scripts/gpu_lease.py dry-run on the CPU with a fake $OUT: carried parts checked before anything
starts (exit 12), no GPU (10) and a broken probe (11) told apart, and a step that times out still
leaves the earlier steps' results in $OUT."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gpu_lease.py"


@pytest.fixture(scope="module")
def lease():
    spec = importlib.util.spec_from_file_location("gpu_lease", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_lease"] = module
    spec.loader.exec_module(module)
    return module


def _run(tmp_path: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(tmp_path / "OUT"), "--work",
         str(tmp_path / "work"), "--python", sys.executable, *args],
        env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def _results(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "OUT" / "lease_results.json").read_text())


def test_bad_part_stops_before_anything_starts(lease, tmp_path):
    wheel = tmp_path / "demo-1.0-py3-none-any.whl"
    wheel.write_bytes(os.urandom(5000))
    manifest = lease.pack([wheel], tmp_path / "carried", 3)
    saved = json.loads(manifest.read_text())
    assert [len(w["parts"]) for w in saved["wheels"]] == [3]
    assert lease.check_parts(manifest)[0]["name"] == wheel.name
    part = tmp_path / "carried" / saved["wheels"][0]["parts"][1]["path"]
    part.write_bytes(b"x" + part.read_bytes()[1:])  # one byte changed
    (tmp_path / "carried" / saved["wheels"][0]["parts"][2]["path"]).unlink()
    done = _run(tmp_path, "--manifest", str(manifest), "--device", "cpu")
    assert done.returncode == lease.EXIT_BAD_PART, done.stderr
    assert "wrong sha256" in done.stderr and "is missing" in done.stderr
    stopped = _results(tmp_path)
    assert stopped["stopped"]["exit_code"] == 12 and stopped["steps"] == []
    assert not (tmp_path / "work" / "site").exists()  # nothing installed


def test_no_gpu_and_broken_probe_are_different(lease, tmp_path):
    no_gpu = _run(tmp_path, "--device", "cuda", "--steps", "probe")
    assert no_gpu.returncode == lease.EXIT_NO_GPU, no_gpu.stderr
    assert "no CUDA GPU" in no_gpu.stderr and "SKIPPED" not in no_gpu.stderr
    assert (
        json.loads((tmp_path / "OUT" / "environment.json").read_text())["cuda_available"] is False
    )
    broken_python = tmp_path / "python-broken"
    broken_python.write_text("#!/bin/sh\necho 'ImportError: libcudart.so.13' >&2\nexit 1\n")
    broken_python.chmod(0o755)
    broken = _run(tmp_path, "--device", "cuda", "--steps", "probe", "--python", str(broken_python))
    assert broken.returncode == lease.EXIT_BROKEN_PROBE, broken.stderr
    assert "probe itself failed" in broken.stderr and "libcudart" in broken.stderr
    assert "no CUDA GPU" not in broken.stderr


def test_a_step_that_times_out_leaves_the_earlier_results(lease, tmp_path):
    done = _run(
        tmp_path, "--device", "cpu", "--steps", "probe,sleep,sleep", "--timeout", "sleep=2",
        "--budget", "90",
    )  # fmt: skip
    assert done.returncode == lease.EXIT_FAILED, done.stderr
    results = _results(tmp_path)
    assert [(s["name"], s["status"]) for s in results["steps"]] == [
        ("probe", "ok"),
        ("sleep", "timeout"),
        ("sleep", "timeout"),
    ]
    assert 1.5 < results["steps"][1]["seconds"] < 15
    assert "killed after" in results["steps"][1]["log_tail"]
    assert (tmp_path / "OUT" / "environment.json").is_file()


def test_a_spent_budget_skips_the_step_and_says_so(lease, tmp_path):
    done = _run(tmp_path, "--device", "cpu", "--steps", "sleep", "--budget", "12")
    assert done.returncode == lease.EXIT_FAILED
    (step,) = _results(tmp_path)["steps"]
    assert step["status"] == "no time"


def test_results_are_small_and_artifacts_stay_out(lease, tmp_path):
    work, out = tmp_path / "work", tmp_path / "OUT"
    (work / "speed").mkdir(parents=True)
    out.mkdir()
    (work / "speed" / "gpu_speed_x.json").write_text("{}")
    (work / "speed" / "big.json").write_bytes(b" " * (lease.MAX_RESULT_BYTES + 1))
    (work / "speed" / "model.onnx").write_bytes(b"\0" * 10)
    step = lease.StepResult("speed", "ok")
    lease.collect_results(step, work, out)
    assert step.results == ["gpu_speed_x.json"]
    assert step.left_out and "big.json" in step.left_out[0]
    assert sorted(p.name for p in out.iterdir()) == ["gpu_speed_x.json"]
    assert _run(tmp_path, "--work", str(out / "w")).returncode == 2  # --work inside $OUT


@pytest.mark.slow
def test_dry_run_end_to_end_on_the_cpu(lease, tmp_path):
    """Probe, export (FP32, FP16, INT8), checks and speed on ran56_cifar at batch 1, on the CPU,
    within a small budget; every step's results land in the fake $OUT."""
    done = _run(
        tmp_path, "--device", "cpu", "--model", "ran56_cifar", "--batches", "1",
        "--steps", "probe,export,check,speed", "--speed-groups", "independent",
        "--timeout", "export=240", "--timeout", "speed=300", "--budget", "580",
        timeout=600,
    )  # fmt: skip
    results = _results(tmp_path)
    status = {s["name"]: s["status"] for s in results["steps"]}
    assert status == {"probe": "ok", "export": "ok", "check": "ok", "speed": "ok"}, (
        done.stdout + done.stderr + json.dumps(results["steps"], indent=1)[-4000:]
    )
    out = tmp_path / "OUT"
    check = json.loads((out / "gpu_check.json").read_text())
    assert {r["case"] for r in check["rows"]} >= {"ort cpu.fp32", "ort cpu.fp16", "ort cpu.int8"}
    assert any(p.name.startswith("gpu_speed_ran56_cifar") for p in out.iterdir())
    assert not list(out.rglob("*.onnx"))
    assert all(p.stat().st_size <= lease.MAX_RESULT_BYTES for p in out.iterdir())


def test_sigterm_kills_the_step_and_keeps_the_results(lease, tmp_path):
    """The device tool stopping the call: the running step's process group dies, the step is
    recorded as killed and the results file is written before the exit (143)."""
    import signal
    import time

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--out", str(tmp_path / "OUT"), "--work",
         str(tmp_path / "work"), "--python", sys.executable, "--device", "cpu",
         "--steps", "sleep", "--budget", "300"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    log = tmp_path / "work" / "logs" / "sleep.log"
    deadline = time.monotonic() + 60
    while not log.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    results = _results(tmp_path)
    assert [(s["name"], s["status"]) for s in results["steps"]] == [("sleep", "killed")]
    assert results["stopped"]["exit_code"] == 143


def test_a_step_that_cannot_start_fails_alone(lease, tmp_path):
    done = _run(tmp_path, "--device", "cpu", "--steps", "sleep,sleep", "--python",
                str(tmp_path / "no-such-python"), "--timeout", "sleep=1", "--budget", "60")  # fmt: skip
    assert done.returncode == lease.EXIT_FAILED, done.stderr
    assert [s["status"] for s in _results(tmp_path)["steps"]] == ["failed", "failed"]
