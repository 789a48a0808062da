"""Attention Branch Network (Fukui et al., CVPR 2019) on ResNet, built like the official code.

The network is a post-activation ResNet (torchvision's bottleneck: stride on the 3×3 convolution,
projection shortcut ``downsample`` = 1×1 convolution + BN) cut before its last stage:

* **attention branch**: a copy of the last stage's blocks at stride 1 on the previous stage's
  output (``att_layer4`` on ImageNet, ``att_layer3`` on CIFAR), BN, a 1×1 convolution to K (the
  class count) channels, BN, ReLU. From there, the *attention logits* are a 1×1 convolution K→K
  followed by global average pooling, and the *attention map* M is a 3×3 convolution K→1, BN and a
  sigmoid;
* **perception branch**: ``x·M + x`` (the paper's (1 + M)·x, computed in the official order), the
  last stage at stride 2, global average pooling and the classifier ``fc``.

Module names follow the official repository (machine-perception-robotics-group/
attention_branch_network), so its state dicts load as they are. Where the official code pools with
fixed windows (``AvgPool2d(14)``, ``AvgPool2d(7)``, ``AvgPool2d(16)``, ``AvgPool2d(8)``), which equal
global pooling only at its training resolution, this implementation pools globally: the same
arithmetic at that resolution, and any input size builds and exports.

Outputs (``outputs`` option, in the order given; ``return_attention`` appends ``attention``):

* ``logits`` — perception-branch class logits, ``[batch, K]`` (what the paper evaluates);
* ``attention_logits`` — attention-branch class logits, ``[batch, K]``;
* ``attention`` — the attention map M in [0, 1], ``[batch, 1, H/16, W/16]`` on ImageNet
  (14×14 at 224) and ``[batch, 1, H/2, W/2]`` on CIFAR (16×16 at 32).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from deploy_ran.errors import DeployRanError
from deploy_ran.models.registry import (
    CIFAR_MEAN,
    CIFAR_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    ModelSpec,
    register_model,
)

ABN_OUTPUTS = ("logits", "attention_logits", "attention")


@dataclass(frozen=True)
class ABNConfig:
    """Layout of one Attention Branch Network; the registry keeps one per model name."""

    stem: str  # "imagenet" (7×7/2 convolution + max-pool) or "cifar" (3×3/1 convolution)
    planes: tuple[int, ...]  # inner width of the bottlenecks of each stage (output is 4×)
    blocks: tuple[int, ...]  # bottlenecks per stage; the last stage is also the attention branch


class Bottleneck(nn.Module):
    """Post-activation bottleneck (torchvision v1.5): 1×1 → 3×3 (stride) → 1×1, ReLU after the sum."""

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out_channels = planes * self.expansion
        self.conv1 = nn.Conv2d(in_channels, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        residual = x if self.downsample is None else self.downsample(x)
        return F.relu(out + residual)


def make_stage(in_channels: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    """One ResNet stage: a (strided, projecting) first block, then ``blocks - 1`` plain ones."""
    out_channels = planes * Bottleneck.expansion
    return nn.Sequential(
        Bottleneck(in_channels, planes, stride),
        *[Bottleneck(out_channels, planes) for _ in range(blocks - 1)],
    )


def parse_outputs(outputs: str | Iterable[str]) -> tuple[str, ...]:
    """Validate the ``outputs`` option: a non-empty selection of :data:`ABN_OUTPUTS`, no repeats.

    A comma-separated string (the command line's form) is accepted too.
    """
    items = outputs.split(",") if isinstance(outputs, str) else list(outputs)
    names = tuple(str(o).strip() for o in items if str(o).strip())
    choices = ", ".join(ABN_OUTPUTS)
    if not names:
        raise DeployRanError(
            "ABN: outputs is empty.", hint=f"Choose one or more of: {choices} (e.g. logits)."
        )
    unknown = [n for n in names if n not in ABN_OUTPUTS]
    if unknown:
        raise DeployRanError(
            f"ABN: unknown output(s) {', '.join(map(repr, unknown))}.",
            hint=f"Choose one or more of: {choices}, e.g. --outputs logits,attention.",
        )
    if len(set(names)) != len(names):
        raise DeployRanError(
            f"ABN: outputs {', '.join(names)} names an output twice.",
            hint=f"Name each of {choices} at most once.",
        )
    return names


class AttentionBranchNet(nn.Module):
    """Attention Branch Network on a bottleneck ResNet; see the module docstring for outputs."""

    def __init__(
        self,
        cfg: ABNConfig,
        num_classes: int = 1000,
        image_size: int | tuple[int, int] = 224,
        outputs: str | Iterable[str] = ("logits",),
        return_attention: bool = False,
    ) -> None:
        super().__init__()
        if len(cfg.planes) != len(cfg.blocks) or len(cfg.planes) < 2:
            raise ValueError("ABNConfig needs the same number (≥ 2) of planes and blocks")
        h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        self.cfg = cfg
        self.image_size = (h, w)
        self.num_classes = num_classes
        self.outputs = parse_outputs(outputs)
        self.return_attention = return_attention

        stem_channels = 64 if cfg.stem == "imagenet" else 16
        if cfg.stem == "imagenet":
            self.conv1 = nn.Conv2d(3, stem_channels, 7, 2, padding=3, bias=False)
            self.maxpool: nn.Module = nn.MaxPool2d(3, 2, padding=1)
        elif cfg.stem == "cifar":
            self.conv1 = nn.Conv2d(3, stem_channels, 3, 1, padding=1, bias=False)
            self.maxpool = nn.Identity()
        else:
            raise ValueError(f"unknown stem {cfg.stem!r}")
        self.bn1 = nn.BatchNorm2d(stem_channels)

        last = len(cfg.planes)
        in_channels = stem_channels
        for index, (planes, blocks) in enumerate(zip(cfg.planes[:-1], cfg.blocks[:-1])):
            stride = 1 if index == 0 else 2
            self.add_module(f"layer{index + 1}", make_stage(in_channels, planes, blocks, stride))
            in_channels = planes * Bottleneck.expansion
        planes, blocks = cfg.planes[-1], cfg.blocks[-1]
        branch_channels = planes * Bottleneck.expansion
        # The official names: att_layer4/layer4 on ImageNet, att_layer3/layer3 on CIFAR.
        self.att_name, self.last_name = f"att_layer{last}", f"layer{last}"
        self.add_module(self.att_name, make_stage(in_channels, planes, blocks, stride=1))
        self.bn_att = nn.BatchNorm2d(branch_channels)
        self.att_conv = nn.Conv2d(branch_channels, num_classes, 1, bias=False)
        self.bn_att2 = nn.BatchNorm2d(num_classes)
        self.att_conv2 = nn.Conv2d(num_classes, num_classes, 1, bias=False)
        self.att_conv3 = nn.Conv2d(num_classes, 1, 3, padding=1, bias=False)
        self.bn_att3 = nn.BatchNorm2d(1)
        self.add_module(self.last_name, make_stage(in_channels, planes, blocks, stride=2))
        self.fc = nn.Linear(branch_channels, num_classes)
        self.trunk_names = [f"layer{i + 1}" for i in range(last - 1)]

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        # Residual branches start scaled by 1/√(number of blocks) (the last BN's weight of each
        # bottleneck), so a deep network's activations stay bounded before any training. With
        # BN's weight at 1, an untrained abn_resnet110_cifar in eval mode (running statistics 0/1,
        # no normalisation) gave logits ~1e9 and a saturated 0/1 attention map, so its seeded
        # random-weight FP16/INT8 checks meant little; now logits are ~0.3 and the map unsaturated.
        # Checkpoints overwrite it.
        bottlenecks = [m for m in self.modules() if isinstance(m, Bottleneck)]
        for block in bottlenecks:
            nn.init.constant_(block.bn3.weight, 1.0 / math.sqrt(len(bottlenecks)))

    @property
    def output_names(self) -> list[str]:
        """Names of the graph outputs, in the order ``forward`` returns them."""
        names = list(self.outputs)
        if self.return_attention and "attention" not in names:
            names.append("attention")
        return names

    @property
    def attention_names(self) -> list[str]:
        """Names of the attention-map outputs (the single map M)."""
        return ["attention"]

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        for name in self.trunk_names:
            x = getattr(self, name)(x)
        a = self.bn_att(getattr(self, self.att_name)(x))
        a = F.relu(self.bn_att2(self.att_conv(a)))
        attention = torch.sigmoid(self.bn_att3(self.att_conv3(a)))
        values: dict[str, torch.Tensor] = {"attention": attention}
        names = self.output_names
        if "attention_logits" in names:
            values["attention_logits"] = torch.flatten(
                F.adaptive_avg_pool2d(self.att_conv2(a), 1), 1
            )
        if "logits" in names:
            r = x * attention + x
            r = getattr(self, self.last_name)(r)
            values["logits"] = self.fc(torch.flatten(F.adaptive_avg_pool2d(r, 1), 1))
        if len(names) == 1:
            return values[names[0]]
        return tuple(values[n] for n in names)


# --- Registered ABN models ---------------------------------------------------------------------
# ``params``/``macs`` are this implementation's exact figures at the default size and class count;
# they equal the official code's (checked by loading its state dicts, see the README), and the tests
# rebuild every model and compare.

ABN_REFERENCE = "Fukui et al., CVPR 2019"
ABN_URL = "https://github.com/machine-perception-robotics-group/attention_branch_network"
# ``outputs`` is a tuple option (any non-empty selection of logits, attention_logits, attention):
# the builder validates it, since option_choices can only list whole values.
ABN_OPTIONS = {"outputs": ("logits",), "return_attention": False}
ABN_CHOICES = {"return_attention": (True, False)}


def _build_abn(
    cfg: ABNConfig, *, num_classes: int, image_size: int, **options
) -> AttentionBranchNet:
    return AttentionBranchNet(cfg, num_classes=num_classes, image_size=image_size, **options)


_IMAGENET_PLANES = (64, 128, 256, 512)
_ABN_IMAGENET = {  # name: (blocks per stage, params, macs) at 224×224, 1000 classes
    "abn_resnet50": ((3, 4, 6, 3), 43_584_866, 7_421_029_024),
    "abn_resnet101": ((3, 4, 23, 3), 62_576_994, 11_133_250_208),
    "abn_resnet152": ((3, 8, 36, 3), 78_220_642, 14_845_471_392),
}
for _name, (_blocks, _params, _macs) in _ABN_IMAGENET.items():
    _depth = _name.removeprefix("abn_resnet")
    register_model(
        ModelSpec(
            name=_name,
            family="ABN",
            builder=partial(_build_abn, ABNConfig("imagenet", _IMAGENET_PLANES, _blocks)),
            image_size=224,
            num_classes=1000,
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            resize_size=256,
            params=_params,
            macs=_macs,
            reference=ABN_REFERENCE,
            reference_url=ABN_URL,
            description=f"Attention Branch Network on ResNet-{_depth}: attention branch = "
            "a stride-1 copy of layer 4 on the layer-3 output",
            min_image_size=32,
            options=dict(ABN_OPTIONS),
            option_choices=dict(ABN_CHOICES),
        )
    )

register_model(
    ModelSpec(
        name="abn_resnet110_cifar",
        family="ABN-CIFAR",
        # The official CIFAR ResNet-110: depth 6n + 2 with n = 18 bottleneck units per stage.
        builder=partial(_build_abn, ABNConfig("cifar", (16, 32, 64), (18, 18, 18))),
        image_size=32,
        num_classes=100,
        mean=CIFAR_MEAN,
        std=CIFAR_STD,
        resize_size=32,
        params=3_056_786,
        macs=581_609_472,
        reference=ABN_REFERENCE,
        reference_url=ABN_URL,
        description="Attention Branch Network on the official CIFAR ResNet-110 (18 bottleneck "
        "units per stage), CIFAR-100",
        min_image_size=8,
        options=dict(ABN_OPTIONS),
        option_choices=dict(ABN_CHOICES),
    )
)
