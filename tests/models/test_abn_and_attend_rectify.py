"""Attention Branch Network and Attend-and-Rectify: arithmetic, outputs, options, checkpoints."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from deploy_ran.errors import CheckpointError, DeployRanError
from deploy_ran.models import create_model, get_spec, list_models
from deploy_ran.models.abn import ABN_OUTPUTS, parse_outputs
from deploy_ran.models.attend_rectify import AttendRectifyNet
from tests.conftest import calibrate_batchnorm

ABN_NAMES = ["abn_resnet50", "abn_resnet101", "abn_resnet152", "abn_resnet110_cifar"]
AR_NAMES = ["wrn16_4_ar", "wrn28_10_ar", "wrn40_10_ar"]
# The official code's parameter counts quoted for these models (ResNet-50 with 1000 classes,
# ResNet-110 with 100 classes); the specs hold the exact figures.
OFFICIAL_FIGURES = {"abn_resnet50": 43.6e6, "abn_resnet110_cifar": 3.06e6}


def test_every_model_of_the_families_is_registered():
    assert set(ABN_NAMES + AR_NAMES) <= set(list_models())
    assert {get_spec(n).family for n in ABN_NAMES} == {"ABN", "ABN-CIFAR"}
    assert {get_spec(n).family for n in AR_NAMES} == {"A&R"}


@pytest.mark.parametrize("name", sorted(OFFICIAL_FIGURES))
def test_abn_parameters_match_the_official_figures(name):
    assert abs(get_spec(name).params / OFFICIAL_FIGURES[name] - 1) < 0.002


def test_specs_defaults_follow_the_datasets():
    assert get_spec("abn_resnet50").num_classes == 1000
    assert get_spec("abn_resnet110_cifar").num_classes == 100  # CIFAR-100, the official setting
    assert get_spec("wrn28_10_ar").num_classes == 10  # CIFAR-10, the official logs
    assert get_spec("abn_resnet50").mean == (0.485, 0.456, 0.406)
    assert get_spec("wrn16_4_ar").mean == (0.4914, 0.4822, 0.4465)
    assert get_spec("wrn16_4_ar").outputs == ("log_probs",)


# --- ABN ------------------------------------------------------------------------------------


def test_abn_outputs_are_selectable_in_order():
    model = create_model(
        "abn_resnet110_cifar", num_classes=7, outputs=("attention", "logits", "attention_logits")
    )
    assert model.output_names == ["attention", "logits", "attention_logits"]
    with torch.no_grad():
        attention, logits, att_logits = model(torch.randn(2, 3, 32, 32))
    assert attention.shape == (2, 1, 16, 16)
    assert logits.shape == att_logits.shape == (2, 7)
    assert ((attention >= 0) & (attention <= 1)).all()
    only = create_model("abn_resnet110_cifar", outputs=("attention_logits",))
    assert only.output_names == ["attention_logits"]
    with_maps = create_model("abn_resnet110_cifar", return_attention=True)
    assert with_maps.output_names == ["logits", "attention"]


@pytest.mark.parametrize(
    "bad, message",
    [((), "empty"), (("logits", "mask"), "unknown"), (("logits", "logits"), "twice")],
)
def test_abn_bad_outputs_are_clear_errors(bad, message):
    with pytest.raises(DeployRanError, match=message) as info:
        create_model("abn_resnet110_cifar", outputs=bad)
    assert "logits" in info.value.hint


def test_parse_outputs_accepts_the_command_line_form():
    assert parse_outputs("logits, attention") == ("logits", "attention")
    assert parse_outputs(list(ABN_OUTPUTS)) == ABN_OUTPUTS


def test_abn_arithmetic_follows_the_official_forward():
    """Attention from the branch on layer 2 (CIFAR), perception on x·M + x, global pooling."""
    torch.manual_seed(0)
    model = create_model("abn_resnet110_cifar", outputs=ABN_OUTPUTS)
    calibrate_batchnorm(model, 32)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        logits, att_logits, attention = model(x)
        h = F.relu(model.bn1(model.conv1(x)))
        h = model.layer2(model.layer1(h))
        a = model.bn_att(model.att_layer3(h))
        a = F.relu(model.bn_att2(model.att_conv(a)))
        m = torch.sigmoid(model.bn_att3(model.att_conv3(a)))
        expected_att = model.att_conv2(a).mean(dim=(2, 3))
        expected = model.fc(model.layer3(h * m + h).mean(dim=(2, 3)))
    assert torch.allclose(attention, m)
    assert torch.allclose(att_logits, expected_att, atol=1e-5)
    assert torch.allclose(logits, expected, atol=1e-5)
    assert 0.05 < attention.std() and ((attention == 0) | (attention == 1)).float().mean() < 0.01


def test_abn_branch_is_a_stride_one_copy_of_the_last_stage():
    model = create_model("abn_resnet50")
    branch, last = model.att_layer4, model.layer4
    assert len(branch) == len(last) == 3
    assert branch[0].conv2.stride == (1, 1) and last[0].conv2.stride == (2, 2)
    assert [p.shape for p in branch.parameters()] == [p.shape for p in last.parameters()]


@pytest.mark.parametrize("size", [97, 160])
def test_abn_any_input_size(size):
    model = create_model("abn_resnet50", image_size=size, num_classes=3, outputs=ABN_OUTPUTS)
    assert not any(isinstance(m, torch.nn.AvgPool2d) for m in model.modules())
    with torch.no_grad():
        logits, att_logits, attention = model(torch.randn(1, 3, size, size))
    expected = -(-size // 16)  # layer 3 runs at 1/16 of the input (ceil at every stride)
    assert attention.shape == (1, 1, expected, expected)
    assert logits.shape == att_logits.shape == (1, 3)


def test_abn_uses_the_official_state_dict_names():
    keys = create_model("abn_resnet50").state_dict().keys()
    for key in (
        "conv1.weight",
        "layer3.5.conv3.weight",
        "att_layer4.0.downsample.0.weight",
        "att_layer4.2.bn3.running_var",
        "bn_att.weight",
        "att_conv.weight",
        "bn_att2.bias",
        "att_conv2.weight",
        "att_conv3.weight",
        "bn_att3.running_mean",
        "layer4.0.downsample.1.weight",
        "fc.bias",
    ):
        assert key in keys
    assert "att_layer3.17.conv3.weight" in create_model("abn_resnet110_cifar").state_dict()


# --- Attend and Rectify -----------------------------------------------------------------------


def _randomise_gate_bn(model: AttendRectifyNet, seed: int = 1) -> None:
    gen = torch.Generator().manual_seed(seed)
    bn = model.output_gate.bn
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(bn.num_features, generator=gen))
        bn.running_var.copy_(torch.rand(bn.num_features, generator=gen) + 0.2)
        bn.weight.copy_(torch.rand(bn.num_features, generator=gen) + 0.5)
        bn.bias.copy_(torch.randn(bn.num_features, generator=gen))


def test_fold_batchnorm1d_equals_the_unfolded_gate():
    torch.manual_seed(0)
    model = create_model("wrn16_4_ar")
    gate = model.output_gate
    _randomise_gate_bn(model)
    model.eval()  # eval folds with the current statistics
    assert gate.is_folded
    x = torch.randn(5, gate.gates.in_features)
    with torch.no_grad():
        folded = gate(x)
        bn = gate.bn
        unfolded = torch.tanh(
            F.batch_norm(
                gate.gates(x), bn.running_mean, bn.running_var, bn.weight, bn.bias, eps=bn.eps
            )
        )
    assert torch.allclose(folded, unfolded, atol=1e-6)
    model.train()
    assert not gate.is_folded


def test_loading_a_checkpoint_refolds_the_gate(tmp_path):
    torch.manual_seed(0)
    source = create_model("wrn16_4_ar")
    _randomise_gate_bn(source, seed=3)
    path = tmp_path / "ar.pt"
    torch.save({"state_dict": source.state_dict()}, path)
    loaded = create_model("wrn16_4_ar", checkpoint=path)
    assert torch.allclose(loaded.output_gate.bn.running_mean, source.output_gate.bn.running_mean)
    x = torch.randn(2, 3, 32, 32)
    source.eval()
    with torch.no_grad():
        assert torch.allclose(loaded(x), source(x), atol=1e-6)
    other = create_model("wrn16_4_ar")  # eval, folded with its own statistics
    other.load_state_dict(source.state_dict())  # the post-load hook refolds
    with torch.no_grad():
        assert torch.allclose(other(x), source(x), atol=1e-6)
    assert "folded_weight" not in source.state_dict()


def test_attention_module_follows_the_paper():
    """Heads: masks softmax over positions, hypotheses under the masks, softmax(tanh) head gates."""
    torch.manual_seed(0)
    module = create_model("wrn16_4_ar").att1
    x = torch.randn(2, module.att_head.conv.in_channels, 6, 5)
    with torch.no_grad():
        hypothesis, masks = module(x)
        heads, k = module.heads, module.num_classes
        m = torch.softmax(module.att_head.conv(x).flatten(2), dim=2)  # [N, H, P]
        o = module.out_head.conv(x).reshape(2, heads, k, 30)  # [N, H, K, P]
        s = module.score.conv(x).flatten(2)  # [N, H, P]
        per_head = torch.einsum("nhkp,nhp->nhk", o, m)
        weights = torch.softmax(torch.tanh(torch.einsum("nhp,nhp->nh", s, m)), dim=1)
        expected = torch.einsum("nhk,nh->nk", per_head, weights).unsqueeze(1)
    assert masks.shape == (2, heads, 6, 5)
    assert torch.allclose(masks.sum(dim=(2, 3)), torch.ones(2, heads), atol=1e-5)
    assert torch.allclose(hypothesis, expected, atol=1e-5)


@pytest.mark.parametrize("attention_type", ["softmax", "sigmoid"])
def test_ar_aggregates_gated_log_probabilities(attention_type):
    torch.manual_seed(0)
    model = create_model("wrn16_4_ar", attention_type=attention_type, return_attention=True)
    calibrate_batchnorm(model, 32)
    x = torch.randn(2, 3, 32, 32)
    captured = {}
    model.output_gate.register_forward_hook(lambda _m, _i, out: captured.update(gates=out))
    with torch.no_grad():
        log_probs, *masks = model(x)
        sites = []
        h = F.relu(model.bn0(model.conv0(x)))
        g1, site0 = model.group_1.forward_with_input(model.group_0(h))
        g2, site1 = model.group_2.forward_with_input(g1)
        site2 = F.relu(model.bn_g2(g2))
        sites = {0: site0, 1: site1, 2: site2}
        hyps = [getattr(model, f"att{i}")(sites[i])[0] for i in (2, 1, 0)]
        pooled = site2.mean(dim=(2, 3))
        hyps.append(model.classifier(pooled).unsqueeze(1))
        lp = F.log_softmax(torch.cat(hyps, 1), dim=2)
        gates = captured["gates"]
        if attention_type == "softmax":
            expected = (lp * torch.softmax(gates, 1).unsqueeze(2)).sum(1)
        else:
            w = torch.sigmoid(gates).unsqueeze(2)
            expected = (lp * w).sum(1) / (1e-6 + w.sum(1))
    assert torch.allclose(log_probs, expected, atol=1e-5)
    assert (log_probs <= 0).all()  # a weighted mean of log-probabilities
    assert model.output_names == [
        "log_probs",
        "attention_group2",
        "attention_group1",
        "attention_group0",
    ]
    assert [tuple(m.shape) for m in masks] == [(2, 4, 8, 8), (2, 4, 16, 16), (2, 4, 32, 32)]


def test_ar_uses_the_official_state_dict_names():
    keys = create_model("wrn16_4_ar").state_dict().keys()
    for key in (
        "conv0.weight",
        "bn0.running_mean",
        "group_0.block_0.conv_reduce.weight",
        "group_2.block_1.conv1.weight",
        "bn_g2.weight",
        "classifier.weight",
        "att2.att_head.conv.weight",
        "att2.att_head.diag",
        "att0.out_head.conv.weight",
        "att1.score.conv.weight",
        "output_gate.gates.weight",
        "output_gate.bn.running_var",
    ):
        assert key in keys


def test_ar_checkpoint_class_count_is_read_from_classifier(tmp_path):
    model = create_model("wrn16_4_ar", num_classes=7)
    path = tmp_path / "ar7.pt"
    torch.save(model.state_dict(), path)
    assert create_model("wrn16_4_ar", checkpoint=path).num_classes == 7
    with pytest.raises(CheckpointError) as info:
        create_model("wrn16_4_ar", checkpoint=path, num_classes=10)
    assert "--num-classes 7" in info.value.hint


def test_ar_gate_type_is_validated():
    with pytest.raises(DeployRanError, match="attention_type"):
        create_model("wrn16_4_ar", attention_type="relu")
