"""FP32 is FP32 on ONNX Runtime's CUDA provider: ``use_tf32=0`` unless TF32 is asked for.

ONNX Runtime's CUDA provider defaults to TF32 for FP32 convolutions; these tests check the options
the runner hands to ``InferenceSession`` (captured, since no CUDA provider is installed here) and
what ``describe`` records, not a GPU computation.
"""

from __future__ import annotations

import types

import onnxruntime as ort
import pytest

from deploy_ran.runners import ort_runner
from deploy_ran.runners.base import RunnerError
from deploy_ran.runners.ort_providers import cuda_provider_options

CUDA = ["CUDAExecutionProvider", "CPUExecutionProvider"]
_REAL_SESSION = ort.InferenceSession


class _FakeSession:
    """Records the provider options; reports the providers it was given (no fall-back)."""

    seen: list = []

    def __init__(self, source, opts, providers):
        type(self).seen.append(providers)
        self._real = _REAL_SESSION(source, opts, providers=["CPUExecutionProvider"])
        self._providers = [p for p, _ in providers]

    def get_providers(self):
        return self._providers

    def __getattr__(self, name):
        return getattr(self._real, name)


@pytest.fixture
def fake_cuda(monkeypatch):
    _FakeSession.seen = []
    monkeypatch.setattr(ort, "get_available_providers", lambda: CUDA)
    monkeypatch.setattr(ort, "InferenceSession", _FakeSession)
    monkeypatch.setattr(
        ort_runner, "_new_cuda_stream", lambda _id: types.SimpleNamespace(cuda_stream=77)
    )
    return _FakeSession.seen


def _cuda_options(seen) -> dict:
    (providers,) = seen
    return dict(providers)["CUDAExecutionProvider"]


def test_fp32_session_on_cuda_has_tf32_off(cifar_onnx, fake_cuda):
    runner = ort_runner.OrtRunner(cifar_onnx, device="cuda", threads=1, io_binding=False)
    options = _cuda_options(fake_cuda)
    assert options["use_tf32"] == "0"
    assert options["user_compute_stream"] == "77"
    described = runner.describe()
    assert described["tf32"] is False
    assert described["cuda_provider_options"]["use_tf32"] == "0"
    runner.close()


def test_allow_tf32_turns_it_on_and_is_recorded(cifar_onnx, fake_cuda):
    runner = ort_runner.OrtRunner(
        cifar_onnx, device="cuda", threads=1, io_binding=False, allow_tf32=True
    )
    assert _cuda_options(fake_cuda)["use_tf32"] == "1"
    assert runner.describe()["tf32"] is True
    runner.close()


def test_explicit_provider_option_wins_over_the_default(cifar_onnx, fake_cuda):
    runner = ort_runner.OrtRunner(
        cifar_onnx,
        device="cuda",
        threads=1,
        io_binding=False,
        provider_options={"CUDAExecutionProvider": {"use_tf32": "1"}},
    )
    assert _cuda_options(fake_cuda)["use_tf32"] == "1"
    runner.close()


def test_cpu_session_records_no_tf32(cifar_onnx):
    with ort_runner.OrtRunner(cifar_onnx, threads=1) as runner:
        assert runner.describe()["tf32"] is None


def test_use_tf32_value_is_checked():
    assert cuda_provider_options("fp16")["use_tf32"] == "0"
    assert cuda_provider_options("fp32", allow_tf32=True)["use_tf32"] == "1"
    with pytest.raises(RunnerError, match="use_tf32"):
        cuda_provider_options("fp32", {"use_tf32": "true"})


def test_tensorrt_provider_rows_say_tensorrt_decides(cifar_onnx, tmp_path, monkeypatch, fake_cuda):
    monkeypatch.setattr(
        ort, "get_available_providers", lambda: ["TensorrtExecutionProvider", *CUDA]
    )
    runner = ort_runner.OrtRunner(
        cifar_onnx, device="cuda", providers="tensorrt", threads=1, io_binding=False,
        trt_cache_dir=tmp_path / "cache",
    )  # fmt: skip
    described = runner.describe()
    assert described["tensorrt_provider_tf32"] == "TensorRT default (allowed)"
    assert described["tf32"] is False  # the CUDA fallback's own arithmetic
    runner.close()
