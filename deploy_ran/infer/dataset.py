"""Images in, batches out: decoding in loader workers and a prefetching thread.

``infer`` decodes and preprocesses images in worker processes (``torch.utils.data.DataLoader``;
PIL + numpy, no torchvision) while the runner works on the previous batch. Nothing here raises
for a bad image: :func:`decode_image` returns its error, which becomes that image's record.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from deploy_ran.infer.records import one_line


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
        return None, one_line(exc.message) or "unreadable image"
    except Exception as exc:  # a decoder bug must not stop a million-image run either
        return None, one_line(f"{type(exc).__name__}: {exc}")


def keep_list(items: list) -> list:
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


def default_workers() -> int:
    """Loader processes: as many as cores, at most 4 (decoding is cheap next to the model)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return max(1, min(4, cores))
