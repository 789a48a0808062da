"""Compare a Q/DQ (or partly quantized) ONNX model with FP32 on the calibration's held-out images.

Calibration sits below the runners, so it does not run models itself: the caller hands it a
:data:`RunModel` (``deploy_ran.compare.runner_checks.RunnerChecks.run_model`` runs an ``OrtRunner``), and the
numbers come from the one comparator core, :func:`deploy_ran.compare.judge.compare_outputs`, so they
mean what they mean everywhere else in the toolkit.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass

import numpy as np
import onnx

from deploy_ran.compare.criteria import criteria_for
from deploy_ran.compare.judge import compare_outputs
from deploy_ran.compare.results import Comparison
from deploy_ran.errors import DeployRanError

#: Runs a model (in-memory graph or file) on N samples in batches; returns every output by name.
RunModel = Callable[[onnx.ModelProto, np.ndarray, int], Mapping[str, np.ndarray]]


def require_runner(run_model: RunModel | None, what: str) -> RunModel:
    """``run_model``, or a clear error naming the parameter when a step needs it and it is absent."""
    if run_model is None:
        raise DeployRanError(
            f"{what} runs the model, but no run_model was given.",
            hint="Pass run_model=RunnerChecks().run_model (deploy_ran.compare.runner_checks), or "
            "checks=RunnerChecks() to deploy_ran.convert.convert.",
        )
    return run_model


@dataclass
class OutputAgreement:
    """INT8 (or FP16) outputs against FP32 for one graph output."""

    output: str
    rel_l2: float
    cosine: float
    max_abs: float
    top1: float | None
    finite: bool
    #: Whether the whole candidate (every output) meets the INT8 criteria ``verify`` applies.
    criteria_passed: bool | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def judge(
    reference: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray]
) -> Comparison:
    """The candidate against ``verify``'s INT8 criteria, per output kind (maps, log-probabilities)."""
    return compare_outputs(reference, candidate, criteria_for("int8"), show_worst=0)


def agreement(
    reference: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray]
) -> list[OutputAgreement]:
    """Per-output agreement (INT8 criteria); top-1 only for the class logits."""
    result = judge(reference, candidate)
    return [
        OutputAgreement(
            o.name, o.agreement.rel_l2, o.agreement.cosine, o.agreement.max_abs, o.agreement.top1,
            o.finite, result.passed,
        )
        for o in result.outputs
    ]
