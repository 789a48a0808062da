"""FP16 ONNX: FP32 I/O, FP16 inside, keep-in-FP32 list, static graph, checked, nothing half-written."""

from __future__ import annotations

import onnx
import pytest
import torch

from deploy_ran.artifacts import read_artifact_info
from deploy_ran.compare.runner_checks import RunnerChecks
from deploy_ran.errors import DeployRanError, OnnxFileError, ParityError
from deploy_ran.models import create_model
from exporters.fp16 import DEFAULT_KEEP_FP32, convert_to_fp16
from exporters.graph_checks import check_graph

FLOAT, FLOAT16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16


@pytest.fixture(scope="module")
def fp32(export_cache):
    return export_cache("ran56_cifar", image_size=32)


def _elem_types(model):
    inferred = onnx.shape_inference.infer_shapes(model)
    return {
        vi.name: vi.type.tensor_type.elem_type
        for vi in list(inferred.graph.value_info)
        + list(inferred.graph.input)
        + list(inferred.graph.output)
    }


def test_fp16_file_is_fp16_inside_fp32_at_the_edges(fp32, tmp_path):
    checks = RunnerChecks()
    result = convert_to_fp16(
        fp32.path, tmp_path / "m.fp16.onnx", check=lambda f: checks.check_precision(fp32.path, f)
    )
    model = onnx.load(result.path)
    types = _elem_types(model)
    assert types["input"] == FLOAT and types["logits"] == FLOAT
    weights = [i for i in model.graph.initializer if i.data_type in (FLOAT, FLOAT16)]
    convs = {n.input[1] for n in model.graph.node if n.op_type == "Conv"}
    assert all(i.data_type == FLOAT16 for i in weights if i.name in convs)
    # Every Conv computes in FP16; the kept ops (global average pool) compute in FP32.
    for node in model.graph.node:
        if node.op_type == "Conv":
            assert types[node.output[0]] == FLOAT16
        if node.op_type in DEFAULT_KEEP_FP32:
            assert types[node.output[0]] == FLOAT, node.name
    assert result.kept_nodes and result.casts >= 2
    assert read_artifact_info(result.path).precision == "fp16"
    # The static-graph promises survive: every Resize has a constant output size.
    report = check_graph(model, static_batch=False)
    assert report.ok, report.problems
    assert report.resizes and all(r.output_hw for r in report.resizes)
    onnx.checker.check_model(model, full_check=True)
    # Checked against the FP32 file in ONNX Runtime, at batch 1 and 3, with the FP16 criteria.
    assert result.check.inputs["batch_size"] == "1 and 3"
    assert result.check.passed and result.check.criteria["max_rel_l2"] == 1e-2
    assert all(o.finite for o in result.check.outputs)
    assert result.size_bytes < 0.6 * result.source_size_bytes


def test_keep_fp32_list_is_overridable(fp32, tmp_path):
    none = convert_to_fp16(fp32.path, tmp_path / "a.onnx", default_keep_fp32=False)
    types = _elem_types(onnx.load(none.path))
    mean = next(n for n in onnx.load(none.path).graph.node if n.op_type == "ReduceMean")
    assert types[mean.output[0]] == FLOAT16 and none.kept_nodes == []

    sig = convert_to_fp16(fp32.path, tmp_path / "b.onnx", keep_fp32=["Sigmoid"])
    assert sig.keep_fp32 == [*DEFAULT_KEEP_FP32, "Sigmoid"]  # added to the defaults
    model = onnx.load(sig.path)
    types = _elem_types(model)
    sigmoids = [n for n in model.graph.node if n.op_type == "Sigmoid"]
    assert sigmoids and all(types[n.output[0]] == FLOAT for n in sigmoids)

    with pytest.raises(DeployRanError, match="op types"):
        convert_to_fp16(fp32.path, tmp_path / "c.onnx", keep_fp32=["sigmoid"])
    assert not (tmp_path / "c.onnx").exists()


def test_drift_beyond_the_limit_writes_nothing(fp32, tmp_path):
    out = tmp_path / "drift.onnx"

    checks = RunnerChecks()

    def against_wrong_reference(candidate):  # an FP32 reference the FP16 file cannot match
        other = create_model("ran56_cifar", image_size=32, num_classes=10)
        with torch.no_grad():
            other.fc.bias.add_(100.0)
        return checks.check_precision(other, candidate)

    with pytest.raises(ParityError, match="drifts"):
        convert_to_fp16(fp32.path, out, check=against_wrong_reference)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == []


def test_fp16_and_int8_inputs_are_refused(fp32, tmp_path):
    first = convert_to_fp16(fp32.path, tmp_path / "m.fp16.onnx")
    with pytest.raises(OnnxFileError, match="already a FP16"):
        convert_to_fp16(first.path, tmp_path / "again.onnx")
    assert not (tmp_path / "again.onnx").exists()
    with pytest.raises(DeployRanError, match="overwrite"):
        convert_to_fp16(fp32.path, fp32.path)


def test_cli_export_fp16_writes_both_and_checks_against_eager(cli, tmp_path):
    out = tmp_path / "m.fp16.onnx"
    result = cli(
        ["export", "ran56_cifar", "--precision", "fp16", "--static-batch", "--output", str(out)],
    )
    assert result.exit_code == 0, result.output
    assert out.exists() and (tmp_path / "m.onnx").exists()
    assert "eager PyTorch" in result.output and "pass" in result.output
    assert read_artifact_info(out).precision == "fp16"
    assert read_artifact_info(tmp_path / "m.onnx").precision == "fp32"

    converted = cli(
        ["export", str(tmp_path / "m.onnx"), "--precision", "fp16", "--keep-fp32", "Sigmoid"],
    )
    assert converted.exit_code == 0, converted.output
    assert (tmp_path / "m.fp16.onnx").exists()

    int8 = cli(["export", "ran56_cifar", "--precision", "int8"])
    assert int8.exit_code == 2 and "calibrate" in int8.output
