"""`bench` takes every target its job allows, and reuses a matching FP32 export."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from cli import app
from deploy_ran.bench import BenchSettings, run_benchmark
from deploy_ran.bench.targets import resolve_bench_targets
from deploy_ran.errors import DeployRanError


def test_a_file_target_is_measured_as_it_is(cifar_onnx):
    plan = resolve_bench_targets(cifar_onnx, (), None, None)
    assert (plan.model, plan.image_size, plan.backends) == ("ran56_cifar", 32, ("ort",))
    assert not plan.export_reference  # no FP32 export beside a file target
    assert [t.text for t in plan.kinds] == [str(cifar_onnx)]


def test_a_served_target_runs_on_its_registered_backend():
    plan = resolve_bench_targets("triton+grpc://127.0.0.1:9/ran56_cifar", (), None, 32)
    assert (plan.model, plan.backends) == ("ran56_cifar", ("triton",))
    with pytest.raises(DeployRanError, match="records no model name"):
        resolve_bench_targets("triton://127.0.0.1:9/m", (), ("torch", "triton"), 32)
    with pytest.raises(DeployRanError, match="Cannot tell the input size"):
        resolve_bench_targets("triton://127.0.0.1:9/m", (), ("triton",), None)


def test_artifacts_of_another_size_are_refused(cifar_onnx):
    with pytest.raises(DeployRanError, match="takes 32 px inputs; this benchmark is at 64"):
        resolve_bench_targets("ran56_cifar", (cifar_onnx,), None, 64)


def test_bench_onnx_file_on_the_command_line(cifar_onnx, tmp_path):
    out = tmp_path / "b.json"
    args = ["bench", str(cifar_onnx), "--iterations", "2", "--warmup", "0", "--threads", "1"]
    result = CliRunner().invoke(app, [*args, "--output", str(out), "--no-plot"])
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())["rows"]
    assert [(r["backend"], r["status"], r["artifact"]) for r in rows] == [
        ("ort", "ran", str(cifar_onnx))
    ]


def test_bench_model_name_reuses_a_matching_export_in_workdir(
    cifar_onnx, cifar_checkpoint, tmp_path
):
    shutil.copy(cifar_onnx, tmp_path / "ran56_cifar.onnx")
    before = (tmp_path / "ran56_cifar.onnx").read_bytes()
    result = run_benchmark(
        BenchSettings(
            "ran56_cifar",
            backends=["ort"],
            checkpoint=cifar_checkpoint,
            workdir=tmp_path,
            iterations=1,
            warmup=0.0,
            threads=1,
            plot=False,
        )  # fmt: skip
    )
    assert any("FP32 ONNX reused" in n for n in result.notes), result.notes
    assert [r.status for r in result.rows] == ["ran"]
    assert (tmp_path / "ran56_cifar.onnx").read_bytes() == before


def test_bench_model_name_reuses_a_matching_export_in_the_current_folder(
    cifar_onnx, cifar_checkpoint, tmp_path, monkeypatch
):
    """`export NAME` then `bench NAME` in the same folder: no second export, nothing rewritten;
    a file that differs (another size) is left alone and the export goes to a temporary folder."""
    shutil.copy(cifar_onnx, tmp_path / "ran56_cifar.onnx")
    before = (tmp_path / "ran56_cifar.onnx").read_bytes()
    monkeypatch.chdir(tmp_path)
    common = dict(
        backends=["ort"], checkpoint=cifar_checkpoint, iterations=1, warmup=0.0, threads=1,
        plot=False,
    )  # fmt: skip
    reused = run_benchmark(BenchSettings("ran56_cifar", **common))
    assert "FP32 ONNX reused: ran56_cifar.onnx (its metadata matches the request)" in reused.notes
    assert reused.rows[0].artifact == "ran56_cifar.onnx"
    other = run_benchmark(BenchSettings("ran56_cifar", image_size=16, **common))
    assert any("exported by bench" in n for n in other.notes), other.notes
    assert other.rows[0].artifact != "ran56_cifar.onnx"
    assert (tmp_path / "ran56_cifar.onnx").read_bytes() == before


def test_bench_an_engine_target(cifar_onnx, tmp_path, monkeypatch):
    """`bench X.plan`: the engine alone, on its own device (CUDA; the stand-in's host buffers
    here). The stand-in is ONNX Runtime behind TensorRT's API: this checks the glue, not TensorRT."""
    from deploy_ran.runners.trt_runner import TrtRunner
    from exporters.tensorrt import EngineBuildOptions, build_engine
    from tests.trt_standin import install

    install(monkeypatch, "11.4.0.106", host_memory=True)
    monkeypatch.setitem(TrtRunner.__init__.__kwdefaults__, "_host_buffers", True)
    plan = tmp_path / "m.plan"
    build_engine(cifar_onnx, plan, EngineBuildOptions(min_batch=1, opt_batch=1, max_batch=2))
    settings = BenchSettings(plan, iterations=1, warmup=0.0, threads=1, plot=False)
    result = run_benchmark(settings)
    assert (result.model, [(r.backend, r.status) for r in result.rows]) == (
        "ran56_cifar",
        [("trt", "ran")],
    )
    # An engine never runs on the CPU: asked to, its row is skipped and says why.
    on_cpu = run_benchmark(BenchSettings(plan, device="cpu", iterations=1, warmup=0.0, plot=False))
    assert on_cpu.rows[0].status == "skipped" and "NVIDIA GPU" in on_cpu.rows[0].reason
