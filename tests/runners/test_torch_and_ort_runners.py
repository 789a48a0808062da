"""Runners: one interface over eager PyTorch and ONNX Runtime, with clear errors."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from deploy_ran.compare.metrics import compare
from deploy_ran.errors import DeployRanError, OnnxFileError, UnknownModelError
from deploy_ran.runners import (
    BackendUnavailableError,
    InputSpecError,
    RunnerError,
    load_runner,
)
from deploy_ran.runners.ort_runner import OrtRunner
from deploy_ran.runners.torch_runner import TorchRunner


def _batch(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, size, size), dtype=np.float32)


def test_torch_and_ort_runners_agree(cifar_checkpoint, cifar_onnx):
    x = _batch(3)
    with (
        load_runner("ran56_cifar", checkpoint=cifar_checkpoint, threads=1) as torch_runner,
        load_runner(cifar_onnx, threads=1) as ort_runner,
    ):
        assert isinstance(torch_runner, TorchRunner) and isinstance(ort_runner, OrtRunner)
        ref = torch_runner.run(x)
        out = ort_runner.run(x)
        assert list(ref) == list(out) == ["logits"]
        assert out["logits"].shape == (3, 10)
        assert compare(ref["logits"], out["logits"]).rel_l2 < 1e-5
        # the logits depend on the input (the fixture's weights are not degenerate)
        assert np.ptp(ref["logits"][:, 0]) > 1e-3

        # staged execution gives the same answer as run()
        fetched = ort_runner.fetch(ort_runner.run_staged(ort_runner.stage(x)))
        np.testing.assert_array_equal(fetched["logits"], out["logits"])

    with load_runner(
        "ran56_cifar", checkpoint=cifar_checkpoint, precision="fp16", threads=1
    ) as half:
        assert half.precision == "fp16" and half.input_spec[0].dtype == "float16"
        low = half.run(half.coerce(x))["logits"]
        assert low.dtype == np.float16
        assert compare(ref["logits"], low).rel_l2 < 1e-2
    with load_runner(
        "ran56_cifar", checkpoint=cifar_checkpoint, channels_last=True, threads=1
    ) as nhwc:
        assert compare(ref["logits"], nhwc.run(x)["logits"]).rel_l2 < 1e-5


def test_ort_runner_reads_metadata_and_describes_itself(cifar_onnx):
    with OrtRunner(cifar_onnx, threads=1, inter_op_threads=1) as runner:
        (spec,) = runner.input_spec
        assert (spec.name, spec.shape, spec.dtype) == ("input", (None, 3, 32, 32), "float32")
        assert runner.fixed_batch is None
        assert runner.precision == "fp32" and runner.model == "ran56_cifar"
        assert runner.num_classes == 10
        assert runner.preprocessing["crop_size"] == 32
        info = runner.describe()
        assert info["providers"] == ["CPUExecutionProvider"]
        assert info["threads"] == 1 and info["inter_op_threads"] == 1
        assert runner.label == "ort fp32 (cpu)"


def test_wrong_shape_dtype_or_names_name_the_expected_spec(cifar_onnx):
    with OrtRunner(cifar_onnx, threads=1) as runner:
        with pytest.raises(InputSpecError, match=r"expected input: float32\[batch, 3, 32, 32\]"):
            runner.run(_batch(2, size=64))
        with pytest.raises(InputSpecError, match=r"dtype float64, expected float32"):
            runner.run(_batch(2).astype(np.float64))
        with pytest.raises(InputSpecError, match=r"shape \[3, 32, 32\]"):
            runner.run(_batch(1)[0])
        with pytest.raises(InputSpecError, match="do not match"):
            runner.run({"image": _batch(1)})
        with pytest.raises(InputSpecError, match="numpy array"):
            runner.run([[1.0]])
    with pytest.raises(RunnerError, match="closed"):
        runner.run(_batch(1))


def _tiny_static_fp16(path):
    """Foreign ONNX (no metadata): float16 input [2, 3, 4, 4] → spatial mean → MatMul → [2, 5]."""
    w = np.arange(15, dtype=np.float16).reshape(3, 5) / 10
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["x", "axes"], ["m"], keepdims=0),
            helper.make_node("MatMul", ["m", "w"], ["y"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT16, [2, 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT16, [2, 5])],
        [
            numpy_helper.from_array(np.array([2, 3], dtype=np.int64), "axes"),
            numpy_helper.from_array(w, "w"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.save(model, path)
    return w


def test_static_batch_fp16_foreign_onnx_runs_many_with_padding(tmp_path):
    w = _tiny_static_fp16(tmp_path / "tiny.onnx")
    with OrtRunner(tmp_path / "tiny.onnx", threads=1) as runner:
        assert runner.fixed_batch == 2
        assert runner.precision == "fp16"  # no metadata: read from the fp16 initializers
        assert runner.model is None and runner.preprocessing is None
        x = np.random.default_rng(1).standard_normal((5, 3, 4, 4), dtype=np.float32)
        with pytest.raises(InputSpecError, match="static batch of 2"):
            runner.run(x[:3].astype(np.float16))
        with pytest.raises(RunnerError, match="static batch of 2"):
            runner.run_many(x, batch_size=4)
        out = runner.run_many(x)["y"]  # float32 → float16, 5 samples padded to 6, trimmed
        assert out.shape == (5, 5)
        expected = x.astype(np.float16).astype(np.float32).mean(axis=(2, 3)) @ w.astype(np.float32)
        np.testing.assert_allclose(out.astype(np.float32), expected, rtol=1e-2, atol=1e-2)


def test_unavailable_backends_and_bad_targets(tmp_path, cifar_onnx):
    with pytest.raises(BackendUnavailableError, match="CUDAExecutionProvider") as err:
        OrtRunner(cifar_onnx, providers="cuda")
    assert "onnxruntime-gpu" in err.value.hint
    with pytest.raises(BackendUnavailableError, match="TensorrtExecutionProvider"):
        load_runner(cifar_onnx, providers=["tensorrt"])
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(BackendUnavailableError, match="CUDA is not available"):
            load_runner("ran56_cifar", device="cuda")
    with pytest.raises(RunnerError, match="Unknown PyTorch precision"):
        load_runner("ran56_cifar", precision="fp8")
    # What a target is, is decided once by the conversion layer's resolver.
    with pytest.raises(UnknownModelError, match="ran29") as err:
        load_runner("ran29")
    assert "ran92" in err.value.hint
    with pytest.raises(DeployRanError, match="does not exist"):
        load_runner(tmp_path / "missing.plan")
    plan = tmp_path / "model.plan"
    plan.write_bytes(b"not really an engine")
    with pytest.raises(BackendUnavailableError, match="Cannot run TensorRT engine"):
        load_runner(plan, device="cuda")
    with pytest.raises(RunnerError, match="checkpoint"):
        load_runner(cifar_onnx, checkpoint="w.pt")
    with pytest.raises(RunnerError, match="providers"):
        load_runner("ran56_cifar", providers="cpu")
    weird = tmp_path / "weights.bin"
    weird.write_bytes(b"\0")
    with pytest.raises(DeployRanError, match="Cannot tell what"):
        load_runner(weird)
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x00garbage")
    with pytest.raises(OnnxFileError):
        load_runner(corrupt)


def test_io_binding_and_fixed_buffers_give_the_same_outputs(cifar_onnx):
    """The I/O-binding path GPUs use, and the per-shape fixed buffers CUDA graphs replay from,
    run here on the CPU provider: new inputs must land in the old buffers and give new outputs."""
    rng = np.random.default_rng(0)
    with (
        OrtRunner(cifar_onnx, threads=1) as plain,
        OrtRunner(cifar_onnx, threads=1, io_binding=True) as bound,
    ):
        bound._cuda_graph = True  # the fixed-buffer binding, without a GPU to capture on
        for batch in (2, 3, 2):
            x = rng.standard_normal((batch, 3, 32, 32), dtype=np.float32)
            np.testing.assert_array_equal(bound.run(x)["logits"], plain.run(x)["logits"])
        assert len(bound._graph_buffers) == 2  # one set of buffers per batch size
        assert bound.describe()["io_binding"] is True
