"""Precision as TensorRT computes it: float16-strict FP16 evaluation, Q/DQ fake-quantized in float."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from deploy_ran.compare.criteria import criteria_for
from deploy_ran.compare.judge import compare_outputs
from deploy_ran.compare.runner_checks import RunnerChecks
from deploy_ran.errors import ParityError
from deploy_ran.runners.ort_runner import QDQ_ARITHMETIC, OrtRunner
from deploy_ran.runners.reference_runner import ReferenceRunner, evaluable_copy
from exporters.fp16 import (
    DEFAULT_KEEP_FP32,
    convert_model_to_fp16,
    convert_to_fp16,
    fragile_fp16_nodes,
)


def _small_qdq_model(tmp_path, quantize_bias: bool):
    """Conv → ReLU → Conv → flatten → Gemm, quantized by ONNX Runtime's own quantize_static."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 8, 3, padding=1, stride=2),
        torch.nn.Flatten(),
        torch.nn.Linear(8 * 4 * 4, 10),
    ).eval()
    fp32 = tmp_path / "small.onnx"
    torch.onnx.export(
        net, torch.randn(2, 3, 8, 8), str(fp32), input_names=["input"], output_names=["logits"],
        opset_version=18, dynamo=False, dynamic_axes={"input": {0: "n"}, "logits": {0: "n"}},
    )

    class Reader(CalibrationDataReader):
        def __init__(self):
            rng = np.random.default_rng(1)
            self.items = iter(
                [{"input": rng.standard_normal((2, 3, 8, 8), dtype=np.float32)} for _ in range(4)]
            )

        def get_next(self):
            return next(self.items, None)

    qdq = tmp_path / "small.int8.onnx"
    quantize_static(
        str(fp32), str(qdq), Reader(), quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, per_channel=True,
        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True,
                       "QuantizeBias": quantize_bias},
    )
    return qdq


def test_qdq_runs_fake_quantized_in_float_like_the_reference_evaluator(tmp_path):
    # ONNX Runtime's default quantizer output: INT32 biases, quantized Conv outputs, which ONNX
    # Runtime's fusions turn into its own integer kernels (QLinearConv).
    qdq = _small_qdq_model(tmp_path, quantize_bias=True)
    x = np.random.default_rng(2).standard_normal((4, 3, 8, 8), dtype=np.float32)
    with ReferenceRunner(qdq) as ref:
        expected = ref.run(x)["logits"]
    with OrtRunner(qdq, threads=1) as fake:  # the default: as TensorRT computes Q/DQ
        got = fake.run(x)["logits"]
        assert fake.describe()["qdq_arithmetic"] == QDQ_ARITHMETIC["float"]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    with OrtRunner(qdq, threads=1, qdq="integer") as integer:  # still selectable, and said so
        assert integer.describe()["qdq_arithmetic"] == QDQ_ARITHMETIC["integer"]


def test_reference_evaluator_needs_opset_19_for_qdq_and_gets_it_in_a_copy(tmp_path):
    qdq = onnx.load(_small_qdq_model(tmp_path, quantize_bias=False))
    copy = evaluable_copy(qdq)
    assert {o.version for o in copy.opset_import if o.domain == ""} == {19}
    assert {o.version for o in qdq.opset_import if o.domain == ""} == {18}


def test_calibration_run_model_reports_tensorrt_like_arithmetic():
    assert "fake-quantize in float" in RunnerChecks.qdq_arithmetic


# --------------------------------------------------------------------------------- FP16


def _log_softmax_model() -> onnx.ModelProto:
    """x → Conv → Flatten → LogSoftmax, and x → Conv → Flatten → Softmax → Log: wide logits."""
    h = onnx.helper
    w = np.zeros((20, 3, 1, 1), np.float32)
    w[:, 0, 0, 0] = np.linspace(-40, 40, 20)  # logits 80 apart: probabilities down to e^-80
    nodes = [
        h.make_node("Conv", ["input", "w"], ["c"], name="conv"),
        h.make_node("ReduceMean", ["c"], ["m"], axes=[2, 3], keepdims=0, name="pool"),
        h.make_node("LogSoftmax", ["m"], ["log_probs"], axis=1, name="logsoftmax"),
        h.make_node("Softmax", ["m"], ["p"], axis=1, name="softmax"),
        h.make_node("Log", ["p"], ["log_probs2"], name="log"),
    ]
    graph = h.make_graph(
        nodes, "g",
        [h.make_tensor_value_info("input", onnx.TensorProto.FLOAT, [None, 3, 2, 2])],
        [h.make_tensor_value_info(n, onnx.TensorProto.FLOAT, [None, 20]) for n in ("log_probs", "log_probs2")],
        [onnx.numpy_helper.from_array(w, "w")],
    )
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])


def test_fp16_log_softmax_underflows_when_not_kept_and_is_kept_by_default():
    model = _log_softmax_model()
    x = np.ones((2, 3, 2, 2), np.float32)
    with ReferenceRunner(model) as fp32:
        reference = fp32.run(x)
    assert np.isfinite(reference["log_probs"]).all()
    naive = convert_model_to_fp16(model, ["ReduceMean"])  # without the log-probability entries
    with ReferenceRunner(naive) as strict:
        out = strict.run(x)
    assert not np.isfinite(out["log_probs2"]).all()  # Softmax → Log in FP16: −inf
    # ONNX Runtime upcasts on a CPU and hides it.
    with OrtRunner(naive, threads=1) as ort_cpu:
        assert np.isfinite(ort_cpu.run(x)["log_probs2"]).all()
    assert fragile_fp16_nodes(model) == ["softmax"]
    kept = convert_model_to_fp16(model)  # the default keep-list
    with ReferenceRunner(kept) as strict:
        out = strict.run(x)
    assert all(np.isfinite(v).all() for v in out.values())
    assert compare_outputs(reference, out, criteria_for("fp16")).passed
    assert {"LogSoftmax", "Log"} <= set(DEFAULT_KEEP_FP32)
    assert all(DEFAULT_KEEP_FP32[op] for op in DEFAULT_KEEP_FP32)  # every entry says why


@pytest.fixture(scope="module")
def ar_fp32(export_cache):
    return export_cache("wrn16_4_ar", image_size=16)


def test_attend_and_rectify_fp16_has_finite_log_probs_under_strict_evaluation(ar_fp32, tmp_path):
    checks = RunnerChecks(samples=2, strict_fp16_samples=4)
    result = convert_to_fp16(
        ar_fp32.path, tmp_path / "ar.fp16.onnx", check=lambda f: checks.check_precision(ar_fp32.path, f)
    )
    strict = result.check.extra["fp16_strict"]
    assert strict["passed"] and strict["outputs"][0]["name"] == "log_probs"
    assert strict["outputs"][0]["finite"]
    assert strict["candidate"]["backend"] == "onnx-reference"
    # Without LogSoftmax in FP32 the same check refuses the file, as TensorRT would break it.
    with pytest.raises(ParityError, match="float16-strict"):
        convert_to_fp16(
            ar_fp32.path,
            tmp_path / "ar.naive.fp16.onnx",
            keep_fp32=[op for op in DEFAULT_KEEP_FP32 if op not in ("LogSoftmax", "Log")],
            default_keep_fp32=False,
            check=lambda f: checks.check_precision(ar_fp32.path, f),
        )
    assert not (tmp_path / "ar.naive.fp16.onnx").exists()
