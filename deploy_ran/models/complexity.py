"""Parameter and multiply-add counts, measured on the built model.

Multiply-adds are counted the way papers count them: convolutions and fully connected layers
only (PyTorch's ``FlopCounterMode`` reports 2 FLOPs per multiply-add for those ops), at batch 1.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module) -> int:
    """Number of learnable parameters (BN running statistics are buffers, not counted)."""
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, image_size: int | tuple[int, int]) -> int:
    """Multiply-adds of one forward pass at batch 1 for a 3-channel ``image_size`` input."""
    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    device = next(model.parameters()).device
    x = torch.zeros(1, 3, h, w, device=device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() // 2
