"""The local run loop: decode in loader workers, predict batch by batch, write as it goes.

:func:`run_inference` is the steps of :mod:`deploy_ran.infer` in order: refuse a bad request
(:mod:`~deploy_ran.infer.request`), take the output's lock, open the runner, plan the output
(:mod:`~deploy_ran.infer.resume`), then feed the loader's batches (:mod:`~deploy_ran.infer.dataset`)
through the runner (:mod:`~deploy_ran.infer.predict`) into the writer
(:mod:`~deploy_ran.infer.writer`). ``infer --ray`` (:mod:`deploy_ran.infer.ray`) shares every
step but the loop.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploy_ran.errors import DeployRanError
from deploy_ran.infer.dataset import (
    ImageDataset,
    PinnedBatch,
    StackCollate,
    default_workers,
    keep_list,
    prefetch,
)
from deploy_ran.infer.predict import predict_records
from deploy_ran.infer.producer import producer_identity
from deploy_ran.infer.request import (
    check_request,
    check_runner,
    output_lock,
    read_labels,
    request_inputs,
)
from deploy_ran.infer.result import InferResult
from deploy_ran.infer.resume import plan_output
from deploy_ran.infer.writer import write_batches
from deploy_ran.runners import BaseRunner, load_runner

Progress = Callable[[int, int], None]


def run_inference(
    target: str | Path | BaseRunner,
    images: str | Path | Sequence[str | Path],
    output: str | Path,
    *,
    batch_size: int = 32,
    topk: int = 5,
    labels: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    workers: int | None = None,
    device: str | None = None,  # None: the backend's own (the CPU; cuda for an engine)
    checkpoint: str | Path | None = None,
    precision: str | None = None,
    providers: str | None = None,
    threads: int | None = None,
    output_name: str | None = None,
    progress: Progress | None = None,
) -> InferResult:
    """Predict the top-k classes of every image in ``images`` into ``output``.

    ``target`` is a model name (+ ``checkpoint``), an ONNX file, an engine or a built runner
    (left open). ``progress(done, total)`` is called after each batch is written; an exception it
    raises stops the run like a crash would (what is written stays written, except under
    ``overwrite``, where the old output stays). Check ``InferResult.ok`` for NaN/inf outputs.
    """
    from deploy_ran.images import find_images

    output, fmt = check_request(
        output,
        batch_size=batch_size,
        topk=topk,
        resume=resume,
        overwrite=overwrite,
        inputs=request_inputs(target, images, labels, checkpoint),
    )
    if workers is not None and workers < 0:
        raise DeployRanError(
            f"workers must be ≥ 0, got {workers}.", hint="Use e.g. workers=2.", param="workers"
        )
    label_names = read_labels(labels) if labels is not None else None
    paths = find_images(images)
    workers = default_workers() if workers is None else workers

    with output_lock(output, resume=resume, overwrite=overwrite):
        runner_options = dict(
            device=device, checkpoint=checkpoint, precision=precision, providers=providers,
            threads=threads,
        )  # fmt: skip
        with _open_runner(target, runner_options) as runner:
            return _run(
                runner, paths, output, fmt, topk, labels, label_names, resume, overwrite,
                batch_size, workers, output_name, progress,
            )  # fmt: skip


@contextlib.contextmanager
def _open_runner(target: str | Path | BaseRunner, options: dict[str, Any]) -> Iterator[BaseRunner]:
    """The runner for ``target``: a given runner as it is (left open), else one loaded here and
    closed at the end."""
    if isinstance(target, BaseRunner):
        yield target
        return
    runner = load_runner(target, **options)
    try:
        yield runner
    finally:
        runner.close()


def _make_loader(
    runner: BaseRunner, paths: list[Path], pending: list[int], batch: int, workers: int, pinned: bool
) -> Any:
    """The ``DataLoader`` over the pending images. On a GPU (``pinned``): batches stacked in the
    workers and pinned (page-locked) by the DataLoader's pinning thread, so the runner's
    host→device copy is a direct DMA."""
    from torch.utils.data import DataLoader

    return DataLoader(
        ImageDataset(paths, pending, runner.preprocessing),
        batch_size=batch,
        shuffle=False,
        num_workers=workers,
        collate_fn=StackCollate(runner.input_spec[0].dtype) if pinned else keep_list,
        pin_memory=pinned,
        prefetch_factor=4 if workers else None,
    )


@dataclass
class _LoopClock:
    """Seconds the loop blocked on the loader / spent inside the runner / waited for the first
    batch, and the batches seen: what :class:`InferResult` reports (``bound``)."""

    waited: float = 0.0
    backend: float = 0.0
    first: float = 0.0
    batches: int = 0


def _predicted_batches(
    runner: BaseRunner,
    loader: Any,
    paths: list[Path],
    clock: _LoopClock,
    *,
    output_name: str,
    batch_size: int | None,
    topk: int,
    label_names: list[str] | None,
) -> Iterator[list[dict[str, Any]]]:
    """The records of each loader batch, timed into ``clock``.

    Batch N+1 is fetched (decoded, collated, pinned) while the runner works on N; closing stops
    the fetching thread when the loop ends early (an error, a progress callback).
    """
    with contextlib.closing(prefetch(iter(loader))) as decoded:
        while True:
            t_wait = time.perf_counter()
            items = next(decoded, None)
            clock.waited += time.perf_counter() - t_wait
            if items is None:
                return
            if clock.batches == 0:
                clock.first = clock.waited
            clock.batches += 1
            stacked = None
            if isinstance(items, PinnedBatch):
                stacked = None if items.stacked is None else items.stacked.numpy()
                items = items.items
            records, in_runner = predict_records(
                runner,
                [(paths[i], a, err) for i, a, err in items],
                output_name=output_name,
                batch_size=batch_size,
                topk=topk,
                label_names=label_names,
                stacked=stacked,
            )
            clock.backend += in_runner
            yield records


def _run(
    runner: BaseRunner,
    paths: list[Path],
    output: Path,
    fmt: str,
    topk: int,
    labels: str | Path | None,
    label_names: list[str] | None,
    resume: bool,
    overwrite: bool,
    batch_size: int,
    workers: int,
    output_name: str | None,
    progress: Progress | None,
) -> InferResult:
    """Check the runner, plan the output, then loader → runner → writer (holding the lock)."""
    name = check_runner(
        runner, output_name=output_name, topk=topk, label_names=label_names, labels=labels
    )
    with_labels = label_names is not None
    identity = producer_identity(runner, name, topk, labels, fmt)
    mode, pending = plan_output(
        output, fmt, identity, paths, topk=topk, with_labels=with_labels, resume=resume,
        overwrite=overwrite,
    )  # fmt: skip
    batch = runner.batch_for(batch_size)
    pinned = runner.is_cuda  # the runner's own answer ("remote" for a served model is no GPU)
    loader = _make_loader(runner, paths, pending, batch, workers, pinned) if pending else []
    clock = _LoopClock()
    batches = _predicted_batches(
        runner, loader, paths, clock, output_name=name, batch_size=batch,
        topk=topk, label_names=label_names,
    )  # fmt: skip
    started = time.perf_counter()
    counts = write_batches(
        output, fmt, mode, identity, batches, topk=topk, with_labels=with_labels,
        total=len(pending), progress=progress,
    )  # fmt: skip
    return InferResult.of_run(
        output,
        fmt,
        paths,
        pending,
        counts,
        time.perf_counter() - started,
        batch_size=batch,
        workers=workers,
        loader_wait_seconds=clock.waited,
        backend_seconds=clock.backend,
        runner=runner.describe(),
        producer=identity,
        first_batch_wait_seconds=clock.first,
        batches=clock.batches,
        pinned=pinned,
    )
