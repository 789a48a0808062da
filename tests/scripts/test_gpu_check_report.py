"""scripts/gpu_check_report.py: every exception ends its own case only, the status comes from
the exception's type (never its message), and the report is written whatever happens."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from onnxruntime.capi.onnxruntime_pybind11_state import Fail

from deploy_ran import runners
from deploy_ran.runners.base import BackendUnavailableError, RunnerError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def report_script():
    spec = importlib.util.spec_from_file_location(
        "gpu_check_report", ROOT / "scripts" / "gpu_check_report.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_status_by_type_not_by_message(report_script):
    # "cannot" contains "not": the old message test called this real failure "skipped".
    assert (
        report_script.classify(RunnerError("TensorRT provider cannot capture a graph")) == "failed"
    )
    assert report_script.classify(BackendUnavailableError("provider available")) == "skipped"
    assert report_script.classify(Fail("[ONNXRuntimeError] : 1 : FAIL : not")) == "failed"
    assert report_script.classify(RuntimeError("CUDA error: not ready")) == "failed"
    text = report_script.describe_exception(RuntimeError("boom\nsecond line"))
    assert text == "RuntimeError: boom"


class _Runner:
    """A stand-in runner (no GPU here): identity on its input, or an exception per target."""

    output_names = ["logits"]

    def __init__(self, size: int = 8) -> None:
        self.input_spec = [type("Spec", (), {"shape": (None, 3, size, size)})()]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def coerce(self, x):
        return x

    def run(self, x):
        return {"logits": np.asarray(x, np.float32).reshape(len(x), -1)[:, :4]}


def _work(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    for name in ("m.onnx", "m.fp16.onnx", "m.int8.onnx", "m.fp32.plan"):
        (work / name).write_bytes(b"")
    return work


def test_every_case_is_recorded_whatever_it_raises(report_script, tmp_path, monkeypatch):
    work = _work(tmp_path)
    raised = {
        ("m.fp16.onnx", "cuda"): Fail("[ONNXRuntimeError] : 1 : FAIL : cudnn"),
        ("m.int8.onnx", "tensorrt"): RunnerError("the TensorRT provider cannot replay it"),
        ("m.fp32.plan", None): RuntimeError("CUDA error: an illegal memory access"),
    }

    def fake_load(target, *, device, cuda_graph=False, providers=None, **_):
        if str(target) == "m":
            return _Runner()
        key = (Path(target).name, providers)
        if key in raised:
            raise raised[key]
        if providers == "tensorrt":
            raise BackendUnavailableError("TensorRT provider not available")
        return _Runner()

    monkeypatch.setattr(runners, "load_runner", fake_load)
    out = tmp_path / "results" / "gpu_check.json"
    result = report_script.check(work, "m", device="cuda", output=out)
    saved = json.loads(out.read_text())
    assert saved["rows"] == json.loads(json.dumps(result["rows"]))
    status = {r["case"]: r["status"] for r in saved["rows"]}
    assert status["torch eager fp32"] == "reference"
    assert status["ort cuda.fp32"] == "ran"
    assert status["ort cuda.fp16"] == "failed"
    assert status["ort tensorrt.fp32"] == "skipped"
    assert status["ort tensorrt.int8"] == "failed"  # a real failure, though its text has "not"
    assert status["trt m.fp32.plan"] == "failed"
    reasons = {r["case"]: r.get("reason", "") for r in saved["rows"]}
    assert reasons["trt m.fp32.plan"].startswith("RuntimeError: CUDA error")
    assert reasons["ort cuda.fp16"].startswith("Fail:")
    ran = next(r for r in saved["rows"] if r["case"] == "ort cuda.fp32")
    assert ran["graph_vs_plain_max_abs"] == 0.0 and ran["rel_l2_vs_eager"] == 0.0


def test_a_failing_reference_still_writes_the_report(report_script, tmp_path, monkeypatch):
    work = _work(tmp_path)

    def fake_load(target, **_):
        if str(target) == "m":
            raise MemoryError("out of memory building the reference")
        return _Runner(32)

    monkeypatch.setattr(runners, "load_runner", fake_load)
    out = tmp_path / "gpu_check.json"
    assert report_script.main(["check", str(work), "m", "--device", "cpu", "--json", str(out)]) == 1
    rows = json.loads(out.read_text())["rows"]
    assert rows[0] == {
        "case": "torch eager fp32",
        "status": "failed",
        "reason": "MemoryError: out of memory building the reference",
    }
    # On the CPU: CPU-provider cases, no graphs, no reference to compare with.
    assert [r["case"] for r in rows[1:4]] == ["ort cpu.fp32", "ort cpu.fp16", "ort cpu.int8"]
    assert all(r["status"] == "ran" and "rel_l2_vs_eager" not in r for r in rows[1:4])
    assert "graph_vs_plain_max_abs" not in rows[1]
