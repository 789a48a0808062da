"""Deterministic weights for a state dict given only its key names and shapes.

The fixture ``tests/data/port_ran92.json`` holds the key names and shapes of a state dict saved by
the Residual Attention Network PyTorch port (tengshaofeng/ResidualAttentionNetwork-pytorch,
``ResidualAttentionModel_92``) and the logits that port computes for these weights and a seeded
input. The port's code is not part of this repository; the fixture was produced once from it.
"""

from __future__ import annotations

import math

import torch


def seeded_state_dict(
    key_shapes: list[tuple[str, list[int]]], seed: int = 0
) -> dict[str, torch.Tensor]:
    """Fill every key with seeded values that keep a deep pre-activation network numerically tame."""
    gen = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for name, shape in key_shapes:
        if name.endswith("num_batches_tracked"):
            state[name] = torch.zeros(shape, dtype=torch.long)
        elif name.endswith("running_var"):
            state[name] = 0.5 + torch.rand(shape, generator=gen)
        elif name.endswith("running_mean"):
            state[name] = 0.1 * torch.randn(shape, generator=gen)
        elif len(shape) == 1 and name.endswith("weight"):
            state[name] = 1.0 + 0.1 * torch.randn(shape, generator=gen)
        elif len(shape) == 1:
            state[name] = 0.1 * torch.randn(shape, generator=gen)
        else:
            fan_in = math.prod(shape[1:])
            state[name] = torch.randn(shape, generator=gen) * (0.5 / math.sqrt(fan_in))
    return state


def seeded_input(size: int = 224, seed: int = 1) -> torch.Tensor:
    return torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(seed))
