"""The registered models: one :class:`ModelSpec` per name.

``params``/``macs`` are this implementation's exact figures at the default input size and class
count (multiply-adds of convolutions and the classifier, as papers count them); tests rebuild every
model and compare, so a change to an architecture cannot slip through unnoticed.
"""

from __future__ import annotations

from functools import partial

from deploy_ran.models.layers import ATTENTION_TYPES
from deploy_ran.models.ran import MASK_TYPES, VARIANTS, RANConfig, ResidualAttentionNet
from deploy_ran.models.registry import (
    CIFAR_MEAN,
    CIFAR_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    ModelSpec,
    register_model,
)

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

# --- Attention Branch Network and Attend-and-Rectify (registered in their own module) ----------
import deploy_ran.models.zoo_abn_ar  # noqa: E402, F401
