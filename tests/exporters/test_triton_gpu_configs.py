"""triton-repo for GPU backends: a plan's profile bounds max_batch_size and the warm-up, the ORT
TensorRT accelerator carries its caches, profile and workspace, instances load on the host they
are written for, CPU instances get thread counts, and the queue is bounded."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from exporters.triton import RepoOptions, write_repository
from exporters.triton.artifact import TritonRepoError

_spec = importlib.util.spec_from_file_location(
    "triton_helpers", Path(__file__).resolve().parents[1] / "test_triton.py"
)
helpers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(helpers)


def _warmups(cfg) -> list[int]:
    return [w.batch_size for w in cfg.model_warmup]


def test_plan_with_profile_minimum_8_refuses_max_batch_4_and_warms_up_inside(tmp_path):
    source = helpers.tiny_onnx(tmp_path / "tiny.int8.onnx", precision="int8")
    plan = helpers.fake_plan(tmp_path, source=source, profile=(8, 16, 32))
    with pytest.raises(TritonRepoError, match="below the engine's profile minimum batch 8") as err:
        write_repository([plan], tmp_path / "r1", RepoOptions(max_batch=4))
    assert "--max-batch 8 to 32" in err.value.hint
    assert not (tmp_path / "r1").exists()
    write_repository([plan], tmp_path / "r2", RepoOptions())
    cfg = helpers.read_config(tmp_path / "r2", "tiny_int8")
    assert cfg.max_batch_size == 32
    assert _warmups(cfg) == [8, 16]  # the profile's min and opt, never batch 1
    assert cfg.instance_group[0].kind == 1  # KIND_GPU: a plan runs nowhere else
    write_repository([plan], tmp_path / "r3", RepoOptions(max_batch=8))
    assert _warmups(helpers.read_config(tmp_path / "r3", "tiny_int8")) == [8]  # opt 16 > max 8


def test_plan_profile_from_one_warms_up_at_one_and_opt(tmp_path):
    source = helpers.tiny_onnx(tmp_path / "tiny.int8.onnx", precision="int8")
    plan = helpers.fake_plan(tmp_path, source=source)  # profile 1/8/16
    write_repository([plan], tmp_path / "repo", RepoOptions())
    assert _warmups(helpers.read_config(tmp_path / "repo", "tiny_int8")) == [1, 8]


def test_tensorrt_accelerator_has_cache_profile_and_workspace(tmp_path):
    path = helpers.tiny_onnx(tmp_path / "tiny.fp16.onnx", precision="fp16")
    options = RepoOptions(
        tensorrt_accelerator=True, max_batch=4, trt_cache_path="/cache/trt", trt_workspace_mb=512
    )
    write_repository([path], tmp_path / "repo", options)
    cfg = helpers.read_config(tmp_path / "repo", "tiny_fp16")
    (accel,) = cfg.optimization.execution_accelerators.gpu_execution_accelerator
    params = dict(accel.parameters)
    assert params["precision_mode"] == "FP16"
    assert params["trt_engine_cache_path"] == params["trt_timing_cache_path"] == "/cache/trt"
    assert params["max_workspace_size_bytes"] == str(512 * 1024 * 1024)
    # opt is 8 clipped to max_batch_size: every shape the server can batch is in the profile
    assert [params[f"trt_profile_{k}_shapes"] for k in ("min", "opt", "max")] == [
        "input:1x3x8x8",
        "input:4x3x8x8",
        "input:4x3x8x8",
    ]
    assert cfg.instance_group[0].kind == 1  # KIND_GPU
    with pytest.raises(TritonRepoError, match="apply to --tensorrt-accelerator"):
        RepoOptions(trt_cache_path="/x").check()


def test_default_kind_is_auto_and_cpu_instances_get_threads(tmp_path):
    path = helpers.tiny_onnx(tmp_path / "tiny.onnx")
    write_repository([path], tmp_path / "auto", RepoOptions())
    cfg = helpers.read_config(tmp_path / "auto", "tiny")
    assert cfg.instance_group[0].kind == 0  # KIND_AUTO: loads on a host without a GPU
    assert "intra_op_thread_count" not in cfg.parameters
    write_repository([path], tmp_path / "cpu", RepoOptions(kind="cpu", instances=2, threads=3))
    cfg = helpers.read_config(tmp_path / "cpu", "tiny")
    assert cfg.instance_group[0].kind == 2 and cfg.instance_group[0].count == 2  # KIND_CPU
    assert cfg.parameters["intra_op_thread_count"].string_value == "3"
    assert cfg.parameters["inter_op_thread_count"].string_value == "1"
    with pytest.raises(TritonRepoError, match="--threads"):
        RepoOptions(kind="gpu", threads=2).check()
    plan = helpers.fake_plan(tmp_path, source=helpers.tiny_onnx(tmp_path / "tiny.int8.onnx"))
    with pytest.raises(TritonRepoError, match="--threads"):
        write_repository([plan], tmp_path / "plan", RepoOptions(threads=2))


def test_queue_is_bounded(tmp_path):
    path = helpers.tiny_onnx(tmp_path / "tiny.onnx")
    write_repository([path], tmp_path / "repo", RepoOptions(max_queue_size=17))
    policy = helpers.read_config(tmp_path / "repo", "tiny").dynamic_batching.default_queue_policy
    assert policy.max_queue_size == 17 and policy.timeout_action == 0  # REJECT
    write_repository([path], tmp_path / "default", RepoOptions())
    default = helpers.read_config(tmp_path / "default", "tiny").dynamic_batching
    assert default.default_queue_policy.max_queue_size == RepoOptions().max_queue_size > 0
    with pytest.raises(TritonRepoError, match="--max-queue-size"):
        RepoOptions(max_queue_size=0).check()


@pytest.mark.parametrize(
    "extra, reason",
    [
        (["--trt-cache-path", "/c"], "--trt-cache-path applies to --tensorrt-accelerator only"),
        (["--trt-workspace", "64"], "--trt-workspace applies to --tensorrt-accelerator only"),
        (["--kind", "gpu", "--threads", "2"], "--threads"),
        (["--kind", "cpu", "--tensorrt-accelerator"], "--kind gpu or auto"),
        (["--max-queue-size", "0"], "--max-queue-size"),
    ],
)
def test_triton_repo_flags_that_do_not_apply_are_refused(tmp_path, extra, reason):
    from typer.testing import CliRunner

    from cli import app

    path = helpers.tiny_onnx(tmp_path / "tiny.onnx")
    args = ["triton-repo", str(path), "--output", str(tmp_path / "repo"), *extra]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 2, result.output
    assert reason in " ".join(result.output.split())
    assert not (tmp_path / "repo").exists()
