"""Forward passes, upsampling sizes and the paper's ablation options."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from deploy_ran.models import create_model, list_models
from deploy_ran.models.layers import attention_activation
from deploy_ran.models.ran import SoftMaskBranch
from tests.conftest import small_size


@pytest.mark.parametrize("name", list_models())
def test_forward_shape(name):
    """Every model: class scores, plus its attention maps as named 4-D outputs on request."""
    size = small_size(name)
    model = create_model(name, image_size=size, num_classes=5, return_attention=True)
    with torch.no_grad():
        out, *maps = model(torch.randn(2, 3, size, size))
    assert out.shape == (2, 5)
    assert torch.isfinite(out).all()
    assert maps and len(model.output_names) == 1 + len(maps)
    for map_name, value in zip(model.output_names[1:], maps):
        assert map_name.startswith("attention")
        assert value.ndim == 4 and value.shape[0] == 2
        assert value.shape[2] <= size and value.shape[3] <= size
        assert torch.isfinite(value).all()
    model.return_attention = False  # the same model without the maps returns the scores alone
    with torch.no_grad():
        assert model(torch.randn(1, 3, size, size)).shape == (1, 5)


@pytest.mark.parametrize("size", [224, 320, 97, 227])
def test_ran92_builds_any_size_with_derived_upsampling(size):
    model = create_model("ran92", image_size=size, num_classes=3)
    masks = [m for m in model.modules() if isinstance(m, SoftMaskBranch)]
    assert len(masks) == 6
    # Stage 1 at 224: 56 → 28 → 14 → 7 (ceil halving), resized back up to the same sizes.
    stage1 = masks[0].sizes
    for bigger, smaller in zip(stage1, stage1[1:]):
        assert smaller == ((bigger[0] + 1) // 2, (bigger[1] + 1) // 2)
    if size == 224:
        assert stage1 == [(56, 56), (28, 28), (14, 14), (7, 7)]
    if size <= 227:  # keep the test fast; 320 is covered by the export test
        with torch.no_grad():
            assert model(torch.randn(1, 3, size, size)).shape == (1, 3)


def test_wrong_input_size_fails_loudly():
    """A model built for 64 px must not silently accept 96 px (its resize sizes are fixed)."""
    model = create_model("ran56_cifar", image_size=32)
    with pytest.raises(RuntimeError):
        model(torch.randn(1, 3, 48, 48))


def test_attention_activations_follow_the_paper():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 5, 6)
    assert torch.allclose(attention_activation(x, "mixed"), torch.sigmoid(x))
    channel = attention_activation(x, "channel")
    assert torch.allclose(channel.norm(dim=1), torch.ones(2, 5, 6), atol=1e-3)
    spatial = attention_activation(x, "spatial")
    standardised = (x - x.mean((2, 3), keepdim=True)) / x.std((2, 3), unbiased=False, keepdim=True)
    assert torch.allclose(spatial, torch.sigmoid(standardised), atol=1e-4)


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
def test_ablation_options_change_the_function(options):
    torch.manual_seed(0)
    base = create_model("ran56_cifar")
    other = create_model("ran56_cifar", **options)
    missing, unexpected = other.load_state_dict(base.state_dict(), strict=False)
    if options.get("mask") != "local_conv":  # same parameters, different arithmetic
        assert not missing and not unexpected
    _randomise_bn(base)
    _randomise_bn(other)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert not torch.allclose(base(x), other(x), atol=1e-4)


def _randomise_bn(model):
    gen = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)


def test_nal_is_mask_times_trunk():
    model = create_model("ran56_cifar", attention_residual=False)
    module = model.stages[2].attention[0]
    x = torch.randn(1, 256, 8, 8)
    with torch.no_grad():
        pre = module.pre(x)
        trunk = module.trunk(pre)
        out, mask = module(x)
        assert torch.allclose(out, module.post(mask * trunk), atol=1e-5)


def test_local_conv_mask_keeps_full_resolution():
    model = create_model("ran56_cifar", mask="local_conv")
    assert not any(isinstance(m, SoftMaskBranch) for m in model.modules())
    calls = []
    handle = F.interpolate
    try:
        F.interpolate = lambda *a, **k: calls.append(1) or handle(*a, **k)
        with torch.no_grad():
            model(torch.randn(1, 3, 32, 32))
    finally:
        F.interpolate = handle
    assert calls == []


def test_port_variant_adds_down_path_and_trunk():
    """variant='port' = paper + down-path feature at each up sum + trunk before the mask head."""
    torch.manual_seed(0)
    paper = create_model("ran56_cifar").stages[0].attention[0].mask
    port = create_model("ran56_cifar", variant="port").stages[0].attention[0].mask
    port.load_state_dict(paper.state_dict())
    x = torch.randn(1, 64, 32, 32)
    trunk = torch.randn(1, 64, 32, 32)
    with torch.no_grad():
        d1 = paper.down[0](F.max_pool2d(x, 3, 2, 1))
        d2 = paper.down[1](F.max_pool2d(d1, 3, 2, 1))
        up = F.interpolate(d2, size=d1.shape[-2:], mode="bilinear", align_corners=True)
        up = paper.up[0](up + paper.skips[0](d1) + d1)
        expected = F.interpolate(up, size=(32, 32), mode="bilinear", align_corners=True) + trunk
        assert torch.allclose(port(x, trunk), expected, atol=1e-5)


def test_return_attention_outputs_one_map_per_module():
    model = create_model("ran92_cifar", return_attention=True)
    with torch.no_grad():
        logits, *maps = model(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 10)
    assert len(maps) == 6 == len(model.output_names) - 1
    assert maps[0].shape == (2, 1, 32, 32) and maps[-1].shape == (2, 1, 8, 8)
    assert all(((m >= 0) & (m <= 1)).all() for m in maps)  # sigmoid masks
