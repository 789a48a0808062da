"""What a comparison hands back: per-output reports, checks, worst inputs and the verdict.

Plain dataclasses with ``as_dict`` for JSON: :class:`Comparison` is the agreement table of two
sets of arrays (:func:`deploy_ran.compare.judge.compare_outputs`), :class:`VerifyResult` the same
table plus what the two runners were (:func:`deploy_ran.compare.run.compare`). Both read their
pass/fail from :class:`Verdict`, so "passed" means one thing everywhere.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from deploy_ran.compare.metrics import Agreement


@dataclass
class Check:
    """One criterion on one output."""

    output: str
    criterion: str
    value: float | None
    limit: float
    passed: bool
    detail: str = ""


@dataclass
class OutputReport:
    """One output's agreement, its kind and the kind's own measurements.

    ``top1_decided`` is top-1 agreement over the inputs whose reference top-1/top-2 margin exceeds
    ``tie_noise`` (``near_ties`` inputs are left out of it; ``agreement.top1`` counts them all).
    ``centred_cosine`` is the cosine after removing each map's mean (maps only).
    """

    name: str
    shape: list[int]
    agreement: Agreement
    finite: bool = True
    kind: str = "tensor"
    centred_cosine: float | None = None
    input_centred_cosine: float | None = None
    top1_decided: float | None = None
    near_ties: int | None = None
    tie_noise: float | None = None

    def metrics(self) -> dict[str, float | None]:
        """Every metric a criterion can name (``top1`` is the decided top-1 when measured)."""
        values = self.agreement.as_dict()
        values["centred_cosine"] = self.centred_cosine
        values["input_centred_cosine"] = self.input_centred_cosine
        if self.top1_decided is not None or self.near_ties:
            values["top1"] = self.top1_decided
        return values

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "shape": self.shape,
            "kind": self.kind,
            "finite": self.finite,
            **self.agreement.as_dict(),
            "centred_cosine": self.centred_cosine,
            "input_centred_cosine": self.input_centred_cosine,
            "top1_decided": self.top1_decided,
            "near_ties": self.near_ties,
            "tie_noise": self.tie_noise,
        }


@dataclass
class WorstInput:
    name: str
    index: int
    rel_l2: float  # of this sample, worst over the outputs
    reference_top1: int | None = None
    candidate_top1: int | None = None


class Verdict:
    """The pass/fail reading of a list of :class:`Check` (shared by every comparison result)."""

    checks: list[Check]

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    @property
    def failed_checks(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def worst_failure(self) -> str:
        """One line naming the worst failed check (for error messages)."""
        bad = self.failed_checks
        if not bad:
            return "all checks passed"
        c = bad[0]
        if c.value is None:
            return f"output {c.output!r}: {c.criterion} {c.detail}".strip()
        return f"output {c.output!r}: {c.criterion} {c.value:.3g} (limit {c.limit:g}) {c.detail}".strip()


@dataclass
class Comparison(Verdict):
    """Per-output agreement, the criteria's verdicts and the worst inputs."""

    criteria: dict[str, float]
    outputs: list[OutputReport]
    checks: list[Check]
    worst: list[WorstInput] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


    def output(self, name: str) -> OutputReport | None:
        return next((o for o in self.outputs if o.name == name), None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "criteria": self.criteria,
            "outputs": [o.as_dict() for o in self.outputs],
            "checks": [asdict(c) for c in self.checks],
            "worst_inputs": [asdict(w) for w in self.worst],
            "notes": self.notes,
        }


@dataclass
class VerifyResult(Verdict):
    """What a comparison of two runners compared, measured and decided."""

    reference: dict[str, Any]
    candidate: dict[str, Any]
    precision: str
    criteria: dict[str, float]
    inputs: dict[str, Any]
    outputs: list[OutputReport]
    checks: list[Check]
    worst: list[WorstInput]
    notes: list[str]
    seconds: float
    #: Further comparisons made on the same candidate file, by name (e.g. ``fp16_strict``: the
    #: FP16 file under float16-strict evaluation, see ``deploy_ran.compare.runner_checks``), as JSON-ready dicts.
    extra: dict[str, Any] = field(default_factory=dict)

    def max_rel_l2(self) -> float:
        return max((o.agreement.rel_l2 for o in self.outputs), default=0.0)

    def as_dict(self) -> dict[str, Any]:
        comparison = Comparison(self.criteria, self.outputs, self.checks, self.worst, self.notes)
        return {
            "passed": self.passed,
            "reference": self.reference,
            "candidate": self.candidate,
            "precision": self.precision,
            "inputs": self.inputs,
            **{k: v for k, v in comparison.as_dict().items() if k != "passed"},
            "seconds": self.seconds,
            **({"extra": self.extra} if self.extra else {}),
        }
