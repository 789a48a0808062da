"""``evaluate``: accuracy of several targets on the same labelled images, and is a loss real?

Every target (model name + checkpoint, ``.onnx`` of any precision, engine, ``triton://``) is
opened through :func:`deploy_ran.runners.load_runner`. The data are read once, batch by batch:
each decoded batch goes through every target before the next one is decoded, so an unreadable
image is left out of every target alike, no image is decoded twice, and memory holds one batch
plus a few bytes of predictions per image and target (top-5 indices, top-1 probability).

Each target gets :class:`~deploy_ran.evaluate.metrics.AccuracyMetrics`; every target but the
reference (the first, or ``reference``) is compared with it image by image by
:func:`deploy_ran.compare.paired.compare_paired` (exact McNemar p, Newcombe 95 % interval on the
top-1 difference, predictions changed, a verdict in words).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deploy_ran.compare.paired import PairedComparison, compare_paired
from deploy_ran.errors import DeployRanError
from deploy_ran.evaluate.data import DataError, LabelledData, iter_batches, read_labelled
from deploy_ran.evaluate.metrics import (
    TOPK,
    AccuracyMetrics,
    Predictions,
    accuracy_metrics,
    top_predictions,
)
from deploy_ran.runners import BaseRunner, backend_for, honoured_options, load_runner

#: progress(done, total): images read so far (kept or skipped) out of all.
Progress = Callable[[int, int], None]


@dataclass
class TargetAccuracy:
    """One target's identity and its accuracy."""

    target: str
    backend: str
    precision: str
    file_bytes: int | None
    metrics: AccuracyMetrics
    seconds: float
    predictions: Predictions | None = field(default=None, repr=False)  # kept for the caller

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "backend": self.backend,
            "precision": self.precision,
            "file_bytes": self.file_bytes,
            "seconds": self.seconds,
            **self.metrics.as_dict(),
        }


@dataclass
class EvaluateResult:
    """Every target's accuracy, and each one against the reference."""

    data: dict[str, Any]
    class_names: list[str] | None
    num_classes: int
    reference: str
    targets: list[TargetAccuracy]
    comparisons: dict[str, PairedComparison]  # target → its comparison with the reference
    skipped: list[dict[str, str]]
    seconds: float
    labels: np.ndarray | None = field(default=None, repr=False)  # of the images kept

    def target(self, name: str) -> TargetAccuracy:
        return next(t for t in self.targets if t.target == name)

    def as_dict(self) -> dict[str, Any]:
        return {
            "data": {**self.data, "evaluated": self.targets[0].metrics.n if self.targets else 0},
            "num_classes": self.num_classes,
            "class_names": self.class_names,
            "reference": self.reference,
            "targets": [t.as_dict() for t in self.targets],
            "comparisons": [
                {"target": name, "reference": self.reference, **c.as_dict()}
                for name, c in self.comparisons.items()
            ],
            "skipped": self.skipped,
            "seconds": self.seconds,
        }


def evaluate(
    targets: Sequence[str | Path | BaseRunner],
    data: str | Path | LabelledData,
    *,
    labels: str | Path | None = None,
    reference: str | Path | None = None,
    batch_size: int = 32,
    max_images: int | None = None,
    device: str | None = None,  # None: each backend's own (the CPU; cuda for an engine)
    checkpoint: str | Path | None = None,
    precision: str | None = None,
    image_size: int | None = None,
    providers: str | None = None,
    threads: int | None = None,
    workers: int | None = None,
    output_name: str | None = None,
    progress: Progress | None = None,
) -> EvaluateResult:
    """Top-1/top-5/per-class/confidence/ECE per target and paired comparisons with the reference.

    ``data``: a folder ``VAL/<class>/*``, a ``path,label`` ``.csv``/``.tsv``, an ``.npz`` (``x``,
    ``y``; ``file.npz:test`` for ``x_test``/``y_test``), or a :class:`LabelledData`.
    ``reference``: one of ``targets`` (default: the first), or another target evaluated as well.
    Runners passed in are used as they are and left open.
    """
    started = time.perf_counter()
    if not targets:
        raise DeployRanError("evaluate needs at least one target.", hint="Name a model or a file.")
    if batch_size < 1:
        raise DeployRanError(
            f"batch_size must be ≥ 1, got {batch_size}.", hint="E.g. 32.", param="batch_size"
        )
    if max_images is not None and max_images < 1:
        raise DeployRanError(
            f"max_images must be ≥ 1, got {max_images}.", hint="E.g. 1000.", param="max_images"
        )
    names = [t.name if isinstance(t, BaseRunner) else str(t) for t in targets]
    if len(set(names)) != len(names):
        raise DeployRanError(
            f"A target is named twice: {', '.join(names)}.", hint="Name each target once."
        )
    order = list(targets)
    ref_name = names[0]
    if reference is not None:
        ref_name = str(reference)
        if ref_name not in names:
            order.insert(0, reference)
            names.insert(0, ref_name)
    dataset = data if isinstance(data, LabelledData) else read_labelled(data, labels)
    dataset = dataset.limit(max_images)
    runners = _open(order, device, checkpoint, precision, image_size, providers, threads)
    try:
        named = dict(zip(names, runners))
        files = {n: _file_bytes(t) for n, t in zip(names, order)}
        return evaluate_runners(
            named, dataset, reference=ref_name, batch_size=batch_size, workers=workers,
            output_name=output_name, progress=progress, file_bytes=files, started=started,
        )  # fmt: skip
    finally:
        for r, t in zip(runners, order):
            if r is not t:
                r.close()


def evaluate_runners(
    runners: dict[str, BaseRunner],
    data: LabelledData,
    *,
    reference: str | None = None,
    batch_size: int = 32,
    workers: int | None = None,
    output_name: str | None = None,
    progress: Progress | None = None,
    file_bytes: dict[str, int | None] | None = None,
    started: float | None = None,
) -> EvaluateResult:
    """:func:`evaluate` on runners that are already open, named by the caller (``bench`` names
    its rows by their labels); ``reference`` is one of the names (default: the first).
    The runners are left open."""
    started = time.perf_counter() if started is None else started
    names, order = list(runners), list(runners.values())
    ref_name = reference or names[0]
    outputs, num_classes = _check_targets(order, names, data, output_name)
    shape = tuple(order[0].input_spec[0].shape[1:])
    prep = next((r.preprocessing for r in order if r.preprocessing), None)
    _check_preprocessing(order, names, prep)
    preds, y, skipped, seconds = _run(
        order, outputs, data, prep, shape, batch_size, workers, progress
    )
    if len(y) == 0:
        raise DataError(
            f"None of the {len(data)} image(s) in {data.source} could be read.",
            hint="First error: " + (skipped[0]["error"] if skipped else "none"),
        )
    results = []
    for name, runner, p, s in zip(names, order, preds, seconds):
        metrics = accuracy_metrics(p, y, num_classes, data.class_names)
        size = (file_bytes or {}).get(name)
        results.append(TargetAccuracy(name, runner.backend, runner.precision, size, metrics, s, p))
    ref_index = names.index(ref_name)
    comparisons = {
        name: compare_paired(preds[ref_index].top1, preds[i].top1, y)
        for i, name in enumerate(names)
        if i != ref_index
    }
    return EvaluateResult(
        data.as_dict(), data.class_names, num_classes, ref_name, results, comparisons,
        skipped, time.perf_counter() - started, y,
    )  # fmt: skip


def _open(order, device, checkpoint, precision, image_size, providers, threads) -> list[BaseRunner]:
    """Runners for every target: files first, so a model name takes its size from a file."""
    built: dict[int, BaseRunner] = {}
    kinds = ["runner" if isinstance(t, BaseRunner) else backend_for(t) for t in order]
    try:
        for i, (t, kind) in enumerate(zip(order, kinds)):
            if kind == "runner":
                built[i] = t
            elif kind != "torch":
                shared = honoured_options(t, providers=providers, threads=threads)
                built[i] = load_runner(t, device=device, **shared)
        size = image_size
        if size is None and built:
            spec = next(iter(built.values())).input_spec
            size = spec[0].shape[-1] if spec else None
        for i, (t, kind) in enumerate(zip(order, kinds)):
            if kind == "torch":
                built[i] = load_runner(
                    t, device=device, precision=precision, checkpoint=checkpoint,
                    image_size=size, threads=threads,
                )  # fmt: skip
    except BaseException:
        for i, r in built.items():
            if kinds[i] != "runner":
                r.close()
        raise
    if checkpoint is not None and "torch" not in kinds:
        for i in built:
            if kinds[i] != "runner":
                built[i].close()
        raise DeployRanError(
            "checkpoint applies to model-name targets; every target here is a file.",
            hint="Drop --checkpoint (an exported file already holds its weights).",
            param="checkpoint",
        )
    return [built[i] for i in range(len(order))]


def _check_targets(
    runners: list[BaseRunner], names: list[str], data: LabelledData, output_name: str | None
) -> tuple[list[str], int]:
    """The logits output of each runner and the number of classes they share."""
    outputs, classes = [], []
    for r, name in zip(runners, names):
        if len(r.input_spec) != 1:
            raise DeployRanError(
                f"{name} has {len(r.input_spec)} inputs; evaluate runs single-input image models."
            )
        out = output_name or ("logits" if "logits" in r.output_names else r.output_names[0])
        if out not in r.output_names:
            raise DeployRanError(
                f"{name} has no output {out!r}.",
                hint=f"Outputs: {', '.join(r.output_names)}.",
                param="output_name",
            )
        outputs.append(out)
        classes.append(r.num_classes)
    shapes = {tuple(r.input_spec[0].shape[1:]) for r in runners}
    if len(shapes) > 1:
        shown = ", ".join(f"{n}: {r.input_spec[0]}" for n, r in zip(names, runners))
        raise DeployRanError(
            f"The targets take different inputs ({shown}).",
            hint="Evaluate artifacts built at the same image size together (--image-size for a "
            "model name).",
        )
    known = {c for c in classes if c is not None}
    if len(known) > 1:
        raise DeployRanError(
            "The targets have different numbers of classes: "
            + ", ".join(f"{n}: {c}" for n, c in zip(names, classes))
            + ".",
            hint="Evaluate models of the same task together.",
        )
    num = known.pop() if known else None
    top = int(data.labels.max()) + 1 if len(data) else 0
    if data.class_names is not None and num is not None and len(data.class_names) != num:
        raise DataError(
            f"The data name {len(data.class_names)} classes but the model has {num}.",
            hint="The class folders (or --labels) must list the model's classes, one per class "
            "index; with --labels every class name is matched to its index.",
            param="labels" if data.kind != "folder" else "data",
        )
    if num is not None and top > num:
        raise DataError(
            f"{data.source} has class index {top - 1}, but the model has {num} classes.",
            hint="Labels count from 0 in the model's class order.",
        )
    return outputs, num if num is not None else max(top, len(data.class_names or ()))


def _check_preprocessing(runners: list[BaseRunner], names: list[str], prep: dict | None) -> None:
    """All targets must read an image the same way, or one decoded batch cannot serve them all."""
    for r, name in zip(runners, names):
        if r.preprocessing and prep and dict(r.preprocessing) != dict(prep):
            raise DeployRanError(
                f"{name} preprocesses images differently from {names[0]} "
                f"({r.preprocessing} vs {prep}).",
                hint="Evaluate them separately, or re-export both from the same model spec.",
            )


def _run(runners, outputs, data, prep, shape, batch_size, workers, progress):
    """Stream the data through every runner; keep top-k and confidence per image and target."""
    topk: list[list[np.ndarray]] = [[] for _ in runners]
    conf: list[list[np.ndarray]] = [[] for _ in runners]
    seconds = [0.0] * len(runners)
    labels: list[np.ndarray] = []
    skipped: list[dict[str, str]] = []
    done, total = 0, len(data)
    workers = workers or min(4, os.cpu_count() or 1)
    for batch in iter_batches(data, prep, shape, batch_size, workers=workers):
        skipped += batch.skipped
        if len(batch.x):
            labels.append(batch.y)
            for i, (runner, out) in enumerate(zip(runners, outputs)):
                t0 = time.perf_counter()
                logits = runner.run_many(batch.x, runner.batch_for(len(batch.x)))[out]
                seconds[i] += time.perf_counter() - t0
                p = top_predictions(logits, TOPK)
                topk[i].append(p.topk)
                conf[i].append(p.confidence)
        done += len(batch.x) + len(batch.skipped)
        if progress is not None:
            progress(done, total)
    preds = [
        Predictions(
            np.concatenate(t) if t else np.empty((0, TOPK), np.int32),
            np.concatenate(c) if c else np.empty((0,), np.float32),
        )
        for t, c in zip(topk, conf)
    ]
    y = np.concatenate(labels) if labels else np.empty((0,), np.int64)
    return preds, y, skipped, seconds


def _file_bytes(target: Any) -> int | None:
    """Size of a file target (with a TensorRT sidecar it is the plan alone); None otherwise."""
    if isinstance(target, BaseRunner):
        target = target.name
    path = Path(str(target))
    try:
        return path.stat().st_size if path.is_file() else None
    except OSError:
        return None
