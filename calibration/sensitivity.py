"""Which part of the network INT8 hurts, and keeping just those parts in higher precision.

``analyze_sensitivity`` quantizes one group at a time (the stem, each stage's transition unit, each
attention module, the final units, the head; see :mod:`calibration.placement`) with everything else
in FP32, and measures how far each moves the output from FP32: relative L2 error and top-1
agreement on (the first of) the calibration images. Attention modules with their soft-mask branches are
where a Residual Attention Network is expected to be fragile; the table shows whether they are.

``auto_exclude`` then starts from the fully quantized model and moves the most sensitive group
back to FP32, one at a time, until top-1 agreement with FP32 reaches the target *and* every output
meets the INT8 criteria ``verify`` applies (attention maps and log-probabilities included).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import onnx

from calibration.evaluate import OutputAgreement, RunModel, agreement
from calibration.placement import (
    DEFAULT_PLACEMENT,
    GraphIndex,
    plan_quantization,
    quantizable_groups,
)
from calibration.qdq import build_qdq_model, with_fp16_float_part

Progress = Callable[[str, int, int], None]


@dataclass
class GroupSensitivity:
    """One group quantized alone."""

    group: str
    weight_nodes: int
    activations: int
    rel_l2: float
    cosine: float
    top1: float | None
    rank: int = 0  # 1 = most sensitive


@dataclass
class AutoStep:
    """The fully quantized model minus the groups excluded so far."""

    excluded: list[str]
    rel_l2: float
    top1: float | None
    criteria_passed: bool | None = None  # every output within verify's INT8 criteria


@dataclass
class SensitivityReport:
    """Per-group sensitivity, the all-INT8 baseline and (optionally) the auto-exclusion steps."""

    eval_images: int
    method: str
    include_attention: bool
    all_int8: AutoStep
    groups: list[GroupSensitivity]
    target_agreement: float | None = None
    steps: list[AutoStep] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)
    met_target: bool | None = None
    float_precision: str = "fp32"  # of the candidates' non-quantized part (as the file written)

    def most_sensitive(self) -> list[str]:
        return [g.group for g in sorted(self.groups, key=lambda g: g.rank)]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _main(rows: Sequence[OutputAgreement]) -> OutputAgreement:
    """The output that decides: the logits (first output)."""
    return rows[0]


class _Evaluator:
    """Builds Q/DQ variants of one model and compares them with FP32 on fixed images."""

    def __init__(
        self,
        model: onnx.ModelProto,
        index: GraphIndex,
        ranges: dict[str, tuple[float, float]],
        images: np.ndarray,
        batch: int,
        include_attention: bool,
        exclude: Sequence[str],
        run_model: RunModel,
        float_precision: str = "fp32",
        placement: str = DEFAULT_PLACEMENT,
    ) -> None:
        self.model, self.index, self.ranges = model, index, ranges
        self.placement = placement
        self.float_precision = float_precision
        self.run_model = run_model
        self.images, self.batch = images, batch
        self.include_attention = include_attention
        self.exclude = list(exclude)
        self.reference = run_model(model, images, batch)

    def measure(self, *, only_groups=None, exclude_groups=()) -> tuple[OutputAgreement, Any]:
        plan = plan_quantization(
            self.index,
            exclude=[*self.exclude, *exclude_groups],
            include_attention=self.include_attention,
            only_groups=only_groups,
            placement=self.placement,
        )
        qdq = build_qdq_model(self.model, plan, self.ranges)
        if self.float_precision == "fp16":  # judge the file that will be written, not its FP32 twin
            qdq = with_fp16_float_part(qdq)
        outputs = self.run_model(qdq, self.images, self.batch)
        return _main(agreement(self.reference, outputs)), plan


def analyze_sensitivity(
    model: onnx.ModelProto,
    ranges: dict[str, tuple[float, float]],
    images: np.ndarray,
    *,
    method: str,
    batch: int = 16,
    include_attention: bool = False,
    exclude: Sequence[str] = (),
    target_agreement: float | None = None,
    run_model: RunModel,
    float_precision: str = "fp32",
    placement: str = DEFAULT_PLACEMENT,
    progress: Progress | None = None,
) -> SensitivityReport:
    """Quantize each group alone; with ``target_agreement``, also run :func:`auto_exclude`.

    ``model`` must carry inferred shapes; ``images`` are preprocessed inputs; ``run_model`` runs
    each candidate (see :mod:`calibration.evaluate`). ``float_precision="fp16"`` evaluates every
    candidate with the FP16 float part the INT8 file will have, so that a group is kept in
    higher precision for what the deployed file does, not for what an FP32-float twin would do.
    The reference stays the FP32 model.
    """
    say = progress or (lambda _p, _d, _t: None)
    index = GraphIndex(model)
    evaluator = _Evaluator(
        model, index, ranges, images, batch, include_attention, exclude, run_model,
        float_precision, placement,
    )  # fmt: skip
    groups = quantizable_groups(index)
    total = len(groups) + 1
    say("sensitivity", 0, total)
    full, _ = evaluator.measure()
    say("sensitivity", 1, total)
    rows = []
    for k, group in enumerate(groups):
        result, plan = evaluator.measure(only_groups=[group])
        rows.append(
            GroupSensitivity(
                group=group,
                weight_nodes=len(plan.weight_nodes),
                activations=len(plan.activation_tensors),
                rel_l2=result.rel_l2,
                cosine=result.cosine,
                top1=result.top1,
            )
        )
        say("sensitivity", k + 2, total)
    for rank, row in enumerate(
        sorted(rows, key=lambda r: (-(r.rel_l2), r.top1 if r.top1 is not None else 1.0)), 1
    ):
        row.rank = rank
    report = SensitivityReport(
        eval_images=len(images),
        method=method,
        include_attention=include_attention,
        all_int8=AutoStep([], full.rel_l2, full.top1, full.criteria_passed),
        groups=rows,
        float_precision=float_precision,
    )
    if target_agreement is not None:
        auto_exclude(report, evaluator, target_agreement, progress=say)
    return report


def auto_exclude(
    report: SensitivityReport,
    evaluator: _Evaluator,
    target: float,
    progress: Progress | None = None,
) -> None:
    """Keep the most sensitive groups in FP32 until top-1 agreement reaches ``target``."""
    say = progress or (lambda _p, _d, _t: None)
    report.target_agreement = target
    current = report.all_int8
    report.steps = [current]
    order = report.most_sensitive()
    excluded: list[str] = []
    say("auto-exclude", 0, len(order))
    def good(step: AutoStep) -> bool:
        return (step.top1 is None or step.top1 >= target) and step.criteria_passed is not False

    for k, group in enumerate(order):
        if good(current):
            break
        excluded.append(group)
        result, _ = evaluator.measure(exclude_groups=excluded)
        current = AutoStep(
            list(excluded), result.rel_l2, result.top1, getattr(result, "criteria_passed", None)
        )
        report.steps.append(current)
        say("auto-exclude", k + 1, len(order))
    say("auto-exclude", len(excluded), len(excluded))
    report.excluded = excluded
    report.met_target = current.top1 is not None and good(current)
