"""Registered Attention Branch Networks and Attend-and-Rectify wide ResNets.

Exact ``params``/``macs`` of this implementation at the default size and class count; they equal
the official code's (checked by loading its state dicts, see the README), and the tests rebuild
every model and compare.
"""

from __future__ import annotations

from functools import partial

from deploy_ran.models.abn import ABNConfig, AttentionBranchNet
from deploy_ran.models.attend_rectify import GATE_TYPES, ARConfig, AttendRectifyNet
from deploy_ran.models.registry import (
    CIFAR_MEAN,
    CIFAR_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    ModelSpec,
    register_model,
)

ABN_REFERENCE = "Fukui et al., CVPR 2019"
ABN_URL = "https://github.com/machine-perception-robotics-group/attention_branch_network"
AR_REFERENCE = "Rodríguez et al., ECCV 2018"
AR_URL = "https://github.com/prlz77/attend-and-rectify"

# ``outputs`` is a tuple option (any non-empty selection of logits, attention_logits, attention):
# the builder validates it, since option_choices can only list whole values.
ABN_OPTIONS = {"outputs": ("logits",), "return_attention": False}
ABN_CHOICES = {"return_attention": (True, False)}
AR_OPTIONS = {"attention_type": "softmax", "return_attention": False}
AR_CHOICES = {"attention_type": GATE_TYPES, "return_attention": (True, False)}


def _build_abn(
    cfg: ABNConfig, *, num_classes: int, image_size: int, **options
) -> AttentionBranchNet:
    return AttentionBranchNet(cfg, num_classes=num_classes, image_size=image_size, **options)


def _build_ar(cfg: ARConfig, *, num_classes: int, image_size: int, **options) -> AttendRectifyNet:
    return AttendRectifyNet(cfg, num_classes=num_classes, image_size=image_size, **options)


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
