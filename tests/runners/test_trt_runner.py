"""The engine runner's glue, run against the TensorRT stand-in (ONNX Runtime underneath).

What this proves: deserialization and its errors, the sidecar checks, I/O discovery, profile
checks, ``set_input_shape``/``set_tensor_address``/``execute_async_v3`` with real buffer
addresses, output shapes from the context, and the plumbing into verify, bench and infer. What it
cannot prove: TensorRT's numerics or speed (scripts/gpu_check.sh does that on a GPU host).
"""

from __future__ import annotations

import json
import sys

import numpy as np
import onnxruntime as ort
import pytest

from deploy_ran.runners import load_runner
from deploy_ran.runners.base import BackendUnavailableError, RunnerError
from deploy_ran.runners.trt_runner import TrtRunner
from deploy_ran.trt_compat import GpuInfo, compatibility_problems, sidecar_path
from exporters.tensorrt import EngineBuildOptions, build_engine
from tests.trt_standin import SUPPORTED_VERSIONS, install


@pytest.fixture
def host_buffers(monkeypatch):
    """Every TrtRunner in the test uses host buffers (the stand-in's "device" is the CPU)."""
    monkeypatch.setitem(TrtRunner.__init__.__kwdefaults__, "_host_buffers", True)


def _build(cifar_onnx, tmp_path, **options):
    plan = tmp_path / "m.plan"
    build_engine(
        cifar_onnx,
        plan,
        EngineBuildOptions(**{"min_batch": 1, "opt_batch": 2, "max_batch": 4, **options}),
    )
    return plan


def _ort(onnx_path, x):
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_runner_runs_the_engine_glue(version, cifar_onnx, tmp_path, monkeypatch, host_buffers):
    install(monkeypatch, version, host_memory=True)
    plan = _build(cifar_onnx, tmp_path)
    x = np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype(np.float32)
    with load_runner(plan) as runner:
        assert (
            runner.backend == "trt" and runner.precision == "fp32" and runner.model == "ran56_cifar"
        )
        assert [str(s) for s in runner.input_spec] == ["input: float32[batch, 3, 32, 32]"]
        assert runner.output_names == ["logits"]
        out = runner.run(x)["logits"]
        again = runner.run(x[:1])["logits"]  # another shape: new buffers, new addresses
        described = runner.describe()
    np.testing.assert_allclose(out, _ort(cifar_onnx, x), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(again, out[:1], rtol=1e-6, atol=1e-6)
    assert described["profile"]["input"] == {"min": [1, 3, 32, 32], "max": [4, 3, 32, 32]}


def test_batch_outside_the_profile(cifar_onnx, tmp_path, monkeypatch, host_buffers):
    install(monkeypatch, "11.4.0.106", host_memory=True)
    plan = _build(cifar_onnx, tmp_path)
    with (
        load_runner(plan) as runner,
        pytest.raises(RunnerError, match="outside the engine's profile") as info,
    ):
        runner.run(np.zeros((5, 3, 32, 32), np.float32))
    assert "--max-batch" in info.value.hint


def test_plan_from_another_tensorrt_version(cifar_onnx, tmp_path, monkeypatch, host_buffers):
    install(monkeypatch, "10.16.1.11", host_memory=True)
    plan = _build(cifar_onnx, tmp_path)
    side = json.loads(sidecar_path(plan).read_text())
    side["tensorrt_version"] = "10.3.0"
    sidecar_path(plan).write_text(json.dumps(side))
    with pytest.raises(RunnerError, match="built with TensorRT 10.3.0") as info:
        load_runner(plan)
    assert "build-engine" in info.value.hint
    side["build_options"]["version_compatible"] = True  # a version-compatible plan is fine
    sidecar_path(plan).write_text(json.dumps(side))
    load_runner(plan).close()


def test_plan_from_another_gpu():
    side = {
        "tensorrt_version": "10.16.1.11",
        "gpu": {"name": "NVIDIA A100", "compute_capability": "8.0"},
        "build_options": {"hardware_compatibility": "none"},
    }
    h200 = GpuInfo("NVIDIA H200", "9.0")
    (problem,) = compatibility_problems(side, "10.16.1.11", h200)
    assert "8.0" in problem and "NVIDIA H200" in problem
    side["build_options"]["hardware_compatibility"] = "ampere_plus"
    assert compatibility_problems(side, "10.16.1.11", h200) == []
    assert compatibility_problems(side, "11.4.0.106", h200)  # other major version


def test_corrupt_and_replaced_plans(cifar_onnx, tmp_path, monkeypatch, host_buffers):
    install(monkeypatch, "11.4.0.106", host_memory=True)
    plan = _build(cifar_onnx, tmp_path)
    plan.write_bytes(plan.read_bytes()[:100])  # truncated: no longer what the sidecar describes
    with pytest.raises(RunnerError, match="does not match its sidecar"):
        load_runner(plan)
    sidecar_path(plan).unlink()  # a foreign engine without sidecar: TensorRT itself rejects it
    with pytest.raises(RunnerError, match="cannot load"):
        load_runner(plan)
    garbage = tmp_path / "x.plan"
    garbage.write_bytes(b"\x00" * 64)
    with pytest.raises(RunnerError, match="not a valid plan"):
        load_runner(garbage)
    bad_side = tmp_path / "y.plan"
    bad_side.write_bytes(b"")
    sidecar_path(bad_side).write_text("{not json")
    with pytest.raises(Exception, match="not valid JSON"):
        load_runner(bad_side)


def test_missing_tensorrt_is_backend_unavailable(cifar_onnx, tmp_path, monkeypatch):
    import sys

    install(monkeypatch, "11.4.0.106")
    plan = _build(cifar_onnx, tmp_path)
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(BackendUnavailableError, match="TensorRT is not usable"):
        load_runner(plan)


def test_verify_bench_and_infer_take_an_engine(
    cli, cifar_onnx, cifar_checkpoint, image_folder, tmp_path, monkeypatch, host_buffers
):
    install(monkeypatch, "10.16.1.11", host_memory=True)
    plan = _build(cifar_onnx, tmp_path)
    verified = cli(
        ["verify", str(cifar_onnx), str(plan), "-n", "4", "--batch", "2", "--threads", "1"]
    )
    assert verified.exit_code == 0, verified.output
    # Eager PyTorch against the engine: size, options and weights' hash come from the sidecar.
    eager = cli(
        [
            "verify",
            "ran56_cifar",
            str(plan),
            "--checkpoint",
            str(cifar_checkpoint),
            "-n",
            "4",
            "--batch",
            "2",
            "--threads",
            "1",
        ],
    )
    assert eager.exit_code == 0, eager.output
    missing = cli(["verify", "ran56_cifar", str(plan), "-n", "2", "--batch", "2", "--threads", "1"])
    assert missing.exit_code == 2 and "was exported from a checkpoint" in missing.output
    preds = tmp_path / "preds.jsonl"
    ort_preds = tmp_path / "ort.jsonl"
    for target, out in ((plan, preds), (cifar_onnx, ort_preds)):
        result = cli(
            [
                "infer",
                str(target),
                "--images",
                str(image_folder),
                "--batch",
                "4",
                "--workers",
                "0",
                "--output",
                str(out),
                "--threads",
                "1",
            ],
        )
        assert result.exit_code == 0, result.output
    ours = [json.loads(line) for line in preds.read_text().splitlines()]
    theirs = [json.loads(line) for line in ort_preds.read_text().splitlines()]
    assert len(ours) == len(theirs) == 14  # 12 images + 2 unreadable ones, recorded with errors
    for a, b in zip(ours, theirs):
        assert a["path"] == b["path"] and ("error" in a) == ("error" in b)
        if "error" not in a:
            assert [t["class"] for t in a["topk"]] == [t["class"] for t in b["topk"]]
            np.testing.assert_allclose(
                [t["prob"] for t in a["topk"]], [t["prob"] for t in b["topk"]], atol=1e-5
            )


def test_bench_runs_an_engine_row(
    cifar_onnx, cifar_checkpoint, tmp_path, monkeypatch, host_buffers
):
    from deploy_ran.bench import BenchSettings, run_benchmark

    install(monkeypatch, "11.4.0.106", host_memory=True)
    plan = _build(cifar_onnx, tmp_path)
    result = run_benchmark(
        BenchSettings(
            "ran56_cifar",
            backends=["ort", "trt"],
            artifacts=[cifar_onnx, plan],
            batch_sizes=[1, 2],
            warmup=0.0,
            iterations=2,
            threads=1,
            checkpoint=cifar_checkpoint,
            plot=False,
        )
    )
    trt_rows = [r for r in result.rows if r.backend == "trt"]
    assert [r.batch_size for r in trt_rows] == [1, 2]
    assert all(r.status == "ran" and r.latency for r in trt_rows), [
        (r.status, r.reason) for r in trt_rows
    ]
    # Without TensorRT the engine row is skipped with the reason, not a crash.
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    skipped = run_benchmark(
        BenchSettings(
            "ran56_cifar",
            backends=["trt"],
            artifacts=[plan],
            batch_sizes=[1],
            warmup=0.0,
            iterations=1,
            threads=1,
            checkpoint=cifar_checkpoint,
            plot=False,
        )
    )
    (row,) = skipped.rows
    assert row.status == "skipped" and "TensorRT" in row.reason
