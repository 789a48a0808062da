"""verify: the same model passes, a perturbed one fails with exit code 1 and named inputs."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from deploy_ran.errors import DeployRanError
from deploy_ran.verify import criteria_for, load_inputs, precision_family, verify


@pytest.fixture(scope="module")
def perturbed_onnx(cifar_onnx, tmp_path_factory):
    """The same graph with every convolution's weights scaled by 1 + 5% noise."""
    model = onnx.load(cifar_onnx)
    rng = np.random.default_rng(1)
    for init in model.graph.initializer:
        w = numpy_helper.to_array(init)
        if w.dtype == np.float32 and w.ndim == 4:
            noisy = w * (1 + 0.05 * rng.standard_normal(w.shape))
            init.CopyFrom(numpy_helper.from_array(noisy.astype(np.float32), init.name))
    path = tmp_path_factory.mktemp("perturbed") / "ran56_cifar.perturbed.onnx"
    onnx.save(model, path)
    return path


def test_good_pair_passes_on_images_and_names_them(cifar_checkpoint, cifar_onnx, image_folder):
    result = verify(
        "ran56_cifar",
        cifar_onnx,
        checkpoint=cifar_checkpoint,
        data=image_folder,
        batch_size=5,
        threads=1,
    )
    assert result.passed, result.as_dict()
    assert result.precision == "fp32" and result.criteria == criteria_for("fp32")
    assert result.criteria["max_rel_l2"] == 1e-4
    assert result.inputs["count"] == 12
    assert sorted(s["path"].split("/")[-1] for s in result.inputs["skipped"]) == [
        "im05_broken.png",
        "im09_empty.jpg",
    ]
    (logits,) = result.outputs
    assert logits.name == "logits" and logits.shape == [12, 10]
    assert logits.agreement.rel_l2 < 1e-5 and logits.agreement.top1 == 1.0
    assert len(result.worst) == 5
    assert all(w.name.endswith(".png") and str(image_folder) in w.name for w in result.worst)
    scores = [w.rel_l2 for w in result.worst]
    assert scores == sorted(scores, reverse=True)
    json.dumps(result.as_dict())  # JSON-serialisable


def test_perturbed_candidate_fails_with_exit_code_1(
    cli, cifar_checkpoint, cifar_onnx, perturbed_onnx, tmp_path
):
    report = tmp_path / "report.json"
    args = ["--checkpoint", str(cifar_checkpoint), "--threads", "1", "-n", "12", "-o", str(report)]
    bad = cli(["verify", "ran56_cifar", str(perturbed_onnx), *args])
    assert bad.exit_code == 1, bad.output
    assert "FAIL" in bad.output and "max_rel_l2" in bad.output
    assert "random[" in bad.output  # the worst inputs are named
    data = json.loads(report.read_text())
    assert data["passed"] is False
    failed = [c for c in data["checks"] if not c["passed"]]
    assert failed and failed[0]["criterion"] == "max_rel_l2" and failed[0]["value"] > 1e-4
    assert data["worst_inputs"][0]["name"].startswith("random[")

    good = cli(["verify", "ran56_cifar", str(cifar_onnx), *args[:-2], "--json"])
    assert good.exit_code == 0, good.output
    assert json.loads(good.output)["passed"] is True

    # loosening one criterion leaves the per-kind ones in force: the perturbation also changes
    # how the logits vary across inputs, which the input-centred cosine still catches
    loose = cli(["verify", "ran56_cifar", str(perturbed_onnx), *args[:-2], "--max-rel-l2", "0.5"])
    assert loose.exit_code == 1 and "logits.min_input_centred_cosine" in loose.output
    # loose enough on every criterion, the perturbed file passes
    looser = verify(
        "ran56_cifar",
        perturbed_onnx,
        checkpoint=cifar_checkpoint,
        num_inputs=12,
        threads=1,
        criteria={"max_rel_l2": 0.5, "logits.min_input_centred_cosine": 0.9},
    )
    assert looser.passed, looser.as_dict()["checks"]


def test_fp16_candidate_is_judged_by_fp16_criteria(cifar_checkpoint):
    result = verify(
        "ran56_cifar",
        "ran56_cifar",
        checkpoint=cifar_checkpoint,
        candidate_precision="fp16",
        num_inputs=8,
        threads=1,
        criteria={"atol": 0.05},
    )
    assert result.precision == "fp16"
    plain = {c.criterion for c in result.checks if "." not in c.criterion}
    assert plain == {"max_rel_l2", "min_top1", "allclose"}
    assert "logits.min_input_centred_cosine" in {c.criterion for c in result.checks}
    assert result.passed, result.as_dict()
    assert 0 < result.outputs[0].agreement.rel_l2 < 1e-2


def test_criteria_defaults_and_overrides():
    def plain(crit):  # the limits every output gets; "kind.criterion" keys are per kind
        return {k: v for k, v in crit.items() if "." not in k}

    assert plain(criteria_for("fp32")) == {"max_rel_l2": 1e-4}
    assert plain(criteria_for("fp16")) == {"max_rel_l2": 1e-2, "min_top1": 0.99}
    assert plain(criteria_for("int8")) == {"min_cosine": 0.99, "min_top1": 0.95}
    assert precision_family("autocast-bf16") == "bf16"
    assert plain(criteria_for("int8", {"min_top1": 0.9, "min_top5": 1.0, "max_abs": None})) == {
        "min_cosine": 0.99,
        "min_top1": 0.9,
        "min_top5": 1.0,
    }
    assert criteria_for("fp32", {"rtol": 1e-3})["atol"] == 0.0
    with pytest.raises(DeployRanError, match="Unknown criterion"):
        criteria_for("fp32", {"max_rel": 1.0})


def test_array_inputs_and_their_errors(tmp_path):
    x = np.random.default_rng(0).standard_normal((4, 3, 32, 32), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    np.savez(tmp_path / "x.npz", input=x, other=x[:1])
    got = load_inputs(tmp_path / "x.npy", (3, 32, 32), num=3)
    assert got.data.shape == (3, 3, 32, 32) and got.names[2] == "x.npy[2]"
    assert load_inputs(tmp_path / "x.npz", (3, 32, 32)).data.shape == (4, 3, 32, 32)
    with pytest.raises(DeployRanError, match=r"expect \[N, 3, 64, 64\]"):
        load_inputs(tmp_path / "x.npy", (3, 64, 64))
    np.savez(tmp_path / "two.npz", a=x, b=x)
    with pytest.raises(DeployRanError, match="cannot tell which one"):
        load_inputs(tmp_path / "two.npz", (3, 32, 32))
    with pytest.raises(DeployRanError, match="does not exist"):
        load_inputs(tmp_path / "missing.npy", (3, 32, 32))
    rand = load_inputs(None, (3, 32, 32), num=5, seed=3)
    np.testing.assert_array_equal(rand.data, load_inputs(None, (3, 32, 32), num=5, seed=3).data)


def test_missing_checkpoint_and_wrong_sizes_are_refused(cli, cifar_onnx, tmp_path):
    with pytest.raises(DeployRanError, match="exported from a checkpoint"):
        verify("ran56_cifar", cifar_onnx, threads=1)
    result = cli(["verify", "ran56_cifar", str(tmp_path / "nope.onnx")])
    assert result.exit_code == 2 and "does not exist" in result.output


def test_model_name_against_its_own_export_without_checkpoint(cli, tmp_path):
    """No weights anywhere: both sides use the seeded random initialisation, so they agree."""

    from exporters.onnx import export_onnx

    onnx_path = tmp_path / "m.onnx"
    export_onnx("ran56_cifar", onnx_path, static_batch=True, batch=2)
    result = cli(
        ["verify", "ran56_cifar", str(onnx_path), "-n", "4", "--batch", "2", "--threads", "1"]
    )
    assert result.exit_code == 0, result.output
    assert "seeded random weights" in result.output
