"""Logits of one batch → one record per image, shared by the local loop and the Ray actors.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from deploy_ran.errors import DeployRanError
from deploy_ran.infer.records import NONFINITE_ERROR, path_fields, prediction_records, softmax
from deploy_ran.runners import BaseRunner


class InferenceError(DeployRanError):
    """The model loaded but failed while running a batch."""


def _run_batch(
    runner: BaseRunner, arrays: np.ndarray, batch_size: int | None, name: str
) -> np.ndarray:
    """Logits of one batch; a backend failure becomes an :class:`InferenceError`."""
    try:
        logits = runner.run_many(arrays, batch_size)[name]
    except DeployRanError:
        raise
    except Exception as exc:  # ONNX Runtime / TensorRT / torch failing on a loaded model
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "no details"
        raise InferenceError(
            f"{runner.name} loaded but failed while running a batch of {len(arrays)} image(s) "
            f"({type(exc).__name__}: {first}).",
            hint="The file is broken or does not fit its input spec; re-export it, and check it "
            "with `python cli.py verify`.",
        ) from None
    if logits.ndim != 2 or len(logits) != len(arrays):
        raise InferenceError(
            f"Output {name!r} has shape {list(logits.shape)}; infer needs [batch, classes] "
            f"logits for {len(arrays)} image(s).",
            hint="Choose the logits output with output_name.",
            param="output_name",
        )
    return logits


def predict_records(
    runner: BaseRunner,
    items: Sequence[tuple[str | Path, np.ndarray | None, str | None]],
    *,
    output_name: str,
    batch_size: int | None,
    topk: int,
    label_names: list[str] | None,
    stacked: np.ndarray | None = None,
) -> tuple[list[dict[str, Any]], float]:
    """One record per ``(path, array or None, error)`` item, in order; + seconds in the runner.

    ``stacked``: the good arrays already stacked (e.g. in pinned memory), used as they are.

    An unreadable image (``array`` None) keeps its error; an image whose logits are NaN or
    infinite gets :data:`NONFINITE_ERROR` (see :func:`is_model_error`). ``batch_size`` goes to
    ``run_many`` (``None`` for a static-batch artifact).
    """
    good = [n for n, (_, a, _) in enumerate(items) if a is not None]
    by_pos: dict[int, dict[str, Any]] = {
        n: {**path_fields(p), "error": err or "unreadable image"}
        for n, (p, a, err) in enumerate(items)
        if a is None
    }
    seconds = 0.0
    if good:
        arrays = stacked if stacked is not None else np.stack([items[n][1] for n in good])  # type: ignore[misc]
        started = time.perf_counter()
        logits = _run_batch(runner, arrays, batch_size, output_name)
        seconds = time.perf_counter() - started
        finite = np.isfinite(logits).all(axis=1)
        kept = [n for n, ok in zip(good, finite) if ok]
        if kept:
            recs = prediction_records([items[n][0] for n in kept], softmax(logits[finite]), topk, label_names)
            by_pos.update(zip(kept, recs))
        for n, ok in zip(good, finite):
            if not ok:
                by_pos[n] = {**path_fields(items[n][0]), "error": NONFINITE_ERROR}
    return [by_pos[n] for n in range(len(items))], seconds
