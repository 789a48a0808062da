"""The backend registry: one registration per backend, one decision at the door."""

from __future__ import annotations

import pytest

from deploy_ran.device import Device, DeviceError
from deploy_ran.runners import (
    RunnerError,
    backend_for,
    get_backend,
    list_backends,
    load_runner,
    register_backend,
    registry,
    served_schemes,
)
from deploy_ran.runners.triton_runner import SCHEMES
from deploy_ran.target import Target


def test_every_backend_registers_itself():
    assert list_backends() == ("torch", "ort", "trt", "triton")
    assert served_schemes() == tuple(SCHEMES)
    assert backend_for("ran56_cifar") == "torch"
    assert backend_for("triton://h:8000/m") == "triton"
    with pytest.raises(RunnerError, match="No backend serves http://") as err:
        backend_for("http://h/m")
    assert "triton+grpc://" in err.value.hint
    with pytest.raises(RunnerError, match="Unknown backend 'tensorrt'"):
        get_backend("tensorrt")


def test_a_new_backend_is_one_registration(cifar_onnx, monkeypatch):
    """A backend registered first for ONNX files takes them, with the parsed Target and Device."""
    registered = dict(registry._BACKENDS)
    monkeypatch.setattr(registry, "_BACKENDS", {})
    seen = {}

    def factory(target, device, **options):
        seen.update(target=target, device=device, options=options)
        return "runner"

    register_backend("mine", lambda t: t.kind == "onnx", factory, options=("threads",))
    registry._BACKENDS.update(registered)  # after "mine": it takes precedence
    assert load_runner(cifar_onnx, "cuda:1", threads=2) == "runner"
    assert seen["device"] == Device("cuda", 1) and seen["options"] == {"threads": 2}
    assert seen["target"].precision == "fp32"
    with pytest.raises(ValueError, match="registered twice"):
        register_backend("mine", lambda t: False, factory)
    with pytest.raises(ValueError, match="unknown runner options"):
        register_backend("other", lambda t: False, factory, options=("thredas",))


def test_options_a_backend_cannot_honour_are_refused_by_name(cifar_onnx):
    with pytest.raises(RunnerError, match="checkpoint cannot apply") as err:
        load_runner(cifar_onnx, checkpoint="w.pt")
    assert err.value.param == "checkpoint"
    with pytest.raises(RunnerError, match="providers cannot apply"):
        load_runner("ran56_cifar", providers="cpu")


def test_an_engine_on_the_cpu_is_an_error_not_a_silent_gpu(tmp_path):
    plan = tmp_path / "m.plan"
    plan.write_bytes(b"engine")
    with pytest.raises(DeviceError, match="runs only on an NVIDIA GPU"):
        load_runner(plan, device="cpu")


def test_the_precision_of_a_file_is_read_once_on_the_way_to_a_runner(cifar_onnx, monkeypatch):
    """verify → backend_for → load_runner → OrtRunner used to read it three times."""
    import deploy_ran.artifacts as artifacts
    import deploy_ran.runners.ort_runner as ort_runner

    calls = []
    real = artifacts.precision_of

    def counting(model):
        calls.append(model)
        return real(model)

    monkeypatch.setattr(artifacts, "precision_of", counting)
    monkeypatch.setattr(ort_runner, "precision_of", counting)
    target = Target.parse(cifar_onnx)
    assert backend_for(target) == "ort"
    with load_runner(target, threads=1) as runner:
        assert runner.precision == "fp32"
    assert len(calls) == 1
