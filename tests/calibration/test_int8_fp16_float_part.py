"""INT8 with an FP16 float part, and calibrate refusing a file that would fail verify (issue 10)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from calibration.quantize import quantize_int8
from deploy_ran.artifacts import precision_of, read_artifact_info
from deploy_ran.compare.runner_checks import RunnerChecks
from deploy_ran.errors import AccuracyError, DeployRanError
from deploy_ran.runners.ort_runner import OrtRunner
from deploy_ran.runners.reference_runner import ReferenceRunner

FAST = dict(
    data="synthetic", method="minmax", num_images=16, batch=8, eval_images=8,
    run_model=RunnerChecks().run_model, use_cache=False,
)


@pytest.fixture(scope="module")
def fp32(export_cache):
    return export_cache("ran56_cifar", image_size=32)


def test_int8_with_an_fp16_float_part(fp32, tmp_path):
    result = quantize_int8(fp32.path, tmp_path / "m.int8.onnx", float_precision="fp16", **FAST)
    model = onnx.load(result.path)
    assert precision_of(model) == "int8" and result.float_precision == "fp16"
    assert read_artifact_info(result.path).extra["int8_float_precision"] == "fp16"
    assert {o.version for o in model.opset_import if o.domain == ""} == {19}
    # FP32 at the edges, FP16 inside: every float initializer (BN, biases, Q/DQ scales) is FP16
    # except those of the ops the FP16 keep-list holds in FP32.
    F32, F16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
    assert [i.type.tensor_type.elem_type for i in model.graph.input] == [F32]
    assert {o.type.tensor_type.elem_type for o in model.graph.output} == {F32}
    inits = {i.name: i for i in model.graph.initializer}
    scales = [inits[n.input[1]].data_type for n in model.graph.node if n.op_type == "DequantizeLinear"]
    assert scales and set(scales) == {F16}
    casts = sum(n.op_type == "Cast" for n in model.graph.node)
    assert casts <= 6  # input, output, around the global-pool ReduceMean: no Cast per Q/DQ
    # Judged by verify's INT8 criteria, evaluated as TensorRT computes Q/DQ.
    assert result.passed and result.verdict["passed"]
    assert "fake-quantize in float" in result.arithmetic
    assert result.as_dict()["evaluation_arithmetic"] == result.arithmetic
    # ONNX Runtime and the float16-strict reference evaluator agree on the file.
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32), dtype=np.float32)
    with OrtRunner(result.path, threads=1) as ort_side, ReferenceRunner(result.path) as strict:
        a, b = ort_side.run(x)["logits"], strict.run(x)["logits"]
    assert np.isfinite(b).all()
    assert np.linalg.norm(a - b) / np.linalg.norm(a) < 2e-2


def test_float_precision_is_checked(fp32, tmp_path):
    with pytest.raises(DeployRanError, match="float_precision") as info:
        quantize_int8(fp32.path, tmp_path / "x.onnx", float_precision="bf16", **FAST)
    assert info.value.param == "float_precision"


def test_calibrate_refuses_a_file_that_fails_verify(fp32, tmp_path):
    # One outlier pixel in the calibration set: min-max ranges make the input scale ~16, so every
    # ordinary input quantizes to 0 or ±16 and the INT8 file is wrong, though it is a valid file.
    rng = np.random.default_rng(0)
    data = rng.standard_normal((16, 3, 32, 32), dtype=np.float32)
    data[0, 0, 0, 0] = 2000.0
    np.save(tmp_path / "cal.npy", data)
    options = {**FAST, "data": str(tmp_path / "cal.npy")}
    out = tmp_path / "bad.int8.onnx"
    with pytest.raises(AccuracyError, match="fails verify's INT8 criteria") as info:
        quantize_int8(fp32.path, out, **options)
    assert info.value.exit_code == 1
    assert not out.exists()
    written = quantize_int8(fp32.path, out, require_pass=False, **options)
    assert out.exists() and written.passed is False
    assert any("fails verify's INT8 criteria" in w for w in written.warnings)


@pytest.mark.parametrize("float_precision", ["fp32", "fp16"])
def test_sensitivity_judges_candidates_with_the_float_part_of_the_file(
    fp32, tmp_path, float_precision
):
    """Sensitivity and exclude=auto pick groups for the file that is written: with an FP16 float
    part, every candidate they run has it too (and the FP32 reference does not)."""
    seen: list[set[int]] = []
    run = RunnerChecks().run_model

    def recording_run_model(model, images, batch):
        seen.append({i.data_type for i in model.graph.initializer})
        return run(model, images, batch)

    result = quantize_int8(
        fp32.path,
        tmp_path / "s.int8.onnx",
        float_precision=float_precision,
        sensitivity=True,
        **{**FAST, "run_model": recording_run_model},
    )
    F16 = onnx.TensorProto.FLOAT16
    assert result.sensitivity.float_precision == float_precision
    # Sensitivity runs first: the FP32 reference, all-INT8, then each group alone (the runs after
    # those are the written file's own check).
    reference, *candidates = seen[: len(result.sensitivity.groups) + 2]
    assert F16 not in reference and len(candidates) == len(result.sensitivity.groups) + 1
    assert all((F16 in c) == (float_precision == "fp16") for c in candidates)
