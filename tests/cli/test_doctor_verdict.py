"""``doctor`` ends with a verdict and the next step, read from the environment it collected."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from cli import app
from deploy_ran.environment import diagnose

CPU_ONLY = {
    "cuda_available": "False",
    "onnxruntime_providers": ["CPUExecutionProvider"],
    "tensorrt": "not importable (No module named 'tensorrt')",
    "onnxslim": "0.1.98",
}


def test_cpu_only_host_is_ready_for_the_cpu_path_and_told_where_engines_are_built():
    d = diagnose(CPU_ONLY)
    assert "CPU path" in d["verdict"] and "no GPU" in d["verdict"]
    assert any("GPU host" in s for s in d["next_steps"])


def test_gpu_host_without_tensorrt_or_ort_gpu_is_told_what_to_install():
    d = diagnose({**CPU_ONLY, "cuda_available": "True"})
    assert "missing" in d["verdict"]
    assert any("onnxruntime-gpu" in s for s in d["next_steps"])
    assert any("TensorRT" in s for s in d["next_steps"])


def test_complete_gpu_host_is_ready_for_everything():
    env = {
        **CPU_ONLY,
        "cuda_available": "True",
        "onnxruntime_providers": ["CUDAExecutionProvider", "CPUExecutionProvider"],
        "tensorrt": "10.16.0",
    }
    d = diagnose(env)
    assert d["verdict"].startswith("Ready for everything") and d["next_steps"] == []
    assert any("TensorRT 10.16.0" in w for w in d["works"])


def test_missing_onnxslim_is_a_next_step():
    assert any(
        "onnxslim" in s for s in diagnose({**CPU_ONLY, "onnxslim": "not installed"})["next_steps"]
    )


def test_doctor_json_carries_the_verdict():
    result = CliRunner().invoke(app, ["doctor", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["verdict"] == diagnose(out)["verdict"] and "next_steps" in out
