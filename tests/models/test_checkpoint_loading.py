"""Checkpoints: safe loading, layouts, prefixes, clear mismatch reports, the port's state dicts."""

from __future__ import annotations

import json

import pytest
import torch

from deploy_ran.compare.metrics import relative_l2
from deploy_ran.errors import CheckpointError
from deploy_ran.models import create_model
from tests.paths import DATA
from tests.port_weights import seeded_input, seeded_state_dict


@pytest.fixture(scope="module")
def small_state():
    torch.manual_seed(0)
    model = create_model("ran56_cifar")
    with torch.no_grad():
        model.fc.bias.normal_()
    return model.state_dict()


def _logits(model):
    with torch.no_grad():
        return model(torch.ones(1, 3, 32, 32))


@pytest.mark.parametrize(
    "layout", ["bare", "state_dict", "model", "module_prefix", "compiled_prefix"]
)
def test_accepted_layouts_load_the_same_weights(layout, small_state, tmp_path):
    state = dict(small_state)
    if layout == "module_prefix":
        state = {f"module.{k}": v for k, v in state.items()}
    if layout == "compiled_prefix":
        state = {f"_orig_mod.{k}": v for k, v in state.items()}
    obj = {layout: state, "epoch": 3} if layout in ("state_dict", "model") else state
    path = tmp_path / "ckpt.pth"
    torch.save(obj, path)
    model = create_model("ran56_cifar", checkpoint=path)
    assert torch.equal(model.fc.bias, small_state["fc.bias"])
    assert model.load_report.ok


def test_num_classes_is_read_from_the_checkpoint(tmp_path):
    path = tmp_path / "c7.pt"
    torch.save(create_model("ran56_cifar", num_classes=7).state_dict(), path)
    assert create_model("ran56_cifar", checkpoint=path).fc.out_features == 7


def test_class_mismatch_names_the_fix(small_state, tmp_path):
    path = tmp_path / "c10.pt"
    torch.save(small_state, path)
    with pytest.raises(CheckpointError) as info:
        create_model("ran56_cifar", checkpoint=path, num_classes=3)
    assert "--num-classes 10" in info.value.hint
    assert "fc.weight" in str(info.value)


def test_other_architecture_lists_missing_and_unexpected(small_state, tmp_path):
    path = tmp_path / "ran56.pt"
    torch.save(small_state, path)
    with pytest.raises(CheckpointError) as info:
        create_model("ran92_cifar", checkpoint=path)
    message = str(info.value)
    assert "missing from the checkpoint" in message
    assert "stages.0.attention.1" in message


def test_shape_mismatch_is_reported(small_state, tmp_path):
    state = dict(small_state)
    state["stem.0.weight"] = torch.zeros(16, 3, 5, 5)
    path = tmp_path / "bad.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"stem.0.weight checkpoint \(16, 3, 5, 5\)"):
        create_model("ran56_cifar", checkpoint=path)


def test_corrupt_file(tmp_path):
    path = tmp_path / "corrupt.pt"
    path.write_bytes(b"PK\x03\x04 this is not a zip archive")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        create_model("ran56_cifar", checkpoint=path)


def test_truncated_file(small_state, tmp_path):
    path = tmp_path / "full.pt"
    torch.save(small_state, path)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="not a readable"):
        create_model("ran56_cifar", checkpoint=cut)


def test_pickled_module_is_refused_with_weights_only(tmp_path):
    path = tmp_path / "whole_model.pt"
    torch.save(torch.nn.Linear(2, 2), path)
    with pytest.raises(CheckpointError) as info:
        create_model("ran56_cifar", checkpoint=path)
    assert "weights_only" in str(info.value)
    assert "state_dict()" in info.value.hint


def test_missing_and_directory_paths(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        create_model("ran56_cifar", checkpoint=tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="is a directory"):
        create_model("ran56_cifar", checkpoint=tmp_path)


def test_not_a_state_dict(tmp_path):
    path = tmp_path / "list.pt"
    torch.save([1, 2, 3], path)
    with pytest.raises(CheckpointError, match="not a state_dict"):
        create_model("ran56_cifar", checkpoint=path)


@pytest.fixture(scope="module")
def port_fixture():
    return json.loads((DATA / "port_ran92.json").read_text())


def test_port_state_dict_maps_and_reproduces_the_ports_logits(port_fixture, tmp_path):
    """Weights saved by the PyTorch port load into ran92(variant='port') and give its logits."""
    state = seeded_state_dict([(k, s) for k, s in port_fixture["keys"]])
    path = tmp_path / "port.pth"
    torch.save(state, path)
    model = create_model("ran92", variant="port", checkpoint=path)
    report = model.load_report
    assert report.converted_from == "tengshaofeng/ResidualAttentionNetwork-pytorch"
    assert report.ok
    # Every unused shortcut of the port (it builds conv4 in every unit) is dropped, nothing else.
    assert report.dropped and all(k.endswith("conv4.weight") for k in report.dropped)
    assert len(state) - len(report.dropped) == sum(
        1 for k in model.state_dict() if not k.endswith("num_batches_tracked")
    )
    with torch.no_grad():
        logits = model(seeded_input())
    expected = torch.tensor(port_fixture["logits"])
    assert relative_l2(expected.numpy(), logits.numpy()) < 1e-4


def test_port_arithmetic_differs_from_the_paper(port_fixture, tmp_path):
    """The same port weights in the paper variant give other logits: the option matters."""
    state = seeded_state_dict([(k, s) for k, s in port_fixture["keys"]])
    path = tmp_path / "port.pth"
    torch.save(state, path)
    model = create_model("ran92", variant="paper", checkpoint=path)
    with torch.no_grad():
        logits = model(seeded_input())
    assert relative_l2(torch.tensor(port_fixture["logits"]).numpy(), logits.numpy()) > 1e-2


class _RunsCode:
    def __reduce__(self):
        import os

        return (os.system, ("echo this must never run",))


def test_malicious_pickle_is_reported_as_refused_not_truncated(tmp_path):
    """torch 2.13 reworded the refusal ("unsupported GLOBAL x whose module x is blocked")."""
    path = tmp_path / "evil.pt"
    torch.save({"weight": torch.zeros(2), "payload": _RunsCode()}, path)
    with pytest.raises(CheckpointError) as info:
        create_model("ran56_cifar", checkpoint=path)
    text = str(info.value)
    assert "refused by torch.load(weights_only=True)" in text and "system" in text
    assert "truncated" not in text


def test_raw_pickle_is_refused_and_garbage_is_unreadable(tmp_path):
    import pickle

    raw = tmp_path / "raw.pkl"
    raw.write_bytes(pickle.dumps({"weight": [1.0, 2.0], "f": {1, 2}}, protocol=4))
    with pytest.raises(CheckpointError, match="refused by torch.load|pickled Python object"):
        create_model("ran56_cifar", checkpoint=raw)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"garbage, not a checkpoint at all\n" * 4)
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint") as info:
        create_model("ran56_cifar", checkpoint=junk)
    assert "weights_only" not in str(info.value)
