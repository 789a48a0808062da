"""Engine build glue, run against the TensorRT stand-in of 10.3, 10.16 and 11.4.

The stand-in (tests/trt_standin) exposes exactly the API of each version and executes "engines"
with ONNX Runtime; these tests prove the build code's calls, options, errors and files, not
TensorRT's numerics or speed.
"""

from __future__ import annotations

import json

import onnx
import pytest
from onnx import helper

from deploy_ran.errors import DeployRanError
from deploy_ran.trt_compat import EXIT_NO_TENSORRT, EngineError, TensorRTUnavailable
from exporters.tensorrt import (
    EngineBuildOptions,
    build_engine,
    check_profile,
    onnx_input,
    read_sidecar,
)
from tests.trt_standin import SUPPORTED_VERSIONS, install

VERSIONS = list(SUPPORTED_VERSIONS)


@pytest.mark.parametrize("version", VERSIONS)
def test_build_writes_plan_and_sidecar(version, cifar_onnx, tmp_path, monkeypatch):
    trt = install(monkeypatch, version)
    plan = tmp_path / "m.plan"
    cache = tmp_path / "timing.cache"
    result = build_engine(
        cifar_onnx,
        plan,
        EngineBuildOptions(
            min_batch=1, opt_batch=4, max_batch=16, workspace_mib=512, timing_cache=str(cache)
        ),
    )
    assert plan.exists() and result.sidecar == tmp_path / "m.plan.json"
    side = read_sidecar(plan)
    assert side["tensorrt_version"] == trt.__version__ and side["tensorrt_version"].endswith(
        "+standin"
    )
    assert side["model"] == "ran56_cifar" and side["precision"] == "fp32"
    assert side["input"]["profile"] == {
        "min": [1, 3, 32, 32],
        "opt": [4, 3, 32, 32],
        "max": [16, 3, 32, 32],
    }
    assert side["source_onnx"]["sha256"] and len(side["plan_sha256"]) == 64
    assert side["build_options"]["workspace_mib"] == 512
    header = json.loads(plan.read_bytes().split(b"\n")[1])
    # Strongly typed on every version: the flag is set where it exists (it does in all three).
    assert header["flags"] == 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    assert header["tf32"] is False  # TF32 off by default for meaningful FP32 parity
    # The timing cache is written, then loaded and updated by the next build.
    assert json.loads(cache.read_bytes())["builds"] == 1
    build_engine(cifar_onnx, tmp_path / "again.plan", EngineBuildOptions(timing_cache=str(cache)))
    assert json.loads(cache.read_bytes())["builds"] == 2


@pytest.mark.parametrize("version", VERSIONS)
def test_layer_info_report(version, cifar_onnx, tmp_path, monkeypatch):
    install(monkeypatch, version)
    result = build_engine(
        cifar_onnx, tmp_path / "m.plan", EngineBuildOptions(layer_info=True, allow_tf32=True)
    )
    assert result.layer_info.exists()
    info = json.loads(result.layer_info.read_text())
    # Fusion never gives one layer per ONNX node: the report is TensorRT's, counted as it comes.
    assert info["Layers"] and sum(result.layer_precisions.values()) == len(info["Layers"])
    assert set(result.layer_precisions) == {"fp32"}  # formats known: shapes were set
    header = json.loads((tmp_path / "m.plan").read_bytes().split(b"\n")[1])
    assert header["detailed"] is True and header["tf32"] is True


@pytest.mark.parametrize("version", VERSIONS)
def test_same_compute_capability_needs_10_16(version, cifar_onnx, tmp_path, monkeypatch):
    install(monkeypatch, version)
    options = EngineBuildOptions(hardware_compatibility="same_cc")
    if version == "10.3.0":
        with pytest.raises(DeployRanError, match="10.16 or newer"):
            build_engine(cifar_onnx, tmp_path / "m.plan", options)
        assert not (tmp_path / "m.plan").exists()
    else:
        build_engine(cifar_onnx, tmp_path / "m.plan", options)
        assert (tmp_path / "m.plan").exists()


def test_parser_error_names_node_and_op(tmp_path, monkeypatch):
    install(monkeypatch, "11.4.0.106")
    x = helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, ["batch", 3, 8, 8])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)
    node = helper.make_node("Fancy", ["input"], ["y"], name="fancy_0", domain="com.example")
    model = helper.make_model(
        helper.make_graph([node], "g", [x], [y]),
        opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("com.example", 1)],
    )
    path = tmp_path / "bad.onnx"
    onnx.save(model, path)
    with pytest.raises(EngineError) as info:
        build_engine(path, tmp_path / "bad.plan")
    assert "fancy_0" in str(info.value) and "op Fancy" in str(info.value)
    assert not (tmp_path / "bad.plan").exists() and not (tmp_path / "bad.plan.json").exists()


def test_profile_checks(cifar_onnx, export_cache):
    inp = onnx_input(onnx.load(cifar_onnx, load_external_data=False))
    assert check_profile(inp, EngineBuildOptions())[1] == (8, 3, 32, 32)
    assert check_profile(inp, EngineBuildOptions(max_batch=4))[1] == (4, 3, 32, 32)
    with pytest.raises(DeployRanError, match="not ordered"):
        check_profile(inp, EngineBuildOptions(min_batch=8, max_batch=4))
    static = export_cache("ran56_cifar", static_batch=True, batch=2).path
    sinp = onnx_input(onnx.load(static, load_external_data=False))
    assert check_profile(sinp, EngineBuildOptions()) == ((2, 3, 32, 32),) * 3
    with pytest.raises(DeployRanError, match="static batch of 2"):
        check_profile(sinp, EngineBuildOptions(max_batch=8))


def test_bad_options_fail_before_tensorrt(cifar_onnx, tmp_path):
    with pytest.raises(DeployRanError, match="Optimization level"):
        build_engine(cifar_onnx, tmp_path / "m.plan", EngineBuildOptions(optimization_level=9))
    with pytest.raises(DeployRanError, match="does not exist"):
        build_engine(cifar_onnx, tmp_path / "no" / "m.plan")


def test_missing_tensorrt_is_exit_code_3(cifar_onnx, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import raises ImportError
    with pytest.raises(TensorRTUnavailable) as info:
        build_engine(cifar_onnx, tmp_path / "m.plan")
    assert info.value.exit_code == EXIT_NO_TENSORRT == 3
    assert "[gpu]" in info.value.hint
    assert list(tmp_path.iterdir()) == []
