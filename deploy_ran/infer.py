"""Run a model over many images: batched, resumable, never stopped by one bad file.

``run_inference(target, images, output)`` decodes and preprocesses images in worker processes
(``torch.utils.data.DataLoader``; PIL + numpy, no torchvision) while the runner works on the
previous batch, and appends one record per image to ``output`` (JSON Lines or CSV), flushed after
every batch: a killed run loses at most the batch in flight. ``resume=True`` reads what the output
already holds, skips those images and appends the rest, so the finished file is the one an
uninterrupted run writes. An image that cannot be read becomes a record with its error.

Records (JSON Lines; CSV has the same fields flattened, one column per top-k rank)::

    {"path": "imgs/cat.jpg", "class": 281, "label": "tabby", "prob": 0.912345,
     "topk": [{"class": 281, "label": "tabby", "prob": 0.912345}, ...]}
    {"path": "imgs/broken.jpg", "error": "imgs/broken.jpg is not a readable image (...)"}
    {"path": "imgs/caf\\xe9.jpg", "path_hex": "696d67732f636166e92e6a7067", "class": 3, ...}

``prob`` is the softmax of the logits, rounded to 6 decimals; ``label`` only with a labels file.
A file name that is not valid UTF-8 is written (JSON Lines) as a printable ``path`` with
``\\xNN`` escapes plus ``path_hex``, its exact bytes, which a resume matches on; CSV writes
the name's own bytes. Logits that are NaN or infinite become an error record (``model_errors``;
``InferResult.ok`` is False), never a bare ``NaN`` in the JSON.

One writer per output, and a resume only of what is ours:

* ``.NAME.lock`` beside the output is held (``flock``) for the whole run: a second run on the same
  output is refused at once (:class:`~deploy_ran.fileio.OutputLockedError`).
* ``NAME.producer.json`` beside the output records what produced it (artifact sha256, or model
  name + checkpoint sha256; precision, preprocessing, output name, top-k, labels sha256).
  ``resume`` checks it, and the whole existing file, *before* touching anything: a file of
  another model, of other settings, or with no producer record is refused and left as it was.
* Duplicate entries of a list are kept as given: each occurrence gets its own record.
* ``overwrite`` writes a new file under a temporary name and replaces the old output (and its
  producer record) only when the run has finished; a failed or interrupted run leaves the old one.
* A new output (and its producer record) is created when the first batch is written, so a model
  that fails on its first batch leaves no empty file; a full disk is a
  :class:`~deploy_ran.fileio.DiskFullError` (what was written stays resumable).

``infer --ray`` (:mod:`deploy_ran.infer_ray`) writes the same file through the same steps: the
request and runner checks (:func:`check_request`, :func:`check_runner`), the lock
(:func:`output_lock`), the producer and resume checks (:func:`plan_output`), per-image decoding
(:func:`decode_image`), records of one batch (:func:`predict_records`) and the writer
(:func:`write_batches`) are shared, so only where the work runs differs. Errors name library
parameters (``batch_size``, ``resume``) and carry them in ``param``; the CLI maps them to flags.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from deploy_ran.errors import DeployRanError
from deploy_ran.fileio import (
    atomic_write_text,
    check_writable,
    clean_stale_temps,
    disk_full_error,
    exclusive_lock,
    is_disk_full,
    publish,
    read_utf8_lines,
    refuse_output_over_inputs,
    sha256_file,
    temp_sibling,
)
from deploy_ran.runners import BaseRunner, load_runner

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}
PROB_DECIMALS = 6
PRODUCER_KIND = "deploy-ran infer output"
NONFINITE_ERROR = "the model returned NaN or infinite logits for this image"


class InferenceError(DeployRanError):
    """The model loaded but failed while running a batch."""


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


def decode_image(path: str | Path, preprocessing: dict) -> tuple[np.ndarray | None, str | None]:
    """``(array, None)``, or ``(None, error)`` for an image that cannot be used; never raises.

    Shared by the local loader and the Ray decode tasks, so a bad file reads the same in both.
    """
    from deploy_ran.images import ImageError, load_and_preprocess

    try:
        return load_and_preprocess(path, preprocessing), None
    except ImageError as exc:
        return None, _one_line(exc.message) or "unreadable image"
    except Exception as exc:  # a decoder bug must not stop a million-image run either
        return None, _one_line(f"{type(exc).__name__}: {exc}")


def _printable(text: str) -> str:
    """``text`` with any surrogate-escaped bytes (undecodable file names) as ``\\xNN``."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


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
    return _printable(" ".join(str(text).split()))


def default_workers() -> int:
    """Loader processes: as many as cores, at most 4 (decoding is cheap next to the model)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return max(1, min(4, cores))


# ---------------------------------------------------------------------------- output files


def read_labels(path: str | Path) -> list[str]:
    """One class name per line (blank trailing lines ignored), UTF-8 (a BOM is dropped).

    A file in another encoding (latin-1, cp1252, UTF-16) is refused with the line that failed
    rather than guessed: a wrongly decoded label would be written into every record.
    """
    lines = read_utf8_lines(path, "labels file", param="labels")
    if not lines:
        raise DeployRanError(
            f"Labels file {path} is empty.", hint="One class name per line.", param="labels"
        )
    return [ln.strip() for ln in lines]


def output_format(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DeployRanError(
            f"Cannot tell the output format of {path}.",
            hint="Name the output *.jsonl (JSON Lines) or *.csv.",
            param="output",
        )
    return fmt


def csv_header(topk: int, with_labels: bool) -> list[str]:
    cols = ["path", "error"]
    for k in range(1, topk + 1):
        cols += [f"class_{k}", f"prob_{k}"] + ([f"label_{k}"] if with_labels else [])
    return cols


def producer_path(output: str | Path) -> Path:
    """``NAME.producer.json`` beside ``output``: what produced it (see the module docstring)."""
    output = Path(output)
    return output.with_name(output.name + ".producer.json")


def producer_identity(
    runner: BaseRunner, output_name: str, topk: int, labels: str | Path | None, fmt: str
) -> dict[str, Any]:
    """What makes two runs' records interchangeable: same weights, preprocessing and settings.

    Device, providers, batch size and threads are left out: they change timings, not answers.
    """
    ident: dict[str, Any] = {"backend": runner.backend, "model": runner.model}
    source = Path(runner.name)
    if source.is_file():
        ident["artifact_sha256"] = sha256_file(source)
    else:
        ident["artifact"] = runner.name
    checkpoint = runner.describe().get("checkpoint")
    if checkpoint:
        ckpt = Path(checkpoint)
        ident["checkpoint_sha256"] = sha256_file(ckpt) if ckpt.is_file() else str(checkpoint)
    elif runner.backend == "torch":
        ident["checkpoint_sha256"] = None
    ident.update(
        precision=runner.precision,
        preprocessing=runner.preprocessing,
        output=output_name,
        topk=topk,
        labels_sha256=sha256_file(labels) if labels is not None else None,
        format=fmt,
    )
    return json.loads(json.dumps(ident))  # tuples → lists, as read back from the file


def _read_producer(path: Path) -> dict[str, Any] | None:
    """The producer record at ``path`` (None when absent); refuses a file that is not one."""
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        record = None
    if not isinstance(record, dict) or record.get("kind") != PRODUCER_KIND:
        raise DeployRanError(
            f"{path} exists and is not a deploy-ran producer record; it is left as it was.",
            hint="Move it away, or choose another output.",
            param="output",
        )
    return record.get("producer") if isinstance(record.get("producer"), dict) else {}


def check_producer(output: Path, identity: dict[str, Any]) -> None:
    """Refuse to resume ``output`` unless its producer record says this run wrote it."""
    sidecar = producer_path(output)
    found = _read_producer(sidecar)
    if found is None:
        raise DeployRanError(
            f"{output} has no producer record ({sidecar.name}), so it cannot be told that this "
            "model and these settings wrote it; it is left as it was.",
            hint="Set overwrite=True to start it again, or choose another output.",
            param="output",
        )
    differ = sorted(k for k in set(found) | set(identity) if found.get(k) != identity.get(k))
    if differ:
        details = "; ".join(
            f"{k}: file {_short(found.get(k))}, this run {_short(identity.get(k))}" for k in differ
        )
        raise DeployRanError(
            f"{output} was written by another model or with other settings ({details}); "
            "it is left as it was.",
            hint="Resume with the same model and settings, overwrite it, or choose another output.",
            param="output",
        )


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 24 else text[:20] + "…"


def _complete_part(data: bytes) -> bytes:
    """``data`` without a half-written last line (a run killed mid-write)."""
    return data if not data or data.endswith(b"\n") else data[: data.rfind(b"\n") + 1]


def _truncate_partial_line(path: Path) -> int:
    """Drop a half-written last line; returns the bytes removed. Only after checking the file."""
    size = path.stat().st_size
    if size == 0:
        return 0
    with open(path, "rb+") as fh:
        fh.seek(-1, os.SEEK_END)
        if fh.read(1) == b"\n":
            return 0
        fh.seek(0)
        keep = len(_complete_part(fh.read()))
        fh.truncate(keep)
        return size - keep


def _record_path(rec: dict[str, Any], where: str) -> str:
    """The path a JSON record stands for (``path_hex`` holds the exact bytes when present)."""
    if "path_hex" in rec:
        try:
            return os.fsdecode(bytes.fromhex(rec["path_hex"]))
        except (TypeError, ValueError):
            raise DeployRanError(
                f"{where} has a malformed 'path_hex'.",
                hint="Write to a new output.",
                param="output",
            ) from None
    if not isinstance(rec["path"], str):
        raise DeployRanError(
            f"{where} has a non-text 'path'.", hint="Write to a new output.", param="output"
        )
    return rec["path"]


def read_done(path: Path, fmt: str, topk: int, with_labels: bool) -> list[str]:
    """Paths an existing output already holds (one per record, duplicates kept), read-only.

    Checks the whole file was written the same way; the half-written last line of a killed
    run is ignored here and removed only when the run goes ahead.
    """
    text = _complete_part(path.read_bytes()).decode("utf-8", "surrogateescape")
    if fmt == "csv":
        rows = list(csv.reader(io.StringIO(text)))
        if not rows:
            return []
        want = csv_header(topk, with_labels)
        if rows[0] != want:
            raise DeployRanError(
                f"{path} was written with other settings (columns {rows[0][:6]}…).",
                hint="Resume with the same topk and labels, or write to a new output.",
                param="output",
            )
        return [r[0] for r in rows[1:] if r]
    done: list[str] = []
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
        ranks = rec.get("topk")
        if ranks is not None and (
            not isinstance(ranks, list) or len(ranks) != topk or ("label" in rec) != with_labels
        ):
            raise DeployRanError(
                f"{path} line {n} was written with other topk / labels settings.",
                hint="Resume with the same topk and labels, or write to a new output.",
                param="output",
            )
        done.append(_record_path(rec, f"{path} line {n}"))
    return done


def pending_indices(paths: Sequence[Path], done: Sequence[str]) -> list[int]:
    """Indices of ``paths`` still to do: each record in the output covers one occurrence.

    A list that names an image twice gets two records, in a resumed run as in a whole one.
    """
    left = Counter(done)
    pending = []
    for i, p in enumerate(paths):
        key = str(p)
        if left[key] > 0:
            left[key] -= 1
        else:
            pending.append(i)
    return pending


def _path_fields(path: str | Path) -> dict[str, str]:
    """``{"path": ...}``, plus ``path_hex`` for a name that is not valid UTF-8."""
    text = str(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return {"path": _printable(text), "path_hex": os.fsencode(text).hex()}
    return {"path": text}


def _records(
    paths: Sequence[str | Path], probs: np.ndarray, topk: int, labels: list[str] | None
) -> list[dict[str, Any]]:
    """One prediction record per row of ``probs`` (the image at the same place in ``paths``)."""
    top = np.argsort(-probs, axis=1, kind="stable")[:, :topk]
    out = []
    for row, (path, classes) in enumerate(zip(paths, top)):
        ranks = []
        for c in classes:
            entry: dict[str, Any] = {"class": int(c)}
            if labels is not None:
                entry["label"] = labels[c]
            entry["prob"] = round(float(probs[row, c]), PROB_DECIMALS)
            ranks.append(entry)
        rec: dict[str, Any] = {**_path_fields(path), **ranks[0], "topk": ranks}
        out.append(rec)
    return out


def format_records(records: list[dict[str, Any]], fmt: str, topk: int, with_labels: bool) -> str:
    """Records as the text appended to the output: JSON Lines (never a bare NaN), or CSV rows
    (one column group per top-k rank, empty cells for an error record, a name's own bytes)."""
    if fmt == "jsonl":
        return "".join(json.dumps(r, ensure_ascii=False, allow_nan=False) + "\n" for r in records)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    for r in records:
        path = os.fsdecode(bytes.fromhex(r["path_hex"])) if "path_hex" in r else r["path"]
        row: list[Any] = [path, r.get("error", "")]
        ranks = r.get("topk", [])
        for k in range(topk):
            if k < len(ranks):
                e = ranks[k]
                row += [e["class"], e["prob"]] + ([e.get("label", "")] if with_labels else [])
            else:
                row += ["", ""] + ([""] if with_labels else [])
        writer.writerow(row)
    return buf.getvalue()


class _OutputWriter:
    """Writes records into the output as :func:`run_inference` promises (see the module doc).

    ``mode``: "fresh" (create on the first write), "append" (resume: drop a torn last line, then
    append) or "replace" (``overwrite``: write a temporary file, swap it in at ``finish``).
    """

    def __init__(
        self, output: Path, fmt: str, mode: str, header: list[str] | None, producer: dict
    ) -> None:
        self.output, self.fmt, self.mode, self.header = output, fmt, mode, header
        self.producer = producer
        self.sidecar = producer_path(output)
        self.tmp: Path | None = None
        self.fh: IO[str] | None = None

    def _open(self) -> IO[str]:
        if self.mode == "append":
            _truncate_partial_line(self.output)
            target, how = self.output, "a"
        elif self.mode == "replace":
            self.tmp = target = temp_sibling(self.output)
            how = "w"
        else:
            atomic_write_text(self.sidecar, self._sidecar_text())  # before the first record
            target, how = self.output, "w"
        # CSV writes a name's own bytes; JSON Lines holds only valid UTF-8 (path_hex).
        errors = "surrogateescape" if self.fmt == "csv" else "strict"
        fh = open(target, how, encoding="utf-8", errors=errors, newline="")
        if self.header is not None and fh.tell() == 0:
            csv.writer(fh, lineterminator="\n").writerow(self.header)
        return fh

    def _sidecar_text(self) -> str:
        from deploy_ran import __version__

        record = {"kind": PRODUCER_KIND, "deploy_ran": __version__, "producer": self.producer}
        return json.dumps(record, indent=2, ensure_ascii=False) + "\n"

    def write(self, text: str) -> None:
        try:
            if self.fh is None:
                self.fh = self._open()
            self.fh.write(text)
            self.fh.flush()
        except OSError as exc:
            if is_disk_full(exc):
                raise disk_full_error(self.output, exc, self._kept()) from None
            raise

    def _kept(self) -> str:
        if self.mode == "replace":
            return f"{self.output} was left as it was"
        return "the records written so far are kept; free space, then run again with resume=True"

    def finish(self) -> None:
        """Close; for ``replace``, swap the new file and its producer record in."""
        if self.fh is None:
            self.write("")  # no pending image (all done): still create/replace the output
        assert self.fh is not None
        try:
            self.fh.close()
            if self.mode == "replace" and self.tmp is not None:
                side_tmp = temp_sibling(self.sidecar)
                try:
                    side_tmp.write_text(self._sidecar_text(), encoding="utf-8")
                    # No window in which the new records sit beside the old producer record:
                    # without a record, a resume refuses rather than mixes.
                    with contextlib.suppress(FileNotFoundError):
                        self.sidecar.unlink()
                    publish(self.tmp, self.output)
                    publish(side_tmp, self.sidecar)
                finally:
                    with contextlib.suppress(FileNotFoundError):
                        side_tmp.unlink()
        except OSError as exc:
            self.abort()
            if is_disk_full(exc):
                raise disk_full_error(self.output, exc, self._kept()) from None
            raise

    def abort(self) -> None:
        """Close after a failure; a ``replace`` run's temporary file is removed."""
        if self.fh is not None and not self.fh.closed:
            with contextlib.suppress(OSError):
                self.fh.close()
        if self.tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                self.tmp.unlink()


def softmax(logits: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float64)
    x = x - x.max(axis=1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=1, keepdims=True)


# ----------------------------------------------------------- shared with deploy_ran.infer_ray
# Every step of a run but the loop that feeds the model: the local loop below and the Ray driver
# (deploy_ran.infer_ray) both go through these, so they refuse, resume and write alike.


def check_request(
    output: str | Path,
    *,
    batch_size: int,
    topk: int,
    resume: bool,
    overwrite: bool,
    inputs: Mapping[str, Any] | None = None,
) -> tuple[Path, str]:
    """Refuse bad settings before any work; returns the output path and its format.

    ``inputs`` (``{"labels": ..., "images": ..., "target": ..., "checkpoint": ...}``) are the
    files the run reads: an output that resolves to one of them is refused.
    """
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
    given = {k: v for k, v in (inputs or {}).items() if isinstance(v, (str, os.PathLike))}
    refuse_output_over_inputs({"output": output}, given)
    fmt = output_format(output)
    check_writable(output)
    _refuse_existing(output, resume, overwrite)
    return output, fmt


def request_inputs(target: Any, images: Any, labels: Any, checkpoint: Any) -> dict[str, Any]:
    """The files an infer run reads (for :func:`check_request`): a target that is a file, an
    image list or folder given as one path, the labels and the checkpoint."""
    target_file = target if isinstance(target, (str, Path)) and Path(target).exists() else None
    return {"target": target_file, "images": images, "labels": labels, "checkpoint": checkpoint}


def _refuse_existing(output: Path, resume: bool, overwrite: bool) -> None:
    if output.exists() and output.stat().st_size > 0 and not (resume or overwrite):
        raise DeployRanError(
            f"{output} already exists.",
            hint="Set resume=True to continue it, overwrite=True to start again, or choose "
            "another output.",
            param="output",
        )


@contextlib.contextmanager
def output_lock(output: Path, *, resume: bool, overwrite: bool) -> Iterator[None]:
    """Be the one writer of ``output`` for the block (``.NAME.lock``), after clearing what dead
    runs left (their temporary files) and checking again that the output may be written: another
    run may have finished it while this one was starting."""
    with exclusive_lock(output, "infer run"):
        clean_stale_temps(output)
        clean_stale_temps(producer_path(output))
        _refuse_existing(output, resume, overwrite)
        yield


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
            param="output_name",
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
            param="labels",
        )
    if classes is not None and topk > classes:
        raise DeployRanError(
            f"topk={topk} is more than the model's {classes} classes.",
            hint=f"Use topk={classes} or less.",
            param="topk",
        )
    return name


def plan_output(
    output: Path,
    fmt: str,
    identity: dict[str, Any],
    paths: Sequence[Path],
    *,
    topk: int,
    with_labels: bool,
    resume: bool,
    overwrite: bool,
) -> tuple[str, list[int]]:
    """How to write ``output`` (the :class:`_OutputWriter` mode) and the indices of ``paths``
    still to do. Read-only: a resume checks the producer record and the whole file first, so a
    file this run did not write is refused and left as it was. Call it holding the lock."""
    done: list[str] = []
    if overwrite:
        mode = "replace"
    elif resume and output.exists() and output.stat().st_size > 0:
        check_producer(output, identity)
        done = read_done(output, fmt, topk, with_labels)
        mode = "append"
    else:
        mode = "fresh"
    if mode != "append":
        _read_producer(producer_path(output))  # never replace someone else's file of that name
    return mode, pending_indices(paths, done)


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
        n: {**_path_fields(p), "error": err or "unreadable image"}
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
            recs = _records([items[n][0] for n in kept], softmax(logits[finite]), topk, label_names)
            by_pos.update(zip(kept, recs))
        for n, ok in zip(good, finite):
            if not ok:
                by_pos[n] = {**_path_fields(items[n][0]), "error": NONFINITE_ERROR}
    return [by_pos[n] for n in range(len(items))], seconds


def is_model_error(record: dict[str, Any]) -> bool:
    """Whether ``record`` stands for NaN/inf logits (the model's fault, not the image's)."""
    return record.get("error") == NONFINITE_ERROR


def write_batches(
    output: Path,
    fmt: str,
    mode: str,
    identity: dict[str, Any],
    batches: Iterable[list[dict[str, Any]]],
    *,
    topk: int,
    with_labels: bool,
    total: int,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[int, int, int]:
    """Write each batch of records as it comes (flushed), then finish the output (see the module
    docstring for ``mode`` and what a failure leaves); returns (processed, unreadable,
    model errors). ``progress(done, total)`` follows every batch."""
    header = csv_header(topk, with_labels) if fmt == "csv" else None
    writer = _OutputWriter(output, fmt, mode, header, identity)
    processed = failed = model_errors = 0
    try:
        for records in batches:
            writer.write(format_records(records, fmt, topk, with_labels))
            bad_logits = sum(1 for r in records if is_model_error(r))
            model_errors += bad_logits
            failed += sum(1 for r in records if "error" in r) - bad_logits
            processed += len(records)
            if progress is not None:
                progress(processed, total)
        writer.finish()
    except BaseException:
        writer.abort()
        raise
    return processed, failed, model_errors


# ---------------------------------------------------------------------------------- infer


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
            return _run(
                runner, paths, output, fmt, topk, labels, label_names, resume, overwrite,
                batch_size, workers, output_name, progress,
            )  # fmt: skip
        finally:
            if owned:
                runner.close()


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
    progress: Callable[[int, int], None] | None,
) -> InferResult:
    name = check_runner(
        runner, output_name=output_name, topk=topk, label_names=label_names, labels=labels
    )
    with_labels = label_names is not None
    identity = producer_identity(runner, name, topk, labels, fmt)
    mode, pending = plan_output(
        output, fmt, identity, paths, topk=topk, with_labels=with_labels, resume=resume,
        overwrite=overwrite,
    )  # fmt: skip
    fixed = runner.fixed_batch
    batch = fixed or batch_size

    from torch.utils.data import DataLoader

    # On a GPU: batches stacked in the workers and pinned (page-locked) by the DataLoader's
    # pinning thread, so the runner's host→device copy is a direct DMA.
    pinned = str(runner.device).startswith("cuda")
    loader = DataLoader(
        ImageDataset(paths, pending, runner.preprocessing),
        batch_size=batch,
        shuffle=False,
        num_workers=workers,
        collate_fn=StackCollate(runner.input_spec[0].dtype) if pinned else _keep_list,
        pin_memory=pinned,
        prefetch_factor=4 if workers else None,
    )
    # seconds blocked on the loader / inside the runner / waiting for the first batch; batches
    clock = {"waited": 0.0, "backend": 0.0, "first": 0.0, "batches": 0}

    def batches() -> Iterator[list[dict[str, Any]]]:
        # batch N+1 is fetched (decoded, collated, pinned) while the runner works on N; closing
        # stops the fetching thread when the loop ends early (an error, a progress callback)
        with contextlib.closing(prefetch(iter(loader if pending else []))) as decoded:
            while True:
                t_wait = time.perf_counter()
                items = next(decoded, None)
                clock["waited"] += time.perf_counter() - t_wait
                if items is None:
                    return
                if clock["batches"] == 0:
                    clock["first"] = clock["waited"]
                clock["batches"] += 1
                stacked = None
                if isinstance(items, PinnedBatch):
                    stacked = None if items.stacked is None else items.stacked.numpy()
                    items = items.items
                records, in_runner = predict_records(
                    runner,
                    [(paths[i], a, err) for i, a, err in items],
                    output_name=name,
                    batch_size=None if fixed else batch,
                    topk=topk,
                    label_names=label_names,
                    stacked=stacked,
                )
                clock["backend"] += in_runner
                yield records

    started = time.perf_counter()
    counts = write_batches(
        output, fmt, mode, identity, batches(), topk=topk, with_labels=with_labels,
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
        loader_wait_seconds=clock["waited"],
        backend_seconds=clock["backend"],
        runner=runner.describe(),
        producer=identity,
        first_batch_wait_seconds=clock["first"],
        batches=int(clock["batches"]),
        pinned=pinned,
    )
