"""What a run did (:class:`InferResult`) and what limited it (:func:`bound_by`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class InferResult:
    """What ``run_inference`` (or ``run_inference_ray``) did."""

    output: str
    format: str
    total: int  # images found
    already_done: int  # skipped because the output held them (resume)
    processed: int  # images handled in this run (predictions + errors)
    failed: int  # of those, unreadable images
    seconds: float  # the loop: first batch requested → last batch written
    images_per_s: float
    batch_size: int
    workers: int
    loader_wait_seconds: float = 0.0  # the loop blocked, waiting for decoded images
    backend_seconds: float = 0.0  # inside the runner
    runner: dict[str, Any] = field(default_factory=dict)
    model_errors: int = 0  # images whose logits were NaN/inf (recorded as errors)
    producer: dict[str, Any] = field(default_factory=dict)
    first_batch_wait_seconds: float = 0.0  # of loader_wait: the first batch (workers starting)
    batches: int = 0
    pinned: bool = False  # batches stacked in page-locked host memory (GPU runners)

    @property
    def backend_busy(self) -> float:
        """Fraction of the loop spent in the runner: 1.0 = the loader never held it up."""
        return self.backend_seconds / self.seconds if self.seconds > 0 else 0.0

    @property
    def ok(self) -> bool:
        """False when the model gave invalid (NaN/inf) outputs: the CLI then exits non-zero.

        Unreadable images do not count: they are the input's fault and recorded per image.
        """
        return self.model_errors == 0

    @classmethod
    def of_run(
        cls,
        output: Path,
        fmt: str,
        paths: Sequence[Any],
        pending: Sequence[Any],
        counts: tuple[int, int, int],
        seconds: float,
        **extra: Any,
    ) -> InferResult:
        """The result of one write loop (local or Ray): ``counts`` = (processed, unreadable,
        model errors) from :func:`write_batches`; ``extra`` = the remaining fields."""
        processed, failed, model_errors = counts
        return cls(
            output=str(output),
            format=fmt,
            total=len(paths),
            already_done=len(paths) - len(pending),
            processed=processed,
            failed=failed,
            seconds=seconds,
            images_per_s=processed / seconds if seconds > 0 else 0.0,
            model_errors=model_errors,
            **extra,
        )

    @property
    def bound(self) -> str:
        """``loader``, ``backend`` or ``unknown``: what limited this run (see :func:`bound_by`)."""
        return bound_by(
            self.seconds, self.loader_wait_seconds, self.first_batch_wait_seconds, self.batches
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.__dict__,
            "backend_busy": self.backend_busy,
            "bound": self.bound,
            "ok": self.ok,
        }


LOADER_BOUND_WAIT = 0.10  # the loop idles this fraction of its steady state waiting for images


def bound_by(seconds: float, loader_wait: float, first_wait: float, batches: int) -> str:
    """``loader`` when the loop, after its first batch, spent more than
    :data:`LOADER_BOUND_WAIT` of its time waiting for decoded images (the backend idled: more
    loader workers, or reduced-size decoding, would speed the run up); ``backend`` when it
    waited less (the runner is the limit: a faster backend or a larger batch would); ``unknown``
    with fewer than two batches, where the first batch's wait (worker processes starting, every
    pipeline filling) is all there is to see."""
    if batches < 2:
        return "unknown"
    steady = seconds - first_wait
    if steady <= 0:
        return "unknown"
    return "loader" if (loader_wait - first_wait) / steady > LOADER_BOUND_WAIT else "backend"
