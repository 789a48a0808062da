"""Calibration on ONNX Runtime's CUDA provider (``device="cuda"``): provider choice and options
(TF32 off), the cache key's device part, clear errors, the checks on the calibration device, and
on a GPU host the CUDA ranges against the CPU ranges.

Without a CUDA provider these tests check what is handed to ONNX Runtime (captured), never a
CPU run passed off as a CUDA one; the comparison of the two devices' ranges runs only where
``CUDAExecutionProvider`` is available.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper
from onnxruntime.quantization import calibrate as ort_calibrate

import calibration.ranges as ranges_mod
from calibration.ranges import (
    CalibrationError,
    MethodConfig,
    calibrate_ranges,
    calibration_providers,
    compute_ranges,
    device_key,
)
from deploy_ran.device import DeviceError

HAS_CUDA = "CUDAExecutionProvider" in ort.get_available_providers()
_REAL_SESSION = ort.InferenceSession

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
        ("CUDAExecutionProvider", {"device_id": "1", "use_tf32": "0"}),
        "CPUExecutionProvider",
    ]
    assert calibration_providers("cuda", allow_tf32=True)[0][1]["use_tf32"] == "1"


class _RecordingSession:
    """Stands where ONNX Runtime's calibrator opens its session: records the providers and
    options asked for, and says it got them (the computation itself runs on the CPU provider,
    and no range from it is presented as a CUDA result)."""

    asked: list = []

    def __init__(self, path, sess_options=None, providers=None, **_kw):
        type(self).asked.append(providers)
        self._real = _REAL_SESSION(path, sess_options, providers=["CPUExecutionProvider"])
        self._names = [p[0] if isinstance(p, tuple) else p for p in providers]

    def get_providers(self):
        return self._names

    def __getattr__(self, name):
        return getattr(self._real, name)


@pytest.mark.parametrize("allow_tf32, expected", [(False, "0"), (True, "1")])
def test_cuda_calibration_session_is_asked_for_fp32(allow_tf32, expected, tmp_path, monkeypatch):
    model = _tiny(tmp_path / "tiny.onnx")
    _RecordingSession.asked = []
    monkeypatch.setattr(
        ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    monkeypatch.setattr(ort_calibrate.onnxruntime, "InferenceSession", _RecordingSession)
    batch = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    compute_ranges(
        model, [batch], ["r1"], MethodConfig("minmax"), device="cuda:0", allow_tf32=allow_tf32
    )
    (providers,) = _RecordingSession.asked
    name, options = providers[0]
    assert name == "CUDAExecutionProvider"
    assert options == {"device_id": "0", "use_tf32": expected}


def test_device_and_arithmetic_are_in_the_cache_key(tmp_path):
    assert device_key("cpu") == "cpu (fp32)"
    assert device_key("cuda:1") == device_key("cuda") == "cuda (fp32, use_tf32=0)"
    assert device_key("cuda", allow_tf32=True) == "cuda (tf32)"
    model = _tiny(tmp_path / "tiny.onnx")
    cache = tmp_path / "ranges.json"
    batch = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    loads = []

    def load():
        loads.append(1)
        return [batch], 2

    args = (model, "sha", "data", {}, load, ["r1"], MethodConfig("minmax"))
    first = calibrate_ranges(*args, cache_path=cache)
    assert not first.from_cache and first.key_parts["device"] == "cpu (fp32)"
    assert json.loads(cache.read_text())["key_parts"]["device"] == "cpu (fp32)"
    assert calibrate_ranges(*args, cache_path=cache).from_cache
    # The same data on CUDA would be another arithmetic: the CPU cache must not serve it.
    status = ranges_mod.check_cache(
        cache, *ranges_mod.cache_key("sha", "data", {}, MethodConfig("minmax"), device_key("cuda")),
        ["r1"],
    )
    assert not status.usable and "device" in status.reason and "TF32" in status.reason
    assert len(loads) == 1


def test_checks_run_on_the_calibration_device():
    from deploy_ran.convert import CalibrationConfig, _run_model_on

    class Checks:
        def run_model(self, model, inputs, batch_size, *, device="cpu", allow_tf32=False):
            return {"device": device, "tf32": allow_tf32}

    checks = Checks()
    assert _run_model_on(checks, CalibrationConfig())(None, None, 1) == {
        "device": "cpu",
        "tf32": False,
    }
    bound = _run_model_on(checks, CalibrationConfig(device="cuda:1", allow_tf32=True))
    assert bound(None, None, 1) == {"device": "cuda:1", "tf32": True}
    assert _run_model_on(None, CalibrationConfig(device="cuda")) is None


@pytest.mark.skipif(not HAS_CUDA, reason="needs onnxruntime-gpu with a CUDA device")
@pytest.mark.parametrize("method", ["minmax", "percentile", "entropy"])
def test_cuda_ranges_match_the_cpu_ranges(method, tmp_path):
    """The real comparison, on a GPU host: FP32 (use_tf32=0) CUDA ranges agree with the CPU's
    up to summation order and algorithm choice, not bit for bit (hence rtol 1e-4, not 1e-6)."""
    model = _tiny(tmp_path / "tiny.onnx")
    batches = [
        np.random.default_rng(i).standard_normal((4, 3, 8, 8)).astype(np.float32) for i in range(3)
    ]
    tensors = ["input", "r1", "y"]
    cfg = MethodConfig(method)
    cpu = compute_ranges(model, batches, tensors, cfg, device="cpu")
    cuda = compute_ranges(model, batches, tensors, cfg, device="cuda")
    for name in tensors:
        np.testing.assert_allclose(cuda[name], cpu[name], rtol=1e-4, atol=1e-5)


def test_silent_cpu_fallback_is_an_error(tmp_path, monkeypatch):
    model = _tiny(tmp_path / "tiny.onnx")
    monkeypatch.setattr(
        ranges_mod,
        "calibration_providers",
        lambda d, tf32=False: [("CUDAExecutionProvider", {"device_id": "0"}), "CPUExecutionProvider"],
    )
    batch = np.zeros((1, 3, 8, 8), np.float32)
    with pytest.raises(CalibrationError, match="fell back"):
        compute_ranges(model, [batch], ["r1"], MethodConfig("minmax"), device="cuda")
