"""The TensorRT GPU path, one test per review finding (issue 12), against the strict stand-in.

No GPU here: the CUDA side is a small fake (``fake_cuda``) that keeps PyTorch's own argument
checks (``torch.cuda.set_device`` validates its device as the real one does), records which
stream is current when a graph is captured or replayed, and replays a graph with the shapes and
addresses of its capture, refusing a replay after the context's shapes changed. Tensor buffers
are host memory registered with the stand-in as "device" memory, so the strict stand-in still
refuses any other host pointer. None of this is a TensorRT result.
"""

from __future__ import annotations

import contextlib
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import helper

from deploy_ran.errors import DeployRanError
from deploy_ran.runners.base import RunnerError
from deploy_ran.runners.trt_runner import TrtRunner
from deploy_ran.trt_compat import (
    EngineError,
    GpuInfo,
    compatibility_problems,
    cuda_device_index,
    make_logger,
    sidecar_path,
)
from exporters.tensorrt import EngineBuildOptions, build_engine
from tests.trt_standin import install, register_device_memory

V11 = "11.4.0.106"


def _build(onnx_path, plan, **options):
    return build_engine(
        onnx_path,
        plan,
        EngineBuildOptions(**{"min_batch": 1, "opt_batch": 2, "max_batch": 8, **options}),
    )


def _ort(onnx_path, x):
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


class FakeStream:
    def __init__(self, device=None) -> None:
        self.cuda_stream = 0x5EED
        self.device = device

    def synchronize(self) -> None:
        pass

    def wait_stream(self, other) -> None:
        FAKE.waits.append((self, other))


class FakeCuda:
    """State of the fake CUDA device: current stream, captures, replays, record_stream calls."""

    def __init__(self, trt) -> None:
        self.trt = trt
        self.current = "default"
        self.capturing: FakeGraph | None = None
        self.capture_fails = False
        self.captures: list[tuple] = []
        self.replay_streams: list = []
        self.recorded: list = []
        self.set_device_calls: list[int] = []
        self.capture_modes: list[str] = []
        self.waits: list[tuple] = []  # (waiting stream, stream waited for)


class FakeGraph:
    def __init__(self) -> None:
        self.calls: list[tuple] = []  # (context, shapes, addresses) at capture

    def replay(self) -> None:
        cuda = FAKE
        cuda.replay_streams.append(cuda.current)
        for context, shapes, addresses in self.calls:
            if context._shapes != shapes:
                raise AssertionError("graph replayed after its context's shapes changed")
            saved = dict(context._addresses)
            context._addresses.update(addresses)
            try:
                assert ORIGINAL_EXECUTE(context, cuda.captured_on)
            finally:
                context._addresses = saved


FAKE: FakeCuda
ORIGINAL_EXECUTE = None


@pytest.fixture
def fake_cuda(monkeypatch, request):
    """A stand-in TensorRT (11.4) plus a fake CUDA device that PyTorch and the runner see."""
    global FAKE, ORIGINAL_EXECUTE
    trt = install(monkeypatch, getattr(request, "param", V11))
    FAKE = cuda = FakeCuda(trt)
    real_empty = torch.empty

    def empty(*shape, dtype=None, device=None, **kw):
        if device is not None and torch.device(device).type == "cuda":
            tensor = real_empty(*shape, dtype=dtype, **kw)
            register_device_memory(trt, tensor.data_ptr(), tensor.numel() * tensor.element_size())
            return tensor
        return real_empty(*shape, dtype=dtype, device=device, **kw)

    def set_device(device):
        # What torch.cuda.set_device does before touching the driver: ValueError for "cuda".
        cuda.set_device_calls.append(torch.cuda._utils._get_device_index(device))

    @contextlib.contextmanager
    def stream(s):
        before, cuda.current = cuda.current, s
        try:
            yield
        finally:
            cuda.current = before

    @contextlib.contextmanager
    def graph(g, stream=None, pool=None, capture_error_mode="global"):
        cuda.capture_modes.append(capture_error_mode)
        before, cuda.current = cuda.current, stream
        cuda.capturing, cuda.captured_on = g, stream.cuda_stream
        cuda.captures.append(stream)
        try:
            yield
        finally:
            cuda.capturing, cuda.current = None, before

    ORIGINAL_EXECUTE = trt.IExecutionContext.execute_async_v3

    def execute(self, stream_handle):
        if cuda.capturing is None:
            return ORIGINAL_EXECUTE(self, stream_handle)
        if cuda.capture_fails:
            return False
        cuda.capturing.calls.append((self, dict(self._shapes), dict(self._addresses)))
        return True  # captured, not run

    monkeypatch.setattr(trt.IExecutionContext, "execute_async_v3", execute)
    monkeypatch.setattr(torch, "empty", empty)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "set_device", set_device)
    monkeypatch.setattr(torch.cuda, "Stream", FakeStream)
    monkeypatch.setattr(torch.cuda, "stream", stream)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: cuda.current)
    monkeypatch.setattr(torch.cuda, "graph", graph)
    monkeypatch.setattr(torch.cuda, "CUDAGraph", FakeGraph)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda i=0: (9, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "NVIDIA H200 (fake)")
    monkeypatch.setattr(
        torch.Tensor, "record_stream", lambda self, s: cuda.recorded.append((self.data_ptr(), s))
    )
    return cuda


# ------------------------------------------------------------------ device index


def test_cuda_device_index():
    assert cuda_device_index("cuda", current=3) == 3
    assert cuda_device_index("cuda:1") == 1
    with pytest.raises(DeployRanError, match="Unknown device 'cuda:x'"):
        cuda_device_index("cuda:x")
    with pytest.raises(DeployRanError, match="not a CUDA device"):
        cuda_device_index("cpu")


def test_runner_on_plain_cuda_resolves_the_index(cifar_onnx, tmp_path, fake_cuda):
    plan = tmp_path / "m.plan"
    _build(cifar_onnx, plan)
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    with TrtRunner(plan, device="cuda") as runner:
        out = runner.run(x)["logits"].copy()
        assert runner.device == "cuda:0"
    assert fake_cuda.set_device_calls == [0]
    np.testing.assert_allclose(out, _ort(cifar_onnx, x), rtol=1e-6, atol=1e-6)
    # Every buffer TensorRT touches is marked as used by the runner's stream.
    assert len(fake_cuda.recorded) == 2 and all(
        isinstance(s, FakeStream) for _, s in fake_cuda.recorded
    )


# ------------------------------------------------------------------ CUDA graphs


def test_cuda_graphs_replay_on_the_runner_stream_and_recapture(cifar_onnx, tmp_path, fake_cuda):
    plan = tmp_path / "m.plan"
    _build(cifar_onnx, plan)
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal((b, 3, 32, 32)).astype(np.float32) for b in (1, 8, 1)]
    with TrtRunner(plan, device="cuda:0", cuda_graph=True) as runner:
        outs = [runner.run(x)["logits"].copy() for x in xs]
        stream = runner._stream
    for x, out in zip(xs, outs):
        np.testing.assert_allclose(out, _ort(cifar_onnx, x), rtol=1e-6, atol=1e-6)
    assert fake_cuda.replay_streams == [stream] * 3  # never the default stream
    assert fake_cuda.captures == [stream] * 3  # a shape change recaptures
    # Thread-local capture, as trtexec: another thread's CUDA calls cannot break it.
    assert fake_cuda.capture_modes == ["thread_local"] * 3


def test_new_buffers_wait_for_the_stream_they_were_allocated_on(cifar_onnx, tmp_path, fake_cuda):
    plan = tmp_path / "m.plan"
    _build(cifar_onnx, plan)
    with TrtRunner(plan, device="cuda:0") as runner:
        for batch in (1, 2, 1):  # two sets of buffers; the third run reuses the first
            runner.run(np.zeros((batch, 3, 32, 32), np.float32))
        stream = runner._stream
    assert fake_cuda.waits == [(stream, "default"), (stream, "default")]


def test_failed_capture_is_an_error(cifar_onnx, tmp_path, fake_cuda):
    plan = tmp_path / "m.plan"
    _build(cifar_onnx, plan)
    fake_cuda.capture_fails = True
    with (
        TrtRunner(plan, device="cuda:0", cuda_graph=True) as runner,
        pytest.raises(RunnerError, match="CUDA-graph capture") as info,
    ):
        runner.run(np.zeros((1, 3, 32, 32), np.float32))
    assert "--cuda-graphs" in info.value.hint


# ------------------------------------------------------------------ version-compatible plans


def test_version_compatible_plan_loads_and_reports_layers(cifar_onnx, tmp_path, monkeypatch):
    install(monkeypatch, V11, host_memory=True)
    plan = tmp_path / "vc.plan"
    result = _build(cifar_onnx, plan, version_compatible=True, layer_info=True)
    assert plan.exists() and result.layer_info is not None and result.layer_info.exists()
    x = np.ones((1, 3, 32, 32), np.float32)
    with TrtRunner(plan, _host_buffers=True) as runner:
        np.testing.assert_allclose(runner.run(x)["logits"], _ort(cifar_onnx, x), atol=1e-6)


def test_layer_info_failure_keeps_the_plan(cifar_onnx, tmp_path, monkeypatch):
    trt = install(monkeypatch, V11)
    monkeypatch.setattr(trt.Runtime, "deserialize_cuda_engine", lambda self, data: None)
    plan = tmp_path / "m.plan"
    result = _build(cifar_onnx, plan, layer_info=True)
    assert plan.exists() and sidecar_path(plan).exists() and result.layer_info is None
    assert any("no layer report" in w for w in result.warnings)


def test_layer_info_has_formats_on_a_dynamic_engine(cifar_onnx, tmp_path, monkeypatch):
    install(monkeypatch, V11)
    result = _build(cifar_onnx, tmp_path / "m.plan", layer_info=True)
    info = json.loads(result.layer_info.read_text())
    formats = [o["Format/Datatype"] for layer in info["Layers"] for o in layer["Outputs"]]
    assert formats and not any("N/A" in f for f in formats)
    assert result.layer_precisions.get("fp32") == len(info["Layers"])


# ------------------------------------------------------------------ unchecked returns


def test_create_network_none(cifar_onnx, tmp_path, monkeypatch):
    trt = install(monkeypatch, V11)
    monkeypatch.setattr(trt.Builder, "create_network", lambda self, flags=0: None)
    with pytest.raises(EngineError, match="network definition"):
        _build(cifar_onnx, tmp_path / "m.plan")


def test_profile_refused(cifar_onnx, tmp_path, monkeypatch):
    trt = install(monkeypatch, V11)
    monkeypatch.setattr(trt.IBuilderConfig, "add_optimization_profile", lambda self, p: -1)
    with pytest.raises(EngineError, match="rejected the optimisation profile"):
        _build(cifar_onnx, tmp_path / "m.plan")

    def refuse(self, input, min, opt, max):  # noqa: A002
        raise RuntimeError("Failed to set shape")

    monkeypatch.setattr(trt.IOptimizationProfile, "set_shape", refuse)
    with pytest.raises(EngineError, match="refused the optimisation profile"):
        _build(cifar_onnx, tmp_path / "m.plan")
    assert not (tmp_path / "m.plan").exists()


def test_timing_cache_from_another_gpu(cifar_onnx, tmp_path, monkeypatch):
    install(monkeypatch, V11)
    cache = tmp_path / "timing.cache"
    cache.write_text(json.dumps({"builds": 7, "device": "NVIDIA A100", "version": "11.4.0.106"}))
    result = _build(cifar_onnx, tmp_path / "m.plan", timing_cache=str(cache))
    assert any("another GPU" in w for w in result.warnings)
    written = json.loads(cache.read_text())
    assert written["device"] != "NVIDIA A100" and written["builds"] == 1


def test_execution_context_none(cifar_onnx, tmp_path, monkeypatch):
    trt = install(monkeypatch, V11, host_memory=True)
    plan = tmp_path / "m.plan"
    _build(cifar_onnx, plan)
    monkeypatch.setattr(trt.ICudaEngine, "create_execution_context", lambda self, s=None: None)
    with pytest.raises(RunnerError, match="execution context"):
        TrtRunner(plan, _host_buffers=True)


# ------------------------------------------------------------------ sidecar check


def _side(version, cc="9.0", **options):
    return {
        "tensorrt_version": version,
        "gpu": {"name": "built here", "compute_capability": cc},
        "build_options": {"hardware_compatibility": "none", **options},
    }


def test_sidecar_check_is_as_strict_as_tensorrt():
    h200 = GpuInfo("NVIDIA H200", "9.0")
    t4 = GpuInfo("Tesla T4", "7.5")
    assert compatibility_problems(_side("10.16.1.11"), "10.16.1.11", h200) == []
    assert compatibility_problems(_side("10.16.1.11"), "10.16.1.9", h200)  # build differs
    assert compatibility_problems(_side("10.16.0.72"), "10.16.1.11", h200)  # patch differs
    vc = _side("10.16.1.11", version_compatible=True)
    assert compatibility_problems(vc, "10.16.1.11", h200) == []
    assert compatibility_problems(vc, "11.4.0.106", h200) == []  # newer runtime
    (older,) = compatibility_problems(vc, "10.3.0", h200)
    assert "older" in older
    amp = _side("10.16.1.11", cc="8.6", hardware_compatibility="ampere_plus")
    assert compatibility_problems(amp, "10.16.1.11", h200) == []
    assert compatibility_problems(amp, "10.16.1.11", t4)  # Turing: not Ampere+
    same = _side("10.16.1.11", cc="8.0", hardware_compatibility="same_cc")
    assert compatibility_problems(same, "10.16.1.11", GpuInfo("A30", "8.0")) == []
    assert compatibility_problems(same, "10.16.1.11", h200)


# ------------------------------------------------------------------ logger


def test_logger_drops_verbose_unless_verbose(monkeypatch):
    trt = install(monkeypatch, V11)
    quiet, loud = make_logger(trt), make_logger(trt, verbose=True)
    for logger in (quiet, loud):
        logger.log(trt.ILogger.Severity.VERBOSE, "tactic 17")
        logger.log(trt.ILogger.Severity.ERROR, "bad")
    assert [m for _, m in quiet.messages] == ["bad"] and quiet.errors() == ["bad"]
    assert [m for _, m in loud.messages] == ["tactic 17", "bad"]


def test_logger_keeps_only_the_newest_messages_and_counts_errors(monkeypatch):
    trt = install(monkeypatch, V11)
    logger = make_logger(trt, keep=3)
    for i in range(5):
        logger.log(trt.ILogger.Severity.WARNING, f"w{i}")
    before = logger.error_count
    for i in range(4):
        logger.log(trt.ILogger.Severity.ERROR, f"e{i}")
    assert [m for _, m in logger.messages] == ["e1", "e2", "e3"]  # bounded: a long run stays small
    assert logger.errors() == ["e1", "e2", "e3"] and logger.error_count == 4
    assert logger.errors_since(before) == ["e1", "e2", "e3"]  # e0 was dropped, the rest are new
    assert logger.errors_since(logger.error_count) == []


# ------------------------------------------------------------------ the stand-in itself


def _fp16_onnx(path):
    x = helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT16, ["batch", 3, 4, 4])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT16, ["batch", 3, 4, 4])
    idx = helper.make_tensor_value_info("idx", onnx.TensorProto.INT64, ["batch", 1, 4, 4])
    nodes = [
        helper.make_node("Relu", ["input"], ["y"], name="relu"),
        helper.make_node("ArgMax", ["y"], ["idx"], name="argmax", axis=1, keepdims=1),
    ]
    model = helper.make_model(
        helper.make_graph(nodes, "g", [x], [y, idx]), opset_imports=[helper.make_opsetid("", 18)]
    )
    model.ir_version = 10
    onnx.save(model, path)
    return path


def test_standin_reports_real_dtypes(tmp_path, monkeypatch):
    install(monkeypatch, V11, host_memory=True)
    source = _fp16_onnx(tmp_path / "half.onnx")
    plan = tmp_path / "half.plan"
    _build(source, plan, max_batch=4)
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 4)).astype(np.float16)
    with TrtRunner(plan, _host_buffers=True) as runner:
        assert runner.input_spec[0].dtype == "float16"
        out = runner.run(x)
    assert out["y"].dtype == np.float16 and out["idx"].dtype == np.int64
    np.testing.assert_array_equal(out["y"], np.maximum(x, 0))
    np.testing.assert_array_equal(out["idx"], np.argmax(np.maximum(x, 0), axis=1)[:, None])


def test_standin_refuses_what_tensorrt_refuses(cifar_onnx, tmp_path, monkeypatch):
    trt = install(monkeypatch, V11)  # no host buffers
    plan = tmp_path / "m.plan"
    _build(cifar_onnx, plan, version_compatible=True)
    logger = make_logger(trt)
    runtime = trt.Runtime(logger)
    assert runtime.deserialize_cuda_engine(plan.read_bytes()) is None  # no host-code flag
    assert "host code" in logger.errors()[-1]
    runtime.engine_host_code_allowed = True
    engine = runtime.deserialize_cuda_engine(plan.read_bytes())
    context = engine.create_execution_context()
    x = np.zeros((1, 3, 32, 32), np.float32)
    y = np.zeros((1, 10), np.float32)
    assert context.set_input_shape("input", x.shape)
    context.set_tensor_address("input", x.ctypes.data)
    context.set_tensor_address("logits", y.ctypes.data)
    with pytest.raises(TypeError):
        context.execute_async_v3(None)
    assert context.execute_async_v3(1) is False  # host pointers: an illegal address on a GPU
    assert "not device memory" in logger.errors()[-1]
    config = trt.Builder(logger).create_builder_config()
    assert config.add_optimization_profile(trt.Builder(logger).create_optimization_profile()) == -1
    other = config.create_timing_cache(json.dumps({"device": "A100", "version": "1"}).encode())
    assert config.set_timing_cache(other, False) is False
    assert config.set_timing_cache(other, True) is True
    # A plain plan runs only on the version that built it.
    install(monkeypatch, "10.16.1.11")
    _build(cifar_onnx, tmp_path / "old.plan")
    newer = install(monkeypatch, V11)
    assert (
        newer.Runtime(make_logger(newer)).deserialize_cuda_engine(
            (tmp_path / "old.plan").read_bytes()
        )
        is None
    )
