"""Calibration on ONNX Runtime's CUDA provider (``device="cuda"``): provider choice, clear errors,
and the same ranges as the CPU path (checked here through the same code path on the CPU provider;
a GPU host compares the CUDA provider itself)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper

import calibration.ranges as ranges_mod
from calibration.ranges import CalibrationError, MethodConfig, calibration_providers, compute_ranges
from deploy_ran.device import DeviceError


def _tiny(path):
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.standard_normal((2, 4, 1, 1)).astype(np.float32), "w2")
    x = helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, ["batch", 3, 8, 8])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["batch", 2, 8, 8])
    nodes = [
        helper.make_node("Conv", ["input", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2"], ["y"], name="conv2"),
    ]
    graph = helper.make_graph(nodes, "g", [x], [y], initializer=[w1, w2])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, path)
    return path


def test_providers_for_each_device(monkeypatch):
    assert calibration_providers("cpu") == ["CPUExecutionProvider"]
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(CalibrationError, match="CUDA provider") as info:
        calibration_providers("cuda")
    assert "onnxruntime-gpu" in info.value.hint and "--device cpu" in info.value.hint
    with pytest.raises(DeviceError, match="Unknown device 'tpu'"):  # the one device parser
        calibration_providers("tpu")
    monkeypatch.setattr(
        ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    assert calibration_providers("cuda:1") == [
        ("CUDAExecutionProvider", {"device_id": "1"}),
        "CPUExecutionProvider",
    ]


@pytest.mark.parametrize("method", ["minmax", "percentile", "entropy"])
def test_device_path_gives_the_cpu_ranges(method, tmp_path, monkeypatch):
    model = _tiny(tmp_path / "tiny.onnx")
    batches = [
        np.random.default_rng(i).standard_normal((4, 3, 8, 8)).astype(np.float32) for i in range(3)
    ]
    tensors = ["input", "r1", "y"]
    cfg = MethodConfig(method)
    cpu = compute_ranges(model, batches, tensors, cfg, device="cpu")
    asked = []

    def providers(device):  # the CUDA path, with the CPU provider standing in for CUDA
        asked.append(device)
        return ["CPUExecutionProvider"]

    monkeypatch.setattr(ranges_mod, "calibration_providers", providers)
    gpu_path = compute_ranges(model, batches, tensors, cfg, device="cuda")
    assert asked == ["cuda"]
    assert gpu_path.keys() == cpu.keys() == set(tensors)
    for name in tensors:
        np.testing.assert_allclose(gpu_path[name], cpu[name], rtol=1e-6, atol=1e-7)


def test_silent_cpu_fallback_is_an_error(tmp_path, monkeypatch):
    model = _tiny(tmp_path / "tiny.onnx")
    monkeypatch.setattr(
        ranges_mod,
        "calibration_providers",
        lambda d: [("CUDAExecutionProvider", {"device_id": "0"}), "CPUExecutionProvider"],
    )
    batch = np.zeros((1, 3, 8, 8), np.float32)
    with pytest.raises(CalibrationError, match="fell back"):
        compute_ranges(model, [batch], ["r1"], MethodConfig("minmax"), device="cuda")
