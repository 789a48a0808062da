"""Export to ONNX: parity with eager PyTorch, static Resize sizes, static shapes, metadata."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from deploy_ran.artifacts import read_artifact_info
from deploy_ran.compare.runner_checks import RunnerChecks
from deploy_ran.errors import DeployRanError
from deploy_ran.models import create_model, get_spec, list_models
from exporters.graph_checks import check_graph
from exporters.onnx import export_onnx
from tests.conftest import small_size

SLOW_EXPORTS = {"ran452_cifar", "ran236_cifar", "ran164_cifar"}
# Attention families: the 101/152-layer ABNs and WRN-40-10 export in the slow suite.
SLOW_EXPORTS |= {"abn_resnet101", "abn_resnet152", "wrn40_10_ar"}
# Export the attention families with every output they have, on BN-calibrated weights (see
# tests.conftest.calibrate_batchnorm), so parity covers each output with unsaturated maps.
ALL_OUTPUTS = {
    "ABN": {"outputs": ("logits", "attention_logits", "attention")},
    "ABN-CIFAR": {"outputs": ("logits", "attention_logits", "attention")},
    "A&R": {"return_attention": True},
}
RAN_FAMILIES = {"RAN", "RAN-CIFAR"}


def _model_params(name):
    return pytest.param(name, marks=pytest.mark.slow) if name in SLOW_EXPORTS else name


@pytest.mark.parametrize("name", [_model_params(n) for n in list_models()])
def test_export_matches_eager_and_is_static(name, export_cache, calibrated_checkpoint):
    family = get_spec(name).family
    size = small_size(name)
    if family in RAN_FAMILIES:
        result = export_cache(name, image_size=size)
    else:
        ckpt = calibrated_checkpoint(name, size)
        result = export_cache(name, image_size=size, checkpoint=ckpt, **ALL_OUTPUTS[family])
        # Every output of the model is a graph output and was compared.
        assert {o.name for o in result.check.outputs} == set(result.output_names)
        assert len(result.output_names) > 1
    assert result.path.exists()
    # Parity at batch 1 and a larger batch, within the toolkit's FP32 limit.
    assert result.check.inputs["batch_size"] == "1 and 3"
    assert result.check.criteria["max_rel_l2"] == 1e-4
    assert result.check.passed and result.check.max_rel_l2() <= 1e-4
    model = onnx.load(result.path)
    onnx.checker.check_model(model, full_check=True)
    report = check_graph(model, static_batch=False)
    assert report.ok, report.problems
    if family in RAN_FAMILIES:
        assert report.resizes, "a RAN must have Resize nodes"
    else:
        assert report.resizes == []  # ABN and A&R do not upsample
    for resize in report.resizes:
        assert resize.mode == "linear"
        assert resize.coordinate_transformation_mode == "align_corners"
        assert resize.output_hw is not None
    assert report.dynamic_tensors == []
    graph_input = model.graph.input[0].type.tensor_type.shape.dim
    assert graph_input[0].dim_param == "batch"
    assert [d.dim_value for d in graph_input[1:]] == [3, result.image_size, result.image_size]


def test_resize_sizes_are_the_models_own(export_cache):
    result = export_cache("ran92", image_size=320)
    model = create_model("ran92", image_size=320)
    from deploy_ran.models.ran import SoftMaskBranch

    expected = sorted(
        {size for m in model.modules() if isinstance(m, SoftMaskBranch) for size in m.sizes[:-1]}
    )
    assert sorted({r.output_hw for r in result.graph.resizes}) == expected
    assert (80, 80) in expected  # stage 1 at 320 px runs at 80×80, as in the paper's test size
    assert result.check.passed


def test_odd_input_size_exports_and_matches(export_cache):
    result = export_cache("ran92", image_size=97)
    assert result.check.passed
    assert result.graph.ok


def test_static_batch_has_no_shape_op(export_cache):
    result = export_cache("ran56_cifar", static_batch=True, batch=2)
    model = onnx.load(result.path)
    ops = {n.op_type for n in model.graph.node}
    assert "Shape" not in ops
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 2
    assert result.check.inputs["batch_size"] == 2 and result.check.passed
    assert all(r.source == "constant sizes" for r in result.graph.resizes)


@pytest.mark.parametrize(
    "options",
    [
        {"attention": "channel"},
        {"attention": "spatial"},
        {"attention_residual": False},
        {"mask": "local_conv"},
        {"variant": "port"},
    ],
)
def test_ablation_options_export(options, export_cache):
    result = export_cache("ran56_cifar", **options)
    assert result.check.passed
    info = read_artifact_info(result.path)
    for key, value in options.items():
        assert info.options[key] == value


def test_metadata_describes_the_artifact(export_cache, tmp_path):
    result = export_cache("ran56_cifar")
    info = read_artifact_info(result.path)
    assert info.model == "ran56_cifar"
    assert info.image_size == 32 and info.num_classes == 10
    assert info.precision == "fp32" and info.dynamic_batch is True
    assert info.preprocessing["mean"] == [0.4914, 0.4822, 0.4465]
    assert info.outputs == ["logits"]
    assert info.checkpoint_sha256 is None


def test_checkpoint_hash_in_metadata_and_weights_exported(tmp_path):
    model = create_model("ran56_cifar", num_classes=4)
    torch.manual_seed(3)
    with torch.no_grad():
        model.fc.weight.normal_()
    ckpt = tmp_path / "w.pt"
    torch.save({"state_dict": model.state_dict()}, ckpt)
    out = tmp_path / "w.onnx"
    result = export_onnx("ran56_cifar", out, checkpoint=ckpt, check=RunnerChecks().check_export)
    info = read_artifact_info(out)
    import hashlib

    assert info.checkpoint_sha256 == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert info.num_classes == 4
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(session.run(None, {"input": x})[0], ref, rtol=1e-4, atol=1e-5)
    assert result.check.passed


def test_attention_maps_are_named_outputs(export_cache):
    result = export_cache("ran56_cifar", return_attention=True)
    names = [o.name for o in onnx.load(result.path).graph.output]
    assert names == [
        "logits",
        "attention_stage1_module1",
        "attention_stage2_module1",
        "attention_stage3_module1",
    ]
    assert {o.name for o in result.check.outputs} == set(names)
    assert read_artifact_info(result.path).outputs == names


def test_unwritable_output_fails_before_work_and_leaves_nothing(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        target = folder / "m.onnx"
        if os.access(folder, os.W_OK):  # root ignores permissions: use a filesystem nobody writes
            target = Path("/proc/deploy_ran_test.onnx")
        with pytest.raises(DeployRanError, match="not writable"):
            export_onnx("ran56_cifar", target)
        assert not target.exists()
    finally:
        folder.chmod(stat.S_IRWXU)
    assert list(folder.iterdir()) == []


def test_output_inside_a_file_is_a_clear_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(DeployRanError, match="not a folder"):
        export_onnx("ran56_cifar", tmp_path / "file" / "m.onnx")


def test_missing_output_folder_is_a_clear_error(tmp_path):
    with pytest.raises(DeployRanError, match="does not exist"):
        export_onnx("ran56_cifar", tmp_path / "nope" / "m.onnx")


def test_failed_parity_writes_nothing_and_keeps_existing_file(tmp_path):
    out = tmp_path / "m.onnx"
    out.write_bytes(b"previous")
    checks = RunnerChecks()

    def broken(eager, onnx_file):
        with torch.no_grad():  # perturb the eager side so ONNX Runtime disagrees with it
            eager.fc.bias.add_(1.0)
        return checks.check_export(eager, onnx_file)

    with pytest.raises(DeployRanError, match="rel_l2"):
        export_onnx("ran56_cifar", out, check=broken)
    assert out.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


def test_bad_batch_and_opset_are_rejected(tmp_path):
    with pytest.raises(DeployRanError, match="batch"):
        export_onnx("ran56_cifar", tmp_path / "a.onnx", batch=0)
    with pytest.raises(DeployRanError, match="opset"):
        export_onnx("ran56_cifar", tmp_path / "a.onnx", opset=11)
    with pytest.raises(DeployRanError, match="opset"):
        export_onnx("ran56_cifar", tmp_path / "a.onnx", opset=99)


def test_seeded_weights_are_recorded_and_files_follow_the_umask(export_cache):
    result = export_cache("ran56_cifar")
    info = read_artifact_info(result.path)
    assert info.checkpoint_sha256 is None and info.init_seed == 0
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(result.path.stat().st_mode) == 0o666 & ~umask
