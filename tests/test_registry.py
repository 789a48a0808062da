"""The registry's front door: names, specs, options and the figures each spec promises."""

from __future__ import annotations

import pytest
import torch

from deploy_ran.errors import DeployRanError, UnknownModelError
from deploy_ran.models import count_macs, count_params, create_model, get_spec, list_models

# The issue's table: name -> (params target, tolerance, MACs target, tolerance).
IMAGENET_TARGETS = {
    "ran56": (31.8e6, 0.01, 6.27e9, 0.01),
    "ran92": (52.5e6, 0.01, 10.53e9, 0.01),
    "ran56_next": (31.3e6, 0.03, 6.42e9, 0.03),
}
# The paper's CIFAR parameter counts, where it gives one (within 10%).
CIFAR_PAPER_PARAMS = {"ran92_cifar": 1.9e6, "ran236_cifar": 5.1e6, "ran452_cifar": 8.6e6}
EXPECTED_NAMES = {
    "ran56",
    "ran92",
    "ran56_next",
    "ran56_cifar",
    "ran92_cifar",
    "ran128_cifar",
    "ran164_cifar",
    "ran236_cifar",
    "ran452_cifar",
}


def test_every_issue_model_is_registered():
    assert EXPECTED_NAMES <= set(list_models())


def test_list_models_filters_and_sorts_naturally():
    cifar = list_models("ran*_cifar")
    assert cifar[:3] == ["ran56_cifar", "ran92_cifar", "ran128_cifar"]
    assert all(n.endswith("_cifar") for n in cifar)
    assert list_models("nothing*") == []


def test_unknown_name_suggests_closest():
    with pytest.raises(UnknownModelError) as info:
        get_spec("ran29")
    assert "ran92" in str(info.value)
    with pytest.raises(UnknownModelError) as info:
        create_model("ran_56")
    assert "ran56" in info.value.hint


def test_unknown_option_lists_accepted_ones():
    with pytest.raises(DeployRanError) as info:
        create_model("ran56_cifar", dropout=0.5)
    assert "attention" in info.value.hint


def test_bad_option_value_lists_choices():
    with pytest.raises(DeployRanError) as info:
        create_model("ran56_cifar", attention="softmax")
    assert "'spatial'" in info.value.hint


def test_too_small_image_is_rejected():
    with pytest.raises(DeployRanError, match="at least 32"):
        create_model("ran56", image_size=16)


@pytest.mark.parametrize("name", list_models())
def test_spec_figures_match_the_built_model(name):
    spec = get_spec(name)
    model = create_model(name)
    assert count_params(model) == spec.params
    assert count_macs(model, spec.image_size) == spec.macs
    assert model.spec is spec
    assert not model.training


@pytest.mark.parametrize("name", sorted(IMAGENET_TARGETS))
def test_imagenet_models_hit_the_table(name):
    params, p_tol, macs, m_tol = IMAGENET_TARGETS[name]
    spec = get_spec(name)
    assert abs(spec.params / params - 1) <= p_tol
    assert abs(spec.macs / macs - 1) <= m_tol


@pytest.mark.parametrize("name", sorted(CIFAR_PAPER_PARAMS))
def test_cifar_models_within_ten_percent_of_paper(name):
    spec = get_spec(name)
    assert spec.paper_params == CIFAR_PAPER_PARAMS[name] / 1e6
    assert abs(spec.params / CIFAR_PAPER_PARAMS[name] - 1) <= 0.10


def test_cifar_depths_follow_36m_plus_20():
    """The paper's depth formula for p, t = 1, 2: each module adds 12 layers along the trunk."""
    for depth in (56, 92, 128, 164, 236):
        model = create_model(f"ran{depth}_cifar")
        modules = sum(len(stage.attention) for stage in model.stages)
        assert 36 * (modules // 3) + 20 == depth


def test_num_classes_and_image_size_override():
    model = create_model("ran56_cifar", num_classes=7, image_size=40)
    assert model.fc.out_features == 7
    assert model.image_size == (40, 40)


def test_preprocessing_scales_resize_with_crop():
    pre = get_spec("ran92").preprocessing(320)
    assert pre["crop_size"] == 320 and pre["resize_size"] == round(320 * 256 / 224)
    assert pre["mean"] == [0.485, 0.456, 0.406]


def test_weights_without_checkpoint_are_seeded_and_leave_global_rng_alone():
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    first = create_model("ran56_cifar")
    second = create_model("ran56_cifar", image_size=40)  # same parameters, other resize sizes
    assert torch.equal(torch.rand(1), expected_next)
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        assert torch.equal(a, b), name
