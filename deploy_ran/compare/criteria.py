"""The criteria: every threshold an agreement check uses, per precision and per output kind.

Every agreement table the toolkit prints (the export check, the FP16 check, the INT8 check after
calibration, sensitivity, ``verify``) takes its limits from :data:`DEFAULT_CRITERIA` and
:data:`KIND_CRITERIA` through :func:`criteria_for`. That keeps one meaning for "relative L2 1e-4"
and one place for every threshold; :mod:`deploy_ran.compare.judge` applies them.

========  ==========================================================
FP32      relative L2 ≤ 1e-4
FP16      relative L2 ≤ 1e-2 and top-1 agreement ≥ 99 %
BF16      relative L2 ≤ 3e-2 and top-1 agreement ≥ 98 % (PyTorch autocast on a CPU)
INT8      cosine similarity ≥ 0.99 and top-1 agreement ≥ 95 %
========  ==========================================================

Non-finite candidate values always fail (``finite`` check), whatever the precision.

**Per-output criteria by kind.** Cosine and relative L2 are blind for outputs far from zero: a
spatially *inverted* sigmoid attention map whose values sit near 0.5 scores cosine 0.99998, and an
error of 2 nats on log-probabilities scores cosine 0.9998. So every output is given a *kind*
(:func:`output_kind`: from its name, else from its values) and the kind adds its own criteria
(:data:`KIND_CRITERIA`, flat keys ``"<kind>.<criterion>"`` in a criteria dict):

=========  =========================================================================================
logits     the table above; top-1 is counted only over *decided* inputs, whose reference top-1/top-2
           margin exceeds the measured noise (:func:`tie_noise`); near-ties are reported apart.
           Plus ``logits.min_input_centred_cosine``: the cosine after removing the mean over the
           inputs, i.e. of the part of the scores that depends on the input. Random weights give
           logits that are mostly one constant vector (cosine ≈ 1 for any candidate) and near-tied
           (top-1 not judged): an INT8 file that ignores its input scored cosine 0.998 and passed
           both, with input-centred cosine 2e-7 (a correct one: 0.97).
log_probs  as logits, plus a limit on max abs error in nats (``log_probs.max_abs``) and the finite
           check
map        values in [0, 1] (sigmoid attention maps): plus ``map.min_centred_cosine``, the cosine
           after removing each map's own mean (the Pearson correlation of the maps, so a flipped
           map fails), and ``map.max_abs`` (a probability off by more than this is wrong)
tensor     anything else: the table above
=========  =========================================================================================
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from deploy_ran.errors import DeployRanError

DEFAULT_CRITERIA: dict[str, dict[str, float]] = {
    "fp32": {"max_rel_l2": 1e-4},
    "fp16": {"max_rel_l2": 1e-2, "min_top1": 0.99},
    "bf16": {"max_rel_l2": 3e-2, "min_top1": 0.98},
    "int8": {"min_cosine": 0.99, "min_top1": 0.95},
}
#: Criteria an output kind adds to its precision's row (see the module docstring). Limits are the
#: measured worst case of correct files with a margin (README, "Precision as TensorRT computes it"):
#: the centred cosine of seeded random-weight maps, nearly flat, was 0.978 in FP16 (ran56_cifar
#: stage 2: the spread is a few FP16 steps) and 0.976–0.998 in INT8, while a flipped map scores
#: below 0.5; INT8 log-probabilities of wrn16_4_ar moved up to 0.85 nats with top-1 at 100 %.
KIND_CRITERIA: dict[str, dict[str, dict[str, float]]] = {
    "fp32": {
        "map": {"min_centred_cosine": 0.999, "max_abs": 1e-3},
        "log_probs": {"max_abs": 1e-3, "min_input_centred_cosine": 0.999},
        "logits": {"min_input_centred_cosine": 0.999},
    },
    "fp16": {
        "map": {"min_centred_cosine": 0.9, "max_abs": 0.02},
        "log_probs": {"max_abs": 0.1, "min_input_centred_cosine": 0.98},
        "logits": {"min_input_centred_cosine": 0.98},
    },
    "bf16": {
        "map": {"min_centred_cosine": 0.9, "max_abs": 0.05},
        "log_probs": {"max_abs": 0.3, "min_input_centred_cosine": 0.95},
        "logits": {"min_input_centred_cosine": 0.95},
    },
    "int8": {
        "map": {"min_centred_cosine": 0.9, "max_abs": 0.15},
        "log_probs": {"max_abs": 1.0, "min_input_centred_cosine": 0.9},
        "logits": {"min_input_centred_cosine": 0.9},
    },
}
OUTPUT_KINDS = ("logits", "log_probs", "map", "tensor")
#: Which quantile of the per-input max abs logit error is "the measured noise", and its multiple:
#: a top-1 flip needs the margin to shrink by |Δtop1| + |Δtop2| ≤ 2·max|Δ|; the median, times 3 for
#: the spread of errors between inputs, so that up to half the inputs broken cannot hide as ties.
TIE_QUANTILE = 0.5
TIE_FACTOR = 3.0
# criterion → (metric in Agreement, "max" = value must be ≤ limit / "min" = value must be ≥ limit)
CRITERIA = {
    "max_rel_l2": ("rel_l2", "max"),
    "max_abs": ("max_abs", "max"),
    "min_cosine": ("cosine", "min"),
    "min_psnr": ("psnr", "min"),
    "min_top1": ("top1", "min"),
    "min_top5": ("top5", "min"),
    "min_centred_cosine": ("centred_cosine", "min"),
    "min_input_centred_cosine": ("input_centred_cosine", "min"),
}
TOLERANCE_KEYS = ("atol", "rtol")
#: Criteria whose value is a fraction (agreement, cosine): the limit must lie in [0, 1].
FRACTION_CRITERIA = (
    "min_top1", "min_top5", "min_cosine", "min_centred_cosine", "min_input_centred_cosine"
)


def precision_family(precision: str) -> str:
    """``autocast-bf16`` → ``bf16``, ``autocast-fp16`` → ``fp16``; others unchanged."""
    fam = precision.split("-")[-1].lower()
    return fam if fam in DEFAULT_CRITERIA else "fp32"


def _split_key(key: str) -> tuple[str | None, str]:
    """``"map.max_abs"`` → ``("map", "max_abs")``; ``"max_abs"`` → ``(None, "max_abs")``."""
    if "." in key:
        kind, name = key.split(".", 1)
        return kind, name
    return None, key


def criteria_for(precision: str, overrides: Mapping[str, float | None] | None = None) -> dict:
    """Default criteria of ``precision`` with ``overrides`` applied (``None`` = keep default).

    Plain keys apply to every output; ``"<kind>.<criterion>"`` keys (``map.max_abs``,
    ``log_probs.max_abs``) only to outputs of that kind (:data:`KIND_CRITERIA`).
    """
    family = precision_family(precision)
    crit: dict[str, float] = dict(DEFAULT_CRITERIA[family])
    for kind, limits in KIND_CRITERIA[family].items():
        crit.update({f"{kind}.{k}": v for k, v in limits.items()})
    for key, value in (overrides or {}).items():
        kind, name = _split_key(key)
        if (kind is not None and kind not in OUTPUT_KINDS) or (
            name not in CRITERIA and name not in TOLERANCE_KEYS
        ) or (kind is not None and name in TOLERANCE_KEYS):
            raise DeployRanError(
                f"Unknown criterion {key!r}.",
                hint=f"Choose from: {', '.join([*CRITERIA, *TOLERANCE_KEYS])}, or "
                f"KIND.CRITERION for one kind of output ({', '.join(OUTPUT_KINDS)}), e.g. "
                "map.max_abs.",
            )
        if value is None:
            continue
        value = float(value)
        if math.isnan(value):
            raise DeployRanError(f"Criterion {key} is NaN.", hint="Give a number.")
        if name in FRACTION_CRITERIA and not 0.0 <= value <= 1.0:
            raise DeployRanError(
                f"Criterion {key} is a fraction in [0, 1], got {value:g}.",
                hint="E.g. 0.99 for 99 %.",
            )
        if name in ("max_rel_l2", "max_abs", *TOLERANCE_KEYS) and value < 0:
            raise DeployRanError(f"Criterion {key} must be ≥ 0, got {value:g}.")
        crit[key] = value
    if ("atol" in crit) != ("rtol" in crit):  # one given: the other is 0, as in numpy.allclose
        crit.setdefault("atol", 0.0)
        crit.setdefault("rtol", 0.0)
    return crit
