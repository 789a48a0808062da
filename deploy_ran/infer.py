"""Run a model over many images: batched, resumable, never stopped by one bad file.

``run_inference(target, images, output)`` decodes and preprocesses images in worker processes
(``torch.utils.data.DataLoader``; PIL + numpy, no torchvision) while the runner works on the
previous batch, and appends one record per image to ``output`` (JSON Lines or CSV), flushed after
every batch: a killed run loses at most the batch in flight. ``resume=True`` reads what the output
already holds (dropping a half-written last line), skips those images and appends the rest, so the
finished file is the one an uninterrupted run writes. An image that cannot be read becomes a record
with its error.

Records (JSON Lines; CSV has the same fields flattened, one column per top-k rank)::

    {"path": "imgs/cat.jpg", "class": 281, "label": "tabby", "prob": 0.912345,
     "topk": [{"class": 281, "label": "tabby", "prob": 0.912345}, ...]}
    {"path": "imgs/broken.jpg", "error": "imgs/broken.jpg is not a readable image (...)"}

``prob`` is the softmax of the logits, rounded to 6 decimals; ``label`` only with a labels file.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deploy_ran.errors import DeployRanError
from deploy_ran.fileio import check_writable
from deploy_ran.runners import BaseRunner, load_runner

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}
PROB_DECIMALS = 6


# ------------------------------------------------------------------------------ data loading


class ImageDataset:
    """Decode + preprocess by index; never raises for a bad image (returns its error instead).

    A plain map-style dataset for ``torch.utils.data.DataLoader``; module-level so that worker
    processes can pickle it under any start method.
    """

    def __init__(self, paths: Sequence[Path], indices: Sequence[int], preprocessing: dict) -> None:
        self.paths = list(paths)
        self.indices = list(indices)
        self.preprocessing = dict(preprocessing)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[int, np.ndarray | None, str | None]:
        index = self.indices[i]
        return (index, *decode_image(self.paths[index], self.preprocessing))


def _keep_list(items: list) -> list:
    """DataLoader collate that keeps the items as they are (numpy, errors and all)."""
    return items


class PinnedBatch:
    """A batch for a GPU runner: the items (index, array or None, error) plus the good arrays
    stacked into one tensor in the runner's input dtype. ``DataLoader(pin_memory=True)`` calls
    :meth:`pin_memory` in its pinning thread, so the stack lands in page-locked host memory and
    the runner's host→device copy is a direct DMA (the runners copy from the numpy view of it
    without another staging copy)."""

    def __init__(self, items: list, stacked: Any) -> None:
        self.items = items
        self.stacked = stacked  # torch.Tensor [good, C, H, W] or None (no good image)

    def pin_memory(self) -> PinnedBatch:
        if self.stacked is not None:
            self.stacked = self.stacked.pin_memory()
        return self


class StackCollate:
    """Collate for GPU runners: stack the decoded arrays in the workers, already cast to the
    runner's input dtype (FP16 halves the bytes to pin and copy); module-level and picklable for
    worker processes."""

    def __init__(self, dtype: str) -> None:
        self.dtype = dtype

    def __call__(self, items: list) -> PinnedBatch:
        import torch

        good = [a for _, a, _ in items if a is not None]
        stacked = torch.from_numpy(np.stack(good).astype(self.dtype, copy=False)) if good else None
        return PinnedBatch(items, stacked)


def prefetch(batches: Any, depth: int = 1) -> Any:
    """Yield from ``batches`` while a thread already fetches the next ``depth`` batches, so that
    decoding (with no loader workers), collating and pinning batch N+1 overlap the runner's work
    on batch N (PIL, ONNX Runtime and PyTorch release the GIL while they work). An exception in
    the fetching thread is raised here, at the batch where it happened."""
    import queue
    import threading

    q: queue.Queue = queue.Queue(maxsize=max(1, depth))
    done = object()
    stop = threading.Event()

    def fill() -> None:
        try:
            for item in batches:
                while not stop.is_set():
                    try:
                        q.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put((done, None))
        except BaseException as exc:  # handed to the consumer
            q.put((done, exc))

    thread = threading.Thread(target=fill, name="infer-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item, exc = q.get()
            if exc is not None:
                raise exc
            if item is done:
                return
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def default_workers() -> int:
    """Loader processes: as many as cores, at most 4 (decoding is cheap next to the model)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return max(1, min(4, cores))


# ---------------------------------------------------------------------------- output files


def read_labels(path: str | Path) -> list[str]:
    """One class name per line (blank trailing lines ignored)."""
    path = Path(path)
    if not path.is_file():
        raise DeployRanError(
            f"Labels file {path} does not exist.", hint="Check the labels path.", param="labels"
        )
    lines = path.read_text(encoding="utf-8").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise DeployRanError(f"Labels file {path} is empty.", hint="One class name per line.")
    return [ln.strip() for ln in lines]


def output_format(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DeployRanError(
            f"Cannot tell the output format of {path}.",
            hint="Name the output *.jsonl (JSON Lines) or *.csv.",
        )
    return fmt


def csv_header(topk: int, with_labels: bool) -> list[str]:
    cols = ["path", "error"]
    for k in range(1, topk + 1):
        cols += [f"class_{k}", f"prob_{k}"] + ([f"label_{k}"] if with_labels else [])
    return cols


def _truncate_partial_line(path: Path) -> int:
    """Drop a half-written last line (a run killed mid-write); returns the bytes removed."""
    size = path.stat().st_size
    if size == 0:
        return 0
    with open(path, "rb+") as fh:
        fh.seek(-1, os.SEEK_END)
        if fh.read(1) == b"\n":
            return 0
        fh.seek(0)
        data = fh.read()
        keep = data.rfind(b"\n") + 1
        fh.truncate(keep)
        return size - keep


def read_done(path: Path, fmt: str, topk: int, with_labels: bool) -> set[str]:
    """Paths an existing output already holds, after checking it was written the same way."""
    removed = _truncate_partial_line(path)
    del removed
    text = path.read_text(encoding="utf-8")
    done: set[str] = set()
    if fmt == "csv":
        rows = list(csv.reader(io.StringIO(text)))
        if not rows:
            return done
        want = csv_header(topk, with_labels)
        if rows[0] != want:
            raise DeployRanError(
                f"{path} was written with other settings (columns {rows[0][:6]}…).",
                hint="Resume with the same topk and labels, or write to a new output.",
                param="output",
            )
        return {r[0] for r in rows[1:] if r}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            raise DeployRanError(
                f"{path} line {n} is not JSON; it is not an output of `infer`.",
                hint="Write to a new output, or fix the file.",
                param="output",
            ) from None
        if not isinstance(rec, dict) or "path" not in rec:
            raise DeployRanError(
                f"{path} line {n} has no 'path'; it is not an output of `infer`.",
                hint="Write to a new output.",
                param="output",
            )
        if "topk" in rec and (len(rec["topk"]) != topk or ("label" in rec) != with_labels):
            raise DeployRanError(
                f"{path} was written with topk={len(rec['topk'])}"
                f"{' and labels' if 'label' in rec else ''}.",
                hint="Resume with the same topk and labels, or write to a new output.",
                param="output",
            )
        done.add(rec["path"])
    return done


def _records(
    paths: list[Path],
    indices: list[int],
    probs: np.ndarray,
    topk: int,
    labels: list[str] | None,
) -> list[dict[str, Any]]:
    top = np.argsort(-probs, axis=1, kind="stable")[:, :topk]
    out = []
    for row, (index, classes) in enumerate(zip(indices, top)):
        ranks = []
        for c in classes:
            entry: dict[str, Any] = {"class": int(c)}
            if labels is not None:
                entry["label"] = labels[c]
            entry["prob"] = round(float(probs[row, c]), PROB_DECIMALS)
            ranks.append(entry)
        rec: dict[str, Any] = {"path": str(paths[index]), **ranks[0], "topk": ranks}
        out.append(rec)
    return out


def format_records(records: list[dict[str, Any]], fmt: str, topk: int, with_labels: bool) -> str:
    """Records as the text appended to the output: JSON Lines, or CSV rows (one column group
    per top-k rank; empty cells for an error record)."""
    if fmt == "jsonl":
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    for r in records:
        row: list[Any] = [r["path"], r.get("error", "")]
        ranks = r.get("topk", [])
        for k in range(topk):
            if k < len(ranks):
                e = ranks[k]
                row += [e["class"], e["prob"]] + ([e.get("label", "")] if with_labels else [])
            else:
                row += ["", ""] + ([""] if with_labels else [])
        writer.writerow(row)
    return buf.getvalue()


def softmax(logits: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float64)
    x = x - x.max(axis=1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=1, keepdims=True)


# ----------------------------------------------------------- shared with deploy_ran.infer_ray
# The checks, decoding and record building of one batch, used by the local loop below and by the
# Ray actors (deploy_ran.infer_ray), so both write the same records for the same images.


def check_request(
    output: str | Path, *, batch_size: int, topk: int, resume: bool, overwrite: bool
) -> tuple[Path, str]:
    """Refuse bad settings before any work; returns the output path and its format."""
    if batch_size < 1:
        raise DeployRanError(
            f"batch_size must be ≥ 1, got {batch_size}.",
            hint="Use e.g. batch_size=32.",
            param="batch_size",
        )
    if topk < 1:
        raise DeployRanError(
            f"topk must be ≥ 1, got {topk}.", hint="Use e.g. topk=5.", param="topk"
        )
    if resume and overwrite:
        raise DeployRanError(
            "resume and overwrite exclude each other.", hint="Pick one.", param="overwrite"
        )
    output = Path(output)
    fmt = output_format(output)
    check_writable(output)
    if output.exists() and output.stat().st_size > 0 and not (resume or overwrite):
        raise DeployRanError(
            f"{output} already exists.",
            hint="Set resume=True to continue it, overwrite=True to start again, or choose "
            "another output.",
            param="output",
        )
    return output, fmt


def check_runner(
    runner: BaseRunner,
    *,
    output_name: str | None,
    topk: int,
    label_names: list[str] | None,
    labels: str | Path | None,
) -> str:
    """Refuse a runner ``infer`` cannot use; returns the name of the output holding the logits."""
    name = output_name or ("logits" if "logits" in runner.output_names else runner.output_names[0])
    if name not in runner.output_names:
        raise DeployRanError(
            f"{runner.name} has no output {name!r}.",
            hint=f"Outputs: {', '.join(runner.output_names)}.",
        )
    if len(runner.input_spec) != 1:
        raise DeployRanError("infer runs single-input image models.", hint="Check the model.")
    if runner.preprocessing is None:
        raise DeployRanError(
            f"{runner.name} does not say how to preprocess images.",
            hint="Use an ONNX file exported by deploy-ran (it carries the preprocessing) or a "
            "model name.",
        )
    classes = runner.num_classes
    if label_names is not None and classes is not None and len(label_names) != classes:
        raise DeployRanError(
            f"{labels} has {len(label_names)} labels but the model has {classes} classes.",
            hint="One label per class, in class-index order.",
        )
    if classes is not None and topk > classes:
        raise DeployRanError(
            f"topk={topk} is more than the model's {classes} classes.",
            hint=f"Use topk={classes} or less.",
            param="topk",
        )
    return name


def decode_image(path: str | Path, preprocessing: dict) -> tuple[np.ndarray | None, str | None]:
    """``(array, None)``, or ``(None, error)`` for an image that cannot be used; never raises."""
    from deploy_ran.images import ImageError, load_and_preprocess

    try:
        return load_and_preprocess(path, preprocessing), None
    except ImageError as exc:
        return None, _one_line(exc.message)
    except Exception as exc:  # a decoder bug must not stop a million-image run either
        return None, _one_line(f"{type(exc).__name__}: {exc}")


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
    """One record per ``(path, array or None, error or None)`` item, in order; + seconds in the
    runner. ``batch_size`` goes to ``run_many`` (``None`` for a static-batch artifact).
    ``stacked``: the good arrays already stacked (e.g. in pinned memory), used as they are."""
    good = [(n, a) for n, (_, a, _) in enumerate(items) if a is not None]
    by_pos: dict[int, dict[str, Any]] = {
        n: {"path": str(p), "error": err} for n, (p, a, err) in enumerate(items) if a is None
    }
    seconds = 0.0
    if good:
        arrays = stacked if stacked is not None else np.stack([a for _, a in good])
        t_run = time.perf_counter()
        logits = runner.run_many(arrays, batch_size)[output_name]
        seconds = time.perf_counter() - t_run
        if logits.ndim != 2:
            raise DeployRanError(
                f"Output {output_name!r} has shape {list(logits.shape)}; infer needs "
                "[batch, classes] logits.",
                hint="Choose the logits output with --output-name.",
            )
        paths = [items[n][0] for n, _ in good]
        recs = _records(paths, list(range(len(good))), softmax(logits), topk, label_names)
        by_pos.update({n: r for (n, _), r in zip(good, recs)})
    return [by_pos[n] for n in range(len(items))], seconds


# ---------------------------------------------------------------------------------- infer


@dataclass
class InferResult:
    """What ``run_inference`` did."""

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
    first_batch_wait_seconds: float = 0.0  # of loader_wait: the first batch (workers starting)
    batches: int = 0
    pinned: bool = False  # batches stacked in page-locked host memory (GPU runners)

    @property
    def backend_busy(self) -> float:
        """Fraction of the loop spent in the runner: 1.0 = the loader never held it up."""
        return self.backend_seconds / self.seconds if self.seconds > 0 else 0.0

    @property
    def bound(self) -> str:
        """``loader``, ``backend`` or ``unknown``: what limited this run (see :func:`bound_by`)."""
        return bound_by(
            self.seconds, self.loader_wait_seconds, self.first_batch_wait_seconds, self.batches
        )

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "backend_busy": self.backend_busy, "bound": self.bound}


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
    device: str = "cpu",
    checkpoint: str | Path | None = None,
    precision: str | None = None,
    providers: str | None = None,
    threads: int | None = None,
    output_name: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> InferResult:
    """Predict the top-k classes of every image in ``images`` into ``output``.

    ``target`` is a model name (+ ``checkpoint``), an ONNX file, an engine or a built runner
    (left open). ``progress(done, total)`` is called after each batch is written; an exception it
    raises stops the run like a crash would (what is written stays written).
    """
    from deploy_ran.images import find_images

    output, fmt = check_request(
        output, batch_size=batch_size, topk=topk, resume=resume, overwrite=overwrite
    )
    label_names = read_labels(labels) if labels is not None else None
    paths = find_images(images)
    workers = default_workers() if workers is None else workers
    if workers < 0:
        raise DeployRanError(
            f"workers must be ≥ 0, got {workers}.", hint="Use e.g. workers=2.", param="workers"
        )

    owned = not isinstance(target, BaseRunner)
    runner = (
        load_runner(
            target,
            device=device,
            checkpoint=checkpoint,
            precision=precision,
            providers=providers,
            threads=threads,
        )
        if owned
        else target
    )
    try:
        name = check_runner(
            runner, output_name=output_name, topk=topk, label_names=label_names, labels=labels
        )
        with_labels = label_names is not None

        done: set[str] = set()
        if output.exists() and resume:
            done = read_done(output, fmt, topk, with_labels)
        pending = [i for i, p in enumerate(paths) if str(p) not in done]
        fixed = runner.fixed_batch
        batch = fixed or batch_size

        from torch.utils.data import DataLoader

        # On a GPU: batches stacked in the workers and pinned (page-locked) by the DataLoader's
        # pinning thread, so the runner's host→device copy is a direct DMA.
        pinned = str(runner.device).startswith("cuda")
        dataset = ImageDataset(paths, pending, runner.preprocessing)
        loader = DataLoader(
            dataset,
            batch_size=batch,
            shuffle=False,
            num_workers=workers,
            collate_fn=StackCollate(runner.input_spec[0].dtype) if pinned else _keep_list,
            pin_memory=pinned,
            prefetch_factor=4 if workers else None,
        )
        mode = "a" if (resume and output.exists()) else "w"
        processed = failed = 0
        waited = backend = first_wait = 0.0  # seconds blocked on the loader / in the runner
        n_batches = 0
        started = time.perf_counter()
        # batch N+1 is fetched (decoded, collated, pinned) while the runner works on N; closing
        # stops the fetching thread when the loop ends early (an error, a progress callback)
        with (
            open(output, mode, encoding="utf-8", newline="") as fh,
            contextlib.closing(prefetch(iter(loader if pending else []))) as batches,
        ):
            if fmt == "csv" and (mode == "w" or output.stat().st_size == 0):
                csv.writer(fh, lineterminator="\n").writerow(csv_header(topk, with_labels))
                fh.flush()
            while True:
                t_wait = time.perf_counter()
                items = next(batches, None)
                waited += time.perf_counter() - t_wait
                if items is None:
                    break
                if n_batches == 0:
                    first_wait = waited
                n_batches += 1
                stacked = None
                if isinstance(items, PinnedBatch):
                    stacked = None if items.stacked is None else items.stacked.numpy()
                    items = items.items
                records, seconds_in_runner = predict_records(
                    runner,
                    [(paths[i], a, err) for i, a, err in items],
                    output_name=name,
                    batch_size=None if fixed else batch,
                    topk=topk,
                    label_names=label_names,
                    stacked=stacked,
                )
                backend += seconds_in_runner
                fh.write(format_records(records, fmt, topk, with_labels))
                fh.flush()
                processed += len(items)
                failed += sum(1 for _, a, _ in items if a is None)
                if progress is not None:
                    progress(processed, len(pending))
        seconds = time.perf_counter() - started
        return InferResult(
            output=str(output),
            format=fmt,
            total=len(paths),
            already_done=len(paths) - len(pending),
            processed=processed,
            failed=failed,
            seconds=seconds,
            images_per_s=processed / seconds if seconds > 0 else 0.0,
            batch_size=batch,
            workers=workers,
            loader_wait_seconds=waited,
            backend_seconds=backend,
            runner=runner.describe(),
            first_batch_wait_seconds=first_wait,
            batches=n_batches,
            pinned=pinned,
        )
    finally:
        if owned:
            runner.close()
