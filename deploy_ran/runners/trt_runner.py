"""TensorRT engines (``.plan`` / ``.engine`` with a ``.plan.json`` sidecar): the interface.

The engine runner itself is not part of this version. This module fixes what it must look like,
so that ``verify``, ``bench`` and ``infer`` already treat TensorRT as one more backend: building a
:class:`TrtRunner` checks the file and raises :class:`BackendUnavailableError` with the reason,
which ``bench`` reports as *skipped* and the other commands as a clear error.

Contract for the implementation (subclassing :class:`~deploy_ran.runners.base.BaseRunner`):

- ``__init__(path, device="cuda", ...)``: deserialize the plan with ``trt.Runtime``; read
  ``input_spec`` from the engine's I/O tensors (``num_io_tensors``, ``get_tensor_name``,
  ``get_tensor_mode``, ``get_tensor_dtype``, ``get_tensor_shape``; ``-1`` → ``None``); take
  ``model``, ``preprocessing``, ``precision`` and ``num_classes`` from the sidecar JSON; create
  one CUDA stream and an execution context.
- ``_stage(feed)``: ``set_input_shape`` for the batch, copy inputs into device buffers
  (reallocated only when the shape grows), ``set_tensor_address`` for every I/O tensor.
- ``_execute(staged)``: ``execute_async_v3(stream_handle)`` only; no host copies.
- ``_fetch(outputs)``: device → host copies of each output, then ``synchronize()``.
- ``stream_handle`` / ``synchronize``: the runner's stream, so ``bench`` times it with CUDA
  events; ``supports_cuda_graphs`` when ``_execute`` can be captured on that stream.
These calls exist unchanged in TensorRT 10.3, 10.x and 11.x (see the API notes in ``trt-api/``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from deploy_ran.environment import tensorrt_status
from deploy_ran.runners.base import BackendUnavailableError, BaseRunner, RunnerError

ENGINE_SUFFIXES = (".plan", ".engine")


def sidecar_path(path: str | Path) -> Path:
    """``model.int8.plan`` → ``model.int8.plan.json`` (the engine's metadata)."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def read_sidecar(path: str | Path) -> dict[str, Any] | None:
    """The engine's sidecar metadata, or ``None`` when there is none."""
    side = sidecar_path(path)
    if not side.exists():
        return None
    try:
        return json.loads(side.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise RunnerError(
            f"Engine metadata {side} is not readable JSON ({exc}).",
            hint="Rebuild the engine with `python cli.py build-engine`.",
        ) from None


class TrtRunner(BaseRunner):
    """Run a serialized TensorRT engine (interface; see the module docstring)."""

    backend = "trt"

    def __init__(self, path: str | Path, *, device: str = "cuda", **options: Any) -> None:
        path = Path(path)
        if not path.exists():
            raise RunnerError(
                f"Engine {path} does not exist.",
                hint="Build one with `python cli.py build-engine MODEL.onnx` on a GPU machine.",
            )
        self.path = path
        self.sidecar = read_sidecar(path)
        status = tensorrt_status()
        reason = (
            f"TensorRT is {status}"
            if status.startswith(("not importable", "bindings present"))
            else f"TensorRT {status} is importable, but this version of deploy-ran has no engine "
            "runner yet"
        )
        raise BackendUnavailableError(
            f"Cannot run TensorRT engine {path}: {reason}.",
            hint="Compare or benchmark the ONNX file it was built from with ONNX Runtime "
            "(`--backends torch,ort`), or run the engine with trtexec --loadEngine.",
        )

    def _stage(self, feed: dict[str, np.ndarray]) -> Any:  # pragma: no cover - interface
        raise NotImplementedError

    def _execute(self, staged: Any) -> Any:  # pragma: no cover - interface
        raise NotImplementedError

    def _fetch(self, outputs: Any) -> dict[str, np.ndarray]:  # pragma: no cover - interface
        raise NotImplementedError
