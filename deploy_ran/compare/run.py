"""Run two runners side by side on the same inputs and judge the candidate (Polygraphy's split).

``compare(reference_runner, candidate_runner, inputs, criteria)`` is the one way the toolkit
measures agreement between two artifacts: ``verify``, the export check (eager PyTorch vs the ONNX
file), the FP16 check and the INT8 evaluation after calibration all come through here, with the
batching policy of :meth:`BaseRunner.run_many` (a static-batch remainder is padded and the padding
dropped) and the thresholds of :mod:`deploy_ran.compare.criteria`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from deploy_ran.compare.criteria import criteria_for, precision_family
from deploy_ran.compare.judge import compare_outputs
from deploy_ran.compare.results import VerifyResult
from deploy_ran.errors import DeployRanError
from deploy_ran.runners import BaseRunner

Progress = Callable[[str, int, int], None]  # (side, done, total)


def run_side(
    runner: BaseRunner,
    data: np.ndarray,
    batch_size: int,
    progress: Progress | None = None,
    side: str = "candidate",
) -> dict[str, np.ndarray]:
    """All outputs of ``runner`` over ``data`` (the one batching policy: ``run_many``)."""
    total, done = len(data), 0

    def tick(n: int) -> None:
        nonlocal done
        done += n
        if progress:
            progress(side, done, total)

    return runner.run_many(data, runner.batch_for(batch_size), on_batch=tick)


def compare(
    reference: BaseRunner,
    candidate: BaseRunner,
    inputs: np.ndarray,
    criteria: Mapping[str, float | None] | None = None,
    *,
    sample_names: Sequence[str] | None = None,
    batch_size: int = 8,
    precision: str | None = None,
    input_source: str = "given arrays",
    notes: Sequence[str] = (),
    show_worst: int = 5,
    progress: Progress | None = None,
) -> VerifyResult:
    """Run both runners on ``inputs`` and judge the candidate.

    ``criteria`` overrides the defaults of the candidate's precision (``precision`` overrides the
    precision the candidate reports, e.g. ``fp32`` for a parity check). Runners stay open.
    """
    started = time.perf_counter()
    if batch_size < 1:
        raise DeployRanError(f"batch_size must be ≥ 1, got {batch_size}.")
    if len(inputs) == 0:
        raise DeployRanError("No inputs to compare on.", hint="Give at least one input sample.")
    outs = {
        side: run_side(runner, inputs, batch_size, progress, side)
        for side, runner in (("reference", reference), ("candidate", candidate))
    }
    family = precision_family(precision or candidate.precision)
    crit = criteria_for(family, criteria)
    result = compare_outputs(
        outs["reference"], outs["candidate"], crit, sample_names=sample_names, show_worst=show_worst
    )
    if reference.model and candidate.model and reference.model != candidate.model:
        result.notes.append(
            f"different models: reference {reference.model}, candidate {candidate.model}"
        )
    return VerifyResult(
        reference=reference.describe(),
        candidate=candidate.describe(),
        precision=family,
        criteria=crit,
        inputs={
            "source": input_source,
            "count": len(inputs),
            "batch_size": reference.batch_for(batch_size),
        },
        outputs=result.outputs,
        checks=result.checks,
        worst=result.worst,
        notes=[*notes, *result.notes],
        seconds=time.perf_counter() - started,
    )
