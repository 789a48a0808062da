"""ABN's random init keeps activations finite and its attention map unsaturated."""

from __future__ import annotations

import torch

from deploy_ran.models import create_model


def test_abn_resnet110_random_weights_keep_activations_sane():
    model = create_model("abn_resnet110_cifar", return_attention=True).eval()
    with torch.no_grad():
        logits, attention = model(torch.randn(2, 3, 32, 32))
    assert logits.abs().max() < 100  # was ~1e9 with every residual branch at full scale
    assert 0 < attention.min() and attention.max() < 1  # not a saturated 0/1 map
    assert attention.std() > 1e-3
