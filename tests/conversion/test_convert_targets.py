"""The conversion entry point: every target kind × precision, naming, refusals, keep_fp32."""

from __future__ import annotations

import json
import os

import onnx
import pytest

from deploy_ran.artifacts import precision_of
from deploy_ran.compare.runner_checks import RunnerChecks
from deploy_ran.convert import (
    CalibrationConfig,
    ExportConfig,
    Fp16Config,
    convert,
    default_output,
    resolve_target,
)
from deploy_ran.errors import DeployRanError
from exporters.fp16 import DEFAULT_KEEP_FP32

MODEL = "ran56_cifar"
SIZE = 16  # 32 is the model's size; 16 keeps every conversion here to seconds
CAL = CalibrationConfig(data="synthetic", num_images=8, batch=4, eval_images=4)


@pytest.fixture(scope="module")
def fp32_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("convert")
    result = convert(
        MODEL,
        output=folder / "m.onnx",
        export=ExportConfig(image_size=SIZE),
        checks=RunnerChecks(),
    )
    return result


def test_model_name_to_fp32_is_checked_against_eager(fp32_file):
    r = fp32_file
    assert r.target.kind == "model" and r.precision == "fp32"
    assert r.path.name == "m.onnx" and r.path.exists()
    assert r.export is not None and r.export.check.passed
    assert r.export.check.criteria["max_rel_l2"] == 1e-4  # plus the per-kind limits
    assert precision_of(onnx.load(r.path, load_external_data=False)) == "fp32"


def test_onnx_target_keeps_its_precision_without_work(fp32_file):
    r = convert(fp32_file.path)
    assert r.target.kind == "onnx" and r.path == fp32_file.path and r.precision == "fp32"
    assert r.export is None and r.fp16 is None and r.int8 is None


def test_onnx_to_fp16_names_the_file_and_checks_it(fp32_file, tmp_path):
    out = tmp_path / "x.fp16.onnx"
    r = convert(fp32_file.path, "fp16", output=out, checks=RunnerChecks())
    assert r.path == out and r.precision == "fp16"
    assert r.fp16.check.passed and r.fp16.check.precision == "fp16"
    # keep_fp32 has one meaning: the defaults stay protected
    assert set(DEFAULT_KEEP_FP32) <= set(r.fp16.keep_fp32)


def test_keep_fp32_adds_to_the_defaults_unless_dropped(fp32_file, tmp_path):
    added = convert(
        fp32_file.path, "fp16", output=tmp_path / "a.onnx", fp16=Fp16Config(keep_fp32=("Sigmoid",))
    )
    assert added.fp16.keep_fp32 == [*DEFAULT_KEEP_FP32, "Sigmoid"]
    dropped = convert(
        fp32_file.path,
        "fp16",
        output=tmp_path / "b.onnx",
        fp16=Fp16Config(keep_fp32=("Sigmoid",), default_keep_fp32=False),
    )
    assert dropped.fp16.keep_fp32 == ["Sigmoid"]
    assert added.fp16.check is None  # no checks object: graph-checked only


def test_onnx_to_int8_evaluates_through_the_runner(fp32_file, tmp_path):
    out = tmp_path / "x.int8.onnx"
    r = convert(fp32_file.path, "int8", output=out, calibration=CAL, checks=RunnerChecks())
    assert r.precision == "int8" and out.exists()
    assert r.int8.agreement and r.int8.eval_images == 4
    assert precision_of(onnx.load(out)) == "int8"


def test_int8_without_checks_is_written_unchecked_and_auto_refused(fp32_file, tmp_path):
    r = convert(fp32_file.path, "int8", output=tmp_path / "u.onnx", calibration=CAL)
    assert r.int8.agreement == [] and any("not compared" in w for w in r.int8.warnings)
    auto = CalibrationConfig(data="synthetic", num_images=8, exclude=("auto",))
    with pytest.raises(DeployRanError, match="run_model"):
        convert(fp32_file.path, "int8", output=tmp_path / "v.onnx", calibration=auto)
    assert not (tmp_path / "v.onnx").exists()


def test_model_name_to_fp16_writes_both_files_and_reuses_only_a_matching_fp32(tmp_path):
    out = tmp_path / "n.fp16.onnx"
    r = convert(MODEL, "fp16", output=out, export=ExportConfig(image_size=SIZE), checks=RunnerChecks())
    assert r.steps[0].startswith("exported") and (tmp_path / "n.onnx").exists()
    assert r.fp16.check.passed and r.export.check.passed
    # The FP32 file beside it was not named: the same request reuses it, unchanged ...
    before = (tmp_path / "n.onnx").read_bytes()
    again = convert(MODEL, "fp16", output=out, export=ExportConfig(image_size=SIZE))
    assert again.export is None and "metadata matches" in again.steps[0]
    assert (tmp_path / "n.onnx").read_bytes() == before
    # ... and a different one is refused, saying how the file differs, and leaves it alone.
    other = ExportConfig(image_size=SIZE, static_batch=True, batch=2)
    with pytest.raises(DeployRanError, match=r"batch: dynamic vs static 2") as err:
        convert(MODEL, "fp16", output=out, export=other)
    assert "existing vs requested" in str(err.value)
    assert (tmp_path / "n.onnx").read_bytes() == before


def test_reduced_precision_file_cannot_be_converted_again(fp32_file, tmp_path):
    fp16 = convert(fp32_file.path, "fp16", output=tmp_path / "h.onnx").path
    with pytest.raises(DeployRanError, match="already FP16"):
        convert(fp16, "int8", calibration=CAL)


def test_output_that_is_an_input_is_refused(fp32_file, tmp_path):
    src = fp32_file.path
    with pytest.raises(DeployRanError, match="destroy"):
        convert(src, "fp16", output=src)
    link = tmp_path / "link.onnx"
    os.symlink(src, link)
    with pytest.raises(DeployRanError, match="destroy"):
        convert(src, "fp16", output=link)
    with pytest.raises(DeployRanError, match="destroy"):
        convert(src, "fp16", output=tmp_path / ".." / tmp_path.name / "link.onnx")
    data = tmp_path / "cal.npy"
    data.write_bytes(b"")
    with pytest.raises(DeployRanError, match="destroy"):
        convert(src, "int8", output=data, calibration=CalibrationConfig(data=str(data)))
    ckpt = tmp_path / "w.pt"
    ckpt.write_bytes(b"weights")
    with pytest.raises(DeployRanError, match="destroy"):
        convert(MODEL, output=ckpt, export=ExportConfig(checkpoint=ckpt))
    assert ckpt.read_bytes() == b"weights"


def test_model_options_on_a_file_are_refused(fp32_file):
    with pytest.raises(DeployRanError, match="image_size"):
        convert(fp32_file.path, "fp16", export=ExportConfig(image_size=64))


def test_engine_target_precision_comes_from_the_sidecar(tmp_path):
    plan = tmp_path / "e.plan"
    plan.write_bytes(b"not really an engine")
    from deploy_ran.trt_compat import SIDECAR_FORMAT

    (tmp_path / "e.plan.json").write_text(
        json.dumps({"format": SIDECAR_FORMAT, "precision": "int8"})
    )
    target = resolve_target(plan)
    assert target.kind == "engine" and target.precision == "int8"
    assert convert(plan).path == plan
    with pytest.raises(DeployRanError, match="cannot become FP16"):
        convert(plan, "fp16")


def test_resolve_target_errors_say_what_was_expected(tmp_path):
    with pytest.raises(DeployRanError) as err:
        resolve_target("ran92x")
    assert "ran92" in str(err.value)
    odd = tmp_path / "weights.bin"
    odd.write_bytes(b"x")
    with pytest.raises(DeployRanError, match="expected a model name"):
        resolve_target(odd)
    with pytest.raises(DeployRanError, match="does not exist"):
        resolve_target(tmp_path / "missing.onnx")
    with pytest.raises(DeployRanError, match="Unknown precision"):
        convert(MODEL, "int4")


def test_default_names():
    assert default_output("ran92", "fp32").as_posix() == "ran92.onnx"
    assert default_output("out/ran92.onnx", "int8").as_posix() == "out/ran92.int8.onnx"
    assert default_output("out/ran92.fp16.onnx", "fp32").as_posix() == "out/ran92.onnx"
