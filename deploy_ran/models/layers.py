"""Building blocks shared by the attention networks.

The residual unit is the pre-activation bottleneck of He et al. (ECCV 2016) that the Residual
Attention Network's Caffe definitions use: BN-ReLU precedes every convolution, convolutions have no
bias, and a projection shortcut (taken from the pre-activated input) appears only where the shape
changes. Parameter names (``bn1``/``conv1``/.../``shortcut``) are stable: checkpoints and the
state-dict mapping of ported weights rely on them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PreActBottleneck(nn.Module):
    """Pre-activation bottleneck unit: 1×1 (reduce) → 3×3 (stride, groups) → 1×1 (expand).

    ``width`` is the channel count of the inner 3×3 convolution: ``out_channels // 4`` for the
    ResNet unit, ``out_channels // 2`` with ``groups=32`` for the ResNeXt unit.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        width: int | None = None,
        groups: int = 1,
    ) -> None:
        super().__init__()
        width = width or out_channels // 4
        if width % groups:
            raise ValueError(f"bottleneck width {width} is not divisible by groups={groups}")
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, padding=1, groups=groups, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        needs_projection = in_channels != out_channels or stride != 1
        self.shortcut = (
            nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)
            if needs_projection
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = F.relu(self.bn1(x))
        out = self.conv1(pre)
        out = self.conv2(F.relu(self.bn2(out)))
        out = self.conv3(F.relu(self.bn3(out)))
        residual = x if self.shortcut is None else self.shortcut(pre)
        return out + residual


class MaskHead(nn.Module):
    """BN-ReLU-1×1-BN-ReLU-1×1 that turns the mask features into attention logits.

    The final activation is applied by :func:`attention_activation`, so the three attention types
    of the paper share one head.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv1 = nn.Conv2d(channels, channels, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(F.relu(self.bn1(x)))
        return self.conv2(F.relu(self.bn2(x)))


ATTENTION_TYPES = ("mixed", "channel", "spatial")


def attention_activation(logits: torch.Tensor, kind: str, eps: float = 1e-5) -> torch.Tensor:
    """The paper's three attention activations (Wang et al. 2017, eq. 5-7 / Table 1).

    * ``mixed``: element-wise sigmoid.
    * ``channel``: L2 normalisation across channels at every spatial position.
    * ``spatial``: sigmoid of each channel standardised over its spatial positions.

    ``eps`` keeps the normalisations finite on constant inputs (an all-zero feature map).
    """
    if kind == "mixed":
        return torch.sigmoid(logits)
    if kind == "channel":
        norm = torch.sqrt(torch.sum(logits * logits, dim=1, keepdim=True) + eps)
        return logits / norm
    if kind == "spatial":
        mean = torch.mean(logits, dim=(2, 3), keepdim=True)
        centred = logits - mean
        var = torch.mean(centred * centred, dim=(2, 3), keepdim=True)
        return torch.sigmoid(centred / torch.sqrt(var + eps))
    raise ValueError(f"unknown attention type {kind!r}; expected one of {ATTENTION_TYPES}")


def pooled_size(size: int) -> int:
    """Output length of the mask branch's 3×3/2 max-pool (padding 1): ceil(size / 2)."""
    return (size + 2 * 1 - 3) // 2 + 1


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output length of a convolution or pooling window, as PyTorch computes it."""
    return (size + 2 * padding - kernel) // stride + 1
