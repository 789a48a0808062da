"""Residual Attention Network (Wang et al., CVPR 2017), built for one input size.

Structure, following the paper's Caffe deploy definitions:

* stem: 7×7/2 convolution + BN-ReLU + 3×3/2 max-pool (ImageNet) or a 3×3/1 convolution + BN-ReLU
  (CIFAR family, see :data:`CIFAR_DERIVATION`);
* three stages, each a (strided) transition unit followed by ``m`` attention modules;
* a fourth stage of residual units, then BN-ReLU-global average pool-FC.

An attention module (hyper-parameters ``p``, ``t``, ``r``) is ``p`` pre-processing units, a trunk of
``t`` units, a soft mask branch, the fusion ``(1 + M)·T`` (attention residual learning) or ``M·T``,
and ``p`` post-processing units. The encoder-decoder mask max-pools ``pool_steps`` times (3/2/1 in
stages 1/2/3 for a 224 input) with ``r`` units after each pool (``2r`` at the bottom), keeps one skip
unit per intermediate level, and on the way up resizes bilinearly (``align_corners=True``, like
Caffe's Interp layer) to the skip's size, adds the skip and applies ``r`` units.

Every upsampling size is computed here, at construction, from ``image_size``: the exported graph has
constant Resize sizes for any resolution (224, the paper's 320, odd sizes), never sizes read from a
tensor's shape at run time.

``variant="port"`` reproduces the arithmetic of the widely used PyTorch port
(tengshaofeng/ResidualAttentionNetwork-pytorch): each up-path sum also adds the down-path feature of
that level, and the last upsampled mask is added to the trunk output before the mask head.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from deploy_ran.models.layers import (
    ATTENTION_TYPES,
    MaskHead,
    PreActBottleneck,
    attention_activation,
    conv_output_size,
    pooled_size,
)
from deploy_ran.models.registry import (
    CIFAR_MEAN,
    CIFAR_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    ModelSpec,
    register_model,
)

MASK_TYPES = ("encoder_decoder", "local_conv")
VARIANTS = ("paper", "port")
LOCAL_CONV_UNITS = 3  # the paper's local-convolution mask: three units at full resolution

CIFAR_DERIVATION = """\
The paper trains its CIFAR networks (Attention-56/92/128/164 with m = 1..4 modules per stage,
depth 36m + 20, Attention-236 with m = 6 and Attention-452 with p, t, r = 2, 4, 3 and m = 6) but
gives no layer table. This toolkit derives them the way the paper derives its ImageNet networks
from pre-activation ResNets, starting from the CIFAR pre-activation ResNet-164 it compares against:
a 3×3/1 stem with 16 channels and no max-pool; three attention stages at 32, 16 and 8 pixels with
bottleneck units of output width 64, 128 and 256 (inner width 16, 32, 64); mask branches that pool
down to the network's coarsest map, 8×8 (2/1/0 pools in stages 1/2/3, as 3/2/1 pools reach 7×7 at
224); three final units at 8×8 and 256 channels; BN-ReLU-global average pool-FC. The depth count
matches the paper's 36m + 20: the stem, three transition units, three final units and the
classifier give 20 layers, and each module adds 3 · (2p + t) = 12 layers for p, t = 1, 2.
"""


@dataclass(frozen=True)
class RANConfig:
    """Layout of one Residual Attention Network; the registry keeps one per model name."""

    stem: str  # "imagenet" (7×7/2 conv + max-pool) or "cifar" (3×3/1 conv)
    stem_channels: int
    stage_channels: tuple[int, int, int]
    modules_per_stage: tuple[int, int, int]
    pool_steps: tuple[int, int, int] = (3, 2, 1)
    final_channels: int = 2048
    final_units: int = 3
    final_stride: int = 2
    p: int = 1
    t: int = 2
    r: int = 1
    groups: int = 1  # 32 for ResNeXt units
    width_ratio: float = 0.25  # inner bottleneck width / output width (0.5 for ResNeXt)
    extra: dict = field(default_factory=dict)


class SoftMaskBranch(nn.Module):
    """Encoder-decoder soft mask: bottom-up max-pools, top-down bilinear resizes to fixed sizes."""

    def __init__(
        self,
        channels: int,
        size: tuple[int, int],
        pool_steps: int,
        r: int,
        make_unit,
        variant: str,
    ) -> None:
        super().__init__()
        self.variant = variant
        self.pool_steps = pool_steps
        sizes = [size]
        for _ in range(pool_steps):
            sizes.append((pooled_size(sizes[-1][0]), pooled_size(sizes[-1][1])))
        # sizes[k] is the spatial size after k pools; resizes target sizes[0..n-1].
        self.sizes: list[tuple[int, int]] = sizes

        def units(n: int) -> nn.Sequential:
            return nn.Sequential(*[make_unit() for _ in range(n)])

        levels = max(pool_steps, 1)
        self.down = nn.ModuleList([units(r) for _ in range(levels - 1)] + [units(2 * r)])
        self.skips = nn.ModuleList([make_unit() for _ in range(levels - 1)])
        self.up = nn.ModuleList([units(r) for _ in range(levels - 1)])

    def _resize(self, x: torch.Tensor, level: int) -> torch.Tensor:
        return F.interpolate(x, size=self.sizes[level], mode="bilinear", align_corners=True)

    def forward(self, x: torch.Tensor, trunk: torch.Tensor) -> torch.Tensor:
        if self.pool_steps == 0:
            return self.down[0](x)
        feats = []
        h = x
        for down in self.down:
            h = down(F.max_pool2d(h, kernel_size=3, stride=2, padding=1))
            feats.append(h)
        for level in reversed(range(len(self.up))):
            skip = self.skips[level](feats[level])
            h = self._resize(h, level + 1) + skip
            if self.variant == "port":
                h = h + feats[level]
            h = self.up[level](h)
        h = self._resize(h, 0)
        if self.variant == "port":
            h = h + trunk
        return h


class LocalConvMask(nn.Module):
    """The paper's ablation mask: residual units at full resolution, no down- or up-sampling."""

    def __init__(self, make_unit) -> None:
        super().__init__()
        self.units = nn.Sequential(*[make_unit() for _ in range(LOCAL_CONV_UNITS)])

    def forward(self, x: torch.Tensor, trunk: torch.Tensor) -> torch.Tensor:
        return self.units(x)


class AttentionModule(nn.Module):
    """p pre units → trunk (t units) ⊗ soft mask → p post units."""

    def __init__(
        self,
        channels: int,
        size: tuple[int, int],
        pool_steps: int,
        cfg: RANConfig,
        attention: str,
        attention_residual: bool,
        mask: str,
        variant: str,
    ) -> None:
        super().__init__()
        width = int(channels * cfg.width_ratio)

        def make_unit() -> PreActBottleneck:
            return PreActBottleneck(channels, channels, width=width, groups=cfg.groups)

        self.attention = attention
        self.attention_residual = attention_residual
        self.pre = nn.Sequential(*[make_unit() for _ in range(cfg.p)])
        self.trunk = nn.Sequential(*[make_unit() for _ in range(cfg.t)])
        if mask == "encoder_decoder":
            self.mask = SoftMaskBranch(channels, size, pool_steps, cfg.r, make_unit, variant)
        else:
            self.mask = LocalConvMask(make_unit)
        self.mask_head = MaskHead(channels)
        self.post = nn.Sequential(*[make_unit() for _ in range(cfg.p)])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the module's output and its soft mask M (N×C×H×W).

        Both come out of the module call, so forward hooks on an attention module see the mask
        and the exporter attributes the mask's ops to the module.
        """
        x = self.pre(x)
        trunk = self.trunk(x)
        mask = attention_activation(self.mask_head(self.mask(x, trunk)), self.attention)
        fused = (1 + mask) * trunk if self.attention_residual else mask * trunk
        return self.post(fused), mask


class RANStage(nn.Module):
    """A transition unit (changes width, maybe stride) followed by attention modules."""

    def __init__(self, transition: PreActBottleneck, modules: list[AttentionModule]) -> None:
        super().__init__()
        self.transition = transition
        self.attention = nn.ModuleList(modules)


class ResidualAttentionNet(nn.Module):
    """A Residual Attention Network built for a fixed ``image_size``.

    ``forward`` returns the class logits, or a tuple ``(logits, mask_1, ..., mask_k)`` when
    ``return_attention`` is set, each mask being the module's soft mask averaged over channels
    (N×1×H×W) so it can be looked at as an image.
    """

    def __init__(
        self,
        cfg: RANConfig,
        num_classes: int = 1000,
        image_size: int | tuple[int, int] = 224,
        attention: str = "mixed",
        attention_residual: bool = True,
        mask: str = "encoder_decoder",
        variant: str = "paper",
        return_attention: bool = False,
    ) -> None:
        super().__init__()
        if attention not in ATTENTION_TYPES:
            raise ValueError(f"attention={attention!r}; expected one of {ATTENTION_TYPES}")
        if mask not in MASK_TYPES:
            raise ValueError(f"mask={mask!r}; expected one of {MASK_TYPES}")
        if variant not in VARIANTS:
            raise ValueError(f"variant={variant!r}; expected one of {VARIANTS}")
        h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        self.cfg = cfg
        self.image_size = (h, w)
        self.return_attention = return_attention

        if cfg.stem == "imagenet":
            self.stem = nn.Sequential(
                nn.Conv2d(3, cfg.stem_channels, 7, 2, padding=3, bias=False),
                nn.BatchNorm2d(cfg.stem_channels),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(3, 2, padding=1),
            )
            h, w = (conv_output_size(conv_output_size(s, 7, 2, 3), 3, 2, 1) for s in (h, w))
        elif cfg.stem == "cifar":
            self.stem = nn.Sequential(
                nn.Conv2d(3, cfg.stem_channels, 3, 1, padding=1, bias=False),
                nn.BatchNorm2d(cfg.stem_channels),
                nn.ReLU(inplace=True),
            )
        else:
            raise ValueError(f"unknown stem {cfg.stem!r}")

        stages = []
        in_ch = cfg.stem_channels
        for index, (ch, count, pools) in enumerate(
            zip(cfg.stage_channels, cfg.modules_per_stage, cfg.pool_steps)
        ):
            stride = 1 if index == 0 else 2
            transition = PreActBottleneck(
                in_ch, ch, stride, width=int(ch * cfg.width_ratio), groups=cfg.groups
            )
            h, w = conv_output_size(h, 3, stride, 1), conv_output_size(w, 3, stride, 1)
            modules = [
                AttentionModule(
                    ch, (h, w), pools, cfg, attention, attention_residual, mask, variant
                )
                for _ in range(count)
            ]
            stages.append(RANStage(transition, modules))
            in_ch = ch
        self.stages = nn.ModuleList(stages)

        final_width = int(cfg.final_channels * cfg.width_ratio)
        self.final = nn.Sequential(
            *[
                PreActBottleneck(
                    in_ch if i == 0 else cfg.final_channels,
                    cfg.final_channels,
                    stride=cfg.final_stride if i == 0 else 1,
                    width=final_width,
                    groups=cfg.groups,
                )
                for i in range(cfg.final_units)
            ]
        )
        self.head_bn = nn.BatchNorm2d(cfg.final_channels)
        self.fc = nn.Linear(cfg.final_channels, num_classes)
        self.num_classes = num_classes

    @property
    def output_names(self) -> list[str]:
        """Names of the graph outputs, in the order ``forward`` returns them."""
        if not self.return_attention:
            return ["logits"]
        return ["logits", *(f"attention_{n}" for n in self.attention_names)]

    @property
    def attention_names(self) -> list[str]:
        """Names of the attention-map outputs, in forward order (``stage1_module1``, ...)."""
        return [
            f"stage{s + 1}_module{m + 1}"
            for s, stage in enumerate(self.stages)
            for m in range(len(stage.attention))
        ]

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        x = self.stem(x)
        masks = []
        for stage in self.stages:
            x = stage.transition(x)
            for module in stage.attention:
                x, mask = module(x)
                if self.return_attention:
                    masks.append(mask.mean(dim=1, keepdim=True))
        x = self.final(x)
        x = F.relu(self.head_bn(x))
        logits = self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))
        if self.return_attention:
            return (logits, *masks)
        return logits


# --- Registered RAN models: one ModelSpec per name ---------------------------------------------
# ``params``/``macs`` are this implementation's exact figures at the default input size and class
# count (multiply-adds of convolutions and the classifier, as papers count them); tests rebuild every
# model and compare, so a change to an architecture cannot slip through unnoticed.

RAN_REFERENCE = "Wang et al., CVPR 2017"
RAN_URL = "https://arxiv.org/abs/1704.06904"
RAN_OPTIONS = {
    "attention": "mixed",
    "attention_residual": True,
    "mask": "encoder_decoder",
    "variant": "paper",
    "return_attention": False,
}
RAN_CHOICES = {
    "attention": ATTENTION_TYPES,
    "attention_residual": (True, False),
    "mask": MASK_TYPES,
    "variant": VARIANTS,
    "return_attention": (True, False),
}


def _build_ran(
    cfg: RANConfig, *, num_classes: int, image_size: int, **options
) -> ResidualAttentionNet:
    return ResidualAttentionNet(cfg, num_classes=num_classes, image_size=image_size, **options)


_IMAGENET = dict(stem="imagenet", stem_channels=64, stage_channels=(256, 512, 1024))
# CIFAR derivation: see deploy_ran.models.ran.CIFAR_DERIVATION.
_CIFAR = dict(
    stem="cifar",
    stem_channels=16,
    stage_channels=(64, 128, 256),
    pool_steps=(2, 1, 0),
    final_channels=256,
    final_stride=1,
)


def _ran(
    name: str,
    cfg: RANConfig,
    *,
    imagenet: bool,
    params: int,
    macs: int,
    description: str,
    paper_params: float | None = None,
    paper_macs: float | None = None,
) -> None:
    register_model(
        ModelSpec(
            name=name,
            family="RAN" if imagenet else "RAN-CIFAR",
            builder=partial(_build_ran, cfg),
            image_size=224 if imagenet else 32,
            num_classes=1000 if imagenet else 10,
            mean=IMAGENET_MEAN if imagenet else CIFAR_MEAN,
            std=IMAGENET_STD if imagenet else CIFAR_STD,
            resize_size=256 if imagenet else 32,
            params=params,
            macs=macs,
            reference=RAN_REFERENCE,
            reference_url=RAN_URL,
            description=description,
            min_image_size=32 if imagenet else 8,
            paper_params=paper_params,
            paper_macs=paper_macs,
            options=dict(RAN_OPTIONS),
            option_choices=dict(RAN_CHOICES),
        )
    )


_ran(
    "ran56",
    RANConfig(**_IMAGENET, modules_per_stage=(1, 1, 1)),
    imagenet=True,
    params=31_810_728,
    macs=6_270_836_736,
    paper_params=31.9,
    paper_macs=6.2,
    description="Attention-56: one attention module per stage (p, t, r = 1, 2, 1)",
)
_ran(
    "ran92",
    RANConfig(**_IMAGENET, modules_per_stage=(1, 2, 3)),
    imagenet=True,
    params=52_466_344,
    macs=10_533_789_696,
    paper_params=51.3,
    paper_macs=10.4,
    description="Attention-92: 1, 2, 3 attention modules in stages 1, 2, 3",
)
_ran(
    "ran56_next",
    RANConfig(**_IMAGENET, modules_per_stage=(1, 1, 1), groups=32, width_ratio=0.5),
    imagenet=True,
    params=31_314_856,
    macs=6_419_106_816,
    description="AttentionNeXt-56: Attention-56 with ResNeXt units (32 groups)",
)
_CIFAR_FIGURES = {  # depth: (modules per stage, params, macs) at 32×32, 10 classes
    56: (1, 1_081_850, 127_420_928),
    92: (2, 1_825_722, 221_104_640),
    128: (3, 2_569_594, 314_788_352),
    164: (4, 3_313_466, 408_472_064),
}
for _depth, (_m, _params, _macs) in _CIFAR_FIGURES.items():
    _ran(
        f"ran{_depth}_cifar",
        RANConfig(**_CIFAR, modules_per_stage=(_m,) * 3),
        imagenet=False,
        params=_params,
        macs=_macs,
        paper_params={92: 1.9}.get(_depth),
        description=f"Attention-{_depth} for 32×32 inputs: m = {_m} modules per stage",
    )
_ran(
    "ran236_cifar",
    RANConfig(**_CIFAR, modules_per_stage=(6, 6, 6)),
    imagenet=False,
    params=4_801_210,
    macs=595_839_488,
    paper_params=5.1,
    description="Attention-236 for 32×32 inputs: m = 6 modules per stage",
)
_ran(
    "ran452_cifar",
    RANConfig(**_CIFAR, modules_per_stage=(6, 6, 6), p=2, t=4, r=3),
    imagenet=False,
    params=9_361_594,
    macs=1_083_820_544,
    paper_params=8.6,
    description="Attention-452 for 32×32 inputs: m = 6, p, t, r = 2, 4, 3",
)
