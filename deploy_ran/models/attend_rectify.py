"""Attend and Rectify (Rodríguez et al., ECCV 2018) on a wide ResNet, built like the official code.

The backbone is the CIFAR wide ResNet WRN-d-k of the official repository (prlz77/attend-and-rectify,
``models/wide_resnet_cifar_attention.py``): a 3×3 stem with BN-ReLU, three groups of
pre-activation basic blocks of width 16k, 32k, 64k (the shortcut projection ``conv_reduce`` takes the
block's raw input, as there), then BN-ReLU and global average pooling into the classifier.

Attention (``modules/attention.py`` there), with ``attention_depth`` modules on the pre-activated
inputs of the last ``attention_depth`` places (``att2`` on the final BN-ReLU features, ``att1`` on the
input of group 2, ``att0`` on the input of group 1) and ``attention_width`` heads per module:

* **attention heads**: a 3×3 convolution to one channel per head and a softmax over all spatial
  positions — each head's mask sums to 1 over H×W;
* **output heads**: a 3×3 convolution to K channels per head, summed over positions under the mask:
  one class hypothesis per head;
* **layered attention gates**: a 3×3 convolution to one score per head, summed under the mask, then
  ``softmax(tanh(·))`` across the heads, which weighs the heads into one hypothesis per module;
* **global gates**: ``tanh(BN1d(Linear(GAP(features))))``, one per module plus one for the
  backbone's classifier;
* **aggregation**: ``log_softmax`` of every hypothesis, weighted by ``softmax`` of the global gates
  (``attention_type="softmax"``, the official logs' setting) or by their sigmoids, normalised
  (``"sigmoid"``).

The network returns the aggregated **log-probabilities** ``[batch, K]`` (output ``log_probs``). The
inter-mask regulariser is a training loss and is not part of inference. The global gates' 1-D batch
norm is folded into their linear layer in eval mode (:meth:`AttendRectifyNet.fold_batchnorm1d`), so
the exported graph holds one Gemm there. Fixed-window pooling of the official code
(``avg_pool2d(·, 8)``) is global pooling here, the same at 32×32 and valid at any size.

With ``return_attention``, every module's head masks follow, in module order: output
``attention_group{i}`` of shape ``[batch, heads, H_i, W_i]`` (32×32, 16×16 and 8×8 for groups 0, 1, 2
at a 32×32 input), each head summing to 1 over its positions. Names are those of the official
state dicts (``group_0.block_0.conv0``, ``att2.out_head.conv``, ``output_gate.bn``, ...), so its
checkpoints load as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from deploy_ran.models.registry import (
    CIFAR_MEAN,
    CIFAR_STD,
    ModelSpec,
    register_model,
)

GATE_TYPES = ("softmax", "sigmoid")


@dataclass(frozen=True)
class ARConfig:
    """Layout of one Attend-and-Rectify wide ResNet: WRN-``depth``-``width`` + attention."""

    depth: int  # 6n + 4
    width: int
    attention_depth: int = 3
    attention_width: int = 4

    @property
    def blocks_per_group(self) -> int:
        if (self.depth - 4) % 6:
            raise ValueError(f"wide ResNet depth must be 6n + 4, got {self.depth}")
        return (self.depth - 4) // 6


class WideBlock(nn.Module):
    """Pre-activation basic block: BN-ReLU-3×3(stride)-BN-ReLU-3×3, shortcut from the raw input."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.bn0 = nn.BatchNorm2d(in_channels)
        self.conv0 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv1 = nn.Conv2d(out_channels, out_channels, 3, 1, padding=1, bias=False)
        self.conv_reduce = None
        if in_channels != out_channels:
            self.conv_reduce = nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)

    def forward_with_input(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The block's output and its pre-activated input BN-ReLU(x) (an attention site)."""
        pre = F.relu(self.bn0(x))
        out = self.conv1(F.relu(self.bn1(self.conv0(pre))))
        shortcut = x if self.conv_reduce is None else self.conv_reduce(x)
        return out + shortcut, pre

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_input(x)[0]


class WideGroup(nn.Module):
    """``n`` wide blocks named ``block_0`` ... as in the official state dicts."""

    def __init__(self, in_channels: int, out_channels: int, n: int, stride: int) -> None:
        super().__init__()
        self.n = n
        for i in range(n):
            block = WideBlock(
                in_channels if i == 0 else out_channels, out_channels, stride if i == 0 else 1
            )
            self.add_module(f"block_{i}", block)

    def forward_with_input(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The group's output and the pre-activated input of its first block."""
        x, pre = self.block_0.forward_with_input(x)
        for i in range(1, self.n):
            x = getattr(self, f"block_{i}")(x)
        return x, pre

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_input(x)[0]


class AttentionHead(nn.Module):
    """One 3×3 convolution per head, softmax over all spatial positions."""

    def __init__(self, in_channels: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.conv = nn.Conv2d(in_channels, heads, 3, padding=1, bias=False)
        # The official module keeps this mask for its (training-only) inter-head regulariser; it is
        # kept here so that official state dicts load without unexpected keys.
        self.register_buffer("diag", (1 - torch.eye(heads)).unsqueeze(0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Masks ``[batch, heads, H·W]``, each summing to 1 over the positions."""
        return torch.softmax(self.conv(x).flatten(2), dim=2)


class OutHead(nn.Module):
    """A bias-free 3×3 convolution (output heads and layered-gate scores)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class AttentionModule(nn.Module):
    """Attention heads, output heads and layered gates on one feature map → one hypothesis."""

    def __init__(self, in_channels: int, num_classes: int, heads: int) -> None:
        super().__init__()
        self.heads, self.num_classes = heads, num_classes
        self.att_head = AttentionHead(in_channels, heads)
        self.out_head = OutHead(in_channels, num_classes * heads)
        self.score = OutHead(in_channels, heads)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Hypothesis logits ``[batch, 1, K]`` and the head masks ``[batch, heads, H, W]``."""
        mask = self.att_head(x)  # [N, heads, HW]
        outputs = self.out_head(x).unflatten(1, (self.heads, self.num_classes)).flatten(3)
        hypotheses = (outputs * mask.unsqueeze(2)).sum(3)  # [N, heads, K]
        scores = (self.score(x).flatten(2) * mask).sum(2, keepdim=True)  # [N, heads, 1]
        scores = torch.softmax(torch.tanh(scores), dim=1)
        hypothesis = (hypotheses * scores).sum(1, keepdim=True)
        return hypothesis, mask.unflatten(2, tuple(x.shape[2:]))


class OutputGate(nn.Module):
    """Global gates ``tanh(BN1d(Linear(x)))``, with the BN folded into the Linear in eval mode."""

    def __init__(self, in_features: int, gates: int) -> None:
        super().__init__()
        self.gates = nn.Linear(in_features, gates, bias=False)
        self.bn = nn.BatchNorm1d(gates)
        # Not saved: recomputed from gates/bn by fold_batchnorm1d().
        self.register_buffer("folded_weight", torch.empty(0), persistent=False)
        self.register_buffer("folded_bias", torch.empty(0), persistent=False)

    @property
    def is_folded(self) -> bool:
        return self.folded_weight.numel() > 0

    @torch.no_grad()
    def fold_batchnorm1d(self) -> None:
        """Fold the eval-mode BN into the Linear: W' = W·γ/σ, b' = β − μ·γ/σ, σ = √(var + ε)."""
        scale = self.bn.weight / torch.sqrt(self.bn.running_var + self.bn.eps)
        self.folded_weight = self.gates.weight * scale[:, None]
        self.folded_bias = self.bn.bias - self.bn.running_mean * scale

    def unfold(self) -> None:
        self.folded_weight = torch.empty(0, device=self.gates.weight.device)
        self.folded_bias = torch.empty(0, device=self.gates.weight.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.is_folded and not self.training:
            return torch.tanh(F.linear(x, self.folded_weight, self.folded_bias))
        return torch.tanh(self.bn(self.gates(x)))


class AttendRectifyNet(nn.Module):
    """WRN-d-k with Attend-and-Rectify attention; returns aggregated log-probabilities."""

    def __init__(
        self,
        cfg: ARConfig,
        num_classes: int = 10,
        image_size: int | tuple[int, int] = 32,
        attention_type: str = "softmax",
        return_attention: bool = False,
    ) -> None:
        super().__init__()
        if attention_type not in GATE_TYPES:
            raise ValueError(f"attention_type={attention_type!r}; expected one of {GATE_TYPES}")
        if not 1 <= cfg.attention_depth <= 3:
            raise ValueError(f"attention_depth must be 1, 2 or 3, got {cfg.attention_depth}")
        h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        self.cfg = cfg
        self.image_size = (h, w)
        self.num_classes = num_classes
        self.attention_type = attention_type
        self.return_attention = return_attention

        n = cfg.blocks_per_group
        widths = [16 * cfg.width, 32 * cfg.width, 64 * cfg.width]
        self.conv0 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn0 = nn.BatchNorm2d(16)
        self.group_0 = WideGroup(16, widths[0], n, 1)
        self.group_1 = WideGroup(widths[0], widths[1], n, 2)
        self.group_2 = WideGroup(widths[1], widths[2], n, 2)
        self.bn_g2 = nn.BatchNorm2d(widths[2])
        self.classifier = nn.Linear(widths[2], num_classes)
        # Official order: the deepest site first (att2, att1, att0).
        self.attention_layers = [2 - i for i in range(cfg.attention_depth)]
        for i in self.attention_layers:
            self.add_module(f"att{i}", AttentionModule(widths[i], num_classes, cfg.attention_width))
        self.output_gate = OutputGate(widths[2], cfg.attention_depth + 1)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)
        self.register_load_state_dict_post_hook(_refold_after_load)

    @property
    def output_names(self) -> list[str]:
        """Names of the graph outputs, in the order ``forward`` returns them."""
        if not self.return_attention:
            return ["log_probs"]
        return ["log_probs", *(f"attention_{n}" for n in self.attention_names)]

    @property
    def attention_names(self) -> list[str]:
        """Names of the attention-map outputs in forward order (``group2``, ``group1``, ...)."""
        return [f"group{i}" for i in self.attention_layers]

    def fold_batchnorm1d(self) -> None:
        """Fold the global gates' BN1d into their Linear (eval mode does it automatically)."""
        self.output_gate.fold_batchnorm1d()

    def train(self, mode: bool = True) -> AttendRectifyNet:
        super().train(mode)
        if mode:
            self.output_gate.unfold()
        else:
            self.fold_batchnorm1d()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        x = F.relu(self.bn0(self.conv0(x)))
        g0 = self.group_0(x)
        g1, site0 = self.group_1.forward_with_input(g0)
        g2, site1 = self.group_2.forward_with_input(g1)
        site2 = F.relu(self.bn_g2(g2))
        sites = [site0, site1, site2]
        hypotheses, masks = [], []
        for i in self.attention_layers:
            hypothesis, mask = getattr(self, f"att{i}")(sites[i])
            hypotheses.append(hypothesis)
            masks.append(mask)
        pooled = torch.flatten(F.adaptive_avg_pool2d(site2, 1), 1)
        gates = self.output_gate(pooled)  # [N, depth + 1]
        hypotheses.append(self.classifier(pooled).unsqueeze(1))
        log_probs = F.log_softmax(torch.cat(hypotheses, 1), dim=2)  # [N, depth + 1, K]
        if self.attention_type == "softmax":
            weights = torch.softmax(gates, dim=1).unsqueeze(2)
            out = (log_probs * weights).sum(1)
        else:
            weights = torch.sigmoid(gates).unsqueeze(2)
            out = (log_probs * weights).sum(1) / (1e-6 + weights.sum(1))
        if self.return_attention:
            return (out, *masks)
        return out


def _refold_after_load(module: nn.Module, _incompatible) -> None:
    """New BN statistics or gate weights were loaded: refresh the folded copy in eval mode."""
    if isinstance(module, AttendRectifyNet) and not module.training:
        module.fold_batchnorm1d()


# --- Registered Attend-and-Rectify models ------------------------------------------------------
# ``params``/``macs`` are this implementation's exact figures at the default size and class count;
# they equal the official code's (checked by loading its state dicts, see the README), and the tests
# rebuild every model and compare.

AR_REFERENCE = "Rodríguez et al., ECCV 2018"
AR_URL = "https://github.com/prlz77/attend-and-rectify"
AR_OPTIONS = {"attention_type": "softmax", "return_attention": False}
AR_CHOICES = {"attention_type": GATE_TYPES, "return_attention": (True, False)}


def _build_ar(cfg: ARConfig, *, num_classes: int, image_size: int, **options) -> AttendRectifyNet:
    return AttendRectifyNet(cfg, num_classes=num_classes, image_size=image_size, **options)


_AR = {  # name: (depth, width, params, macs) at 32×32, 10 classes (CIFAR-10, as the official logs)
    "wrn16_4_ar": (16, 4, 2_943_490, 442_158_592),
    "wrn28_10_ar": (28, 10, 36_965_634, 5_367_194_368),
    "wrn40_10_ar": (40, 10, 56_328_194, 8_198_349_568),
}
for _name, (_depth, _width, _params, _macs) in _AR.items():
    register_model(
        ModelSpec(
            name=_name,
            family="A&R",
            builder=partial(
                _build_ar, ARConfig(_depth, _width, attention_depth=3, attention_width=4)
            ),
            image_size=32,
            num_classes=10,
            mean=CIFAR_MEAN,
            std=CIFAR_STD,
            resize_size=32,
            params=_params,
            macs=_macs,
            reference=AR_REFERENCE,
            reference_url=AR_URL,
            description=f"Attend and Rectify on WRN-{_depth}-{_width}: 3 attention modules × "
            "4 heads, gated log-softmax aggregation, CIFAR-10",
            outputs=("log_probs",),
            min_image_size=8,
            options=dict(AR_OPTIONS),
            option_choices=dict(AR_CHOICES),
        )
    )
