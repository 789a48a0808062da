"""scripts/gpu_check.sh on a host without a GPU (exit 10 with the reason) and its report
script on a fixture result (the GPU half cannot run here)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

from tests.paths import ROOT


def _report_module():
    spec = importlib.util.spec_from_file_location(
        "gpu_check_report", ROOT / "scripts" / "gpu_check_report.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_check_says_no_gpu_without_one(tmp_path):
    """No GPU is its own exit code (10) and message, never a SKIPPED with exit 0."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--out", str(tmp_path / "out"),
         "--work", str(tmp_path / "work"), "--python", sys.executable],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 10, result.stderr
    assert "no CUDA GPU" in result.stderr and "SKIPPED" not in result.stderr
    assert not (tmp_path / "work" / "ran92.onnx").exists()  # nothing was started


def test_report_from_a_fixture(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "benchmarks").mkdir()
    env = {
        "cpu": "Test CPU",
        "gpus": ["NVIDIA H200"],
        "torch": "2.11.0",
        "onnxruntime": "1.31.1",
        "tensorrt": "not installed",
    }
    rows = [
        {"case": "torch eager fp32", "status": "reference"},
        {
            "case": "ort cuda.fp32",
            "status": "ran",
            "graph_vs_plain_max_abs": 0.0,
            "rel_l2_vs_eager": 3e-7,
        },
        {"case": "ort tensorrt.fp32", "status": "skipped", "reason": "provider not installed"},
    ]
    (out / "gpu_check.json").write_text(
        json.dumps({"model": "ran56_cifar", "batches": [1, 8, 1], "rows": rows, "environment": env})
    )
    target = _report_module().report(out, benchmarks=tmp_path / "benchmarks")
    assert target.name == "gpu_check_ran56_cifar_test_nvidia-h200_torch2.11.0_ort1.31.1.json"
    saved = json.loads(target.read_text())
    assert saved["gpu_check"]["rows"] == rows and saved["bench"] is None
    printed = capsys.readouterr().out
    assert (
        "ort cuda.fp32" in printed and "provider not installed" in printed and "3.00e-07" in printed
    )
