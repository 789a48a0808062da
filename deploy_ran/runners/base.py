"""The one interface every backend implements.

A *runner* is built from an artifact (a model name + checkpoint, an ONNX file, a TensorRT plan) and
a device, and does one thing: run a batch and return named outputs. ``verify``, ``bench`` and
``infer`` only ever talk to this interface, so a new backend is usable by all three the moment it
subclasses :class:`BaseRunner` (Polygraphy's split: loaders build, runners run, comparators compare).

What a backend implements (all private, called by the public methods here):

``_stage(feed)``
    Put a checked host feed (``{input name: np.ndarray}``) where the backend reads it: the same
    arrays on a CPU, device buffers on a GPU. Returns any object the backend understands.
``_execute(staged)``
    Run on staged inputs and return the outputs where the backend produced them (device memory on
    a GPU). Must not copy outputs to the host: ``bench --no-copies`` times exactly this call.
``_fetch(outputs)``
    Copy ``_execute``'s outputs to the host as ``{output name: np.ndarray}``.
``_close()``
    Release sessions, engines, buffers.

and, on GPUs, ``synchronize()`` and ``stream_handle`` (the raw ``cudaStream_t`` that ``_execute``
enqueues its work on), so that a benchmark can time device work with CUDA events on that stream.

A backend that is not installed raises :class:`BackendUnavailableError` from its constructor;
``bench`` reports such a backend as *skipped* rather than *failed*.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from deploy_ran.device import Device, describes_cuda
from deploy_ran.errors import DeployRanError
from deploy_ran.onnx_graph import batch_to_run


class RunnerError(DeployRanError):
    """A runner that cannot be built or cannot run what it was given."""


class InputSpecError(RunnerError):
    """Inputs whose names, shapes or dtypes do not match the runner's input spec."""


class BackendUnavailableError(RunnerError):
    """A backend (or device, provider) that is not installed or not present on this machine."""


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape and dtype of one input; ``None`` in ``shape`` is a dynamic dimension."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str  # numpy dtype name: "float32", "float16", ...

    def __str__(self) -> str:
        dims = ", ".join(
            "batch" if (d is None and i == 0) else str(d) for i, d in enumerate(self.shape)
        )
        return f"{self.name}: {self.dtype}[{dims}]"

    @property
    def fixed_batch(self) -> int | None:
        """The batch size a static-batch input accepts (``None`` when dynamic)."""
        return self.shape[0] if self.shape else None

    def shape_for(self, batch: int) -> tuple[int, ...]:
        """Concrete shape at ``batch``; fails for other dynamic dimensions."""
        if any(d is None for d in self.shape[1:]):
            raise RunnerError(
                f"Input {self} has dynamic dimensions besides the batch; the toolkit cannot pick "
                "a shape for it.",
                hint="Export with a fixed image size (every deploy-ran export has one).",
            )
        return (batch, *self.shape[1:])  # type: ignore[return-value]

    def check(self, array: np.ndarray) -> None:
        """Raise :class:`InputSpecError` naming the expected spec when ``array`` does not fit."""
        if not isinstance(array, np.ndarray):
            raise InputSpecError(
                f"Input {self.name!r} must be a numpy array, got {type(array).__name__}.",
                hint=f"Expected {self}.",
            )
        if array.dtype != np.dtype(self.dtype):
            raise InputSpecError(
                f"Input {self.name!r} has dtype {array.dtype}, expected {self.dtype} ({self}).",
                hint=f"Convert with array.astype(np.{self.dtype}), or runner.coerce(batch).",
            )
        ok = len(array.shape) == len(self.shape) and all(
            want is None or want == got for want, got in zip(self.shape, array.shape)
        )
        if not ok:
            raise InputSpecError(
                f"Input {self.name!r} has shape {list(array.shape)}, expected {self}.",
                hint="Preprocess images to the model's size (deploy_ran.images.preprocess) and "
                "stack them as NCHW"
                + (
                    f"; this artifact has a static batch of {self.fixed_batch}."
                    if self.fixed_batch is not None
                    else "."
                ),
            )


Batch = np.ndarray | Mapping[str, np.ndarray]


class BaseRunner(abc.ABC):
    """Run batches of one artifact on one device; outputs come back as named numpy arrays.

    Subclasses set ``backend`` ("torch", "ort", "trt") and fill the attributes in ``__init__``.
    Runners are context managers: ``with load_runner("ran92.onnx") as r: r.run(x)``.
    """

    backend: str = "base"
    supports_cuda_graphs: bool = False

    def __init__(
        self,
        *,
        name: str,
        device: str | Device,
        precision: str,
        input_spec: list[TensorSpec],
        output_names: list[str],
        model: str | None = None,
        preprocessing: dict[str, Any] | None = None,
        num_classes: int | None = None,
    ) -> None:
        self.name = name  # what the user gave: a model name or a file path
        #: Where it runs, as text for reports (``cuda:0``); :attr:`is_cuda` asks the parsed form.
        self.device = str(device)
        self.precision = precision
        self._input_spec = list(input_spec)
        self._output_names = list(output_names)
        self.model = model
        self.preprocessing = preprocessing
        self.num_classes = num_classes
        self._closed = False

    # ----------------------------------------------------------------------------- the interface

    @property
    def input_spec(self) -> list[TensorSpec]:
        return list(self._input_spec)

    @property
    def output_names(self) -> list[str]:
        return list(self._output_names)

    @property
    def fixed_batch(self) -> int | None:
        """The only batch size this runner accepts, or ``None`` for a dynamic batch."""
        return self._input_spec[0].fixed_batch if self._input_spec else None

    @property
    def is_cuda(self) -> bool:
        """Whether this runner's work runs on a GPU (its outputs live in device memory)."""
        return describes_cuda(self.device)

    def batch_for(self, requested: int | None) -> int | None:
        """The batch to feed this runner: its static batch when it has one, else ``requested``."""
        return batch_to_run(self.fixed_batch, requested)

    @property
    def label(self) -> str:
        """Short human name of the backend configuration, e.g. ``ort fp32 (cpu)``."""
        return f"{self.backend} {self.precision} ({self.device})"

    @property
    def stream_handle(self) -> int | None:
        """Raw ``cudaStream_t`` that ``run_staged`` enqueues on (``None`` on a CPU)."""
        return None

    def run(self, batch: Batch) -> dict[str, np.ndarray]:
        """Run one batch (host arrays in, host arrays out), checked against ``input_spec``."""
        return self._fetch(self._execute(self._stage(self.check_inputs(batch))))

    def stage(self, batch: Batch) -> Any:
        """Check ``batch`` and copy it to the device once, for repeated ``run_staged`` calls."""
        return self._stage(self.check_inputs(batch))

    def run_staged(self, staged: Any) -> Any:
        """Run on inputs already on the device; outputs stay there (see ``fetch``)."""
        self._check_open()
        return self._execute(staged)

    def fetch(self, outputs: Any) -> dict[str, np.ndarray]:
        """Copy ``run_staged``'s outputs to the host."""
        return self._fetch(outputs)

    def synchronize(self) -> None:  # noqa: B027 - a no-op unless the backend queues device work
        """Wait for all work queued on the device (a no-op on a CPU)."""

    def close(self) -> None:
        """Release the backend's resources; a closed runner refuses to run."""
        if not self._closed:
            self._closed = True
            self._close()

    def __enter__(self) -> BaseRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> dict[str, Any]:
        """Everything a report needs to say what ran (JSON-friendly)."""
        return {
            "backend": self.backend,
            "name": self.name,
            "model": self.model,
            "device": self.device,
            "precision": self.precision,
            "inputs": [
                {"name": s.name, "shape": list(s.shape), "dtype": s.dtype} for s in self._input_spec
            ],
            "outputs": self.output_names,
            **self._describe_extra(),
        }

    # ------------------------------------------------------------------------------ helpers

    def check_inputs(self, batch: Batch) -> dict[str, np.ndarray]:
        """``{name: array}`` for a single array or a mapping, each checked against its spec."""
        self._check_open()
        if isinstance(batch, np.ndarray):
            if len(self._input_spec) != 1:
                raise InputSpecError(
                    f"{self.name} has {len(self._input_spec)} inputs; pass a dict of arrays.",
                    hint="Expected " + "; ".join(map(str, self._input_spec)) + ".",
                )
            feed = {self._input_spec[0].name: batch}
        elif isinstance(batch, Mapping):
            feed = dict(batch)
            wanted = {s.name for s in self._input_spec}
            if set(feed) != wanted:
                raise InputSpecError(
                    f"Inputs {sorted(feed)} do not match {self.name}'s inputs {sorted(wanted)}.",
                    hint="Expected " + "; ".join(map(str, self._input_spec)) + ".",
                )
        else:
            raise InputSpecError(
                f"A batch must be a numpy array or a dict of arrays, got {type(batch).__name__}.",
                hint="Expected " + "; ".join(map(str, self._input_spec)) + ".",
            )
        for spec in self._input_spec:
            spec.check(feed[spec.name])
        return feed

    def coerce(self, batch: Batch) -> Batch:
        """Cast floating-point inputs to the dtype the runner expects (e.g. float32 → float16).

        Only float ↔ float conversions are made; anything else is left for ``run`` to reject.
        """
        specs = {s.name: s for s in self._input_spec}
        if isinstance(batch, np.ndarray) and len(specs) == 1:
            (spec,) = specs.values()
            return _cast_float(batch, spec.dtype)
        if isinstance(batch, Mapping):
            return {
                k: _cast_float(v, specs[k].dtype) if k in specs else v for k, v in batch.items()
            }
        return batch

    def run_many(
        self,
        inputs: np.ndarray,
        batch_size: int | None = None,
        on_batch: Callable[[int], None] | None = None,
    ) -> dict[str, np.ndarray]:
        """Run N samples (single-input models) in batches; pads to a static batch, then trims.

        Inputs are cast with :meth:`coerce`, so float32 data runs on an FP16-input artifact.
        ``on_batch(n)`` is called after each batch with the number of samples it held.
        """
        fixed = self.fixed_batch
        size = batch_to_run(fixed, batch_size) or len(inputs)
        if fixed is not None and batch_size not in (None, fixed):
            raise RunnerError(
                f"{self.name} has a static batch of {fixed}; cannot run batches of {batch_size}.",
                hint=f"Use a batch size of {fixed}, or export with a dynamic batch.",
            )
        chunks: dict[str, list[np.ndarray]] = {n: [] for n in self.output_names}
        for start in range(0, len(inputs), size):
            part = inputs[start : start + size]
            real = len(part)
            if fixed is not None and real < fixed:
                pad = np.zeros((fixed - real, *part.shape[1:]), dtype=part.dtype)
                part = np.concatenate([part, pad])
            out = self.run(self.coerce(np.ascontiguousarray(part)))
            for name in self.output_names:
                chunks[name].append(out[name][:real])
            if on_batch is not None:
                on_batch(real)
        return {n: np.concatenate(v) if v else np.empty((0,)) for n, v in chunks.items()}

    def _check_open(self) -> None:
        if self._closed:
            raise RunnerError(
                f"The {self.backend} runner for {self.name} is closed.",
                hint="Build a new runner (load_runner) instead of reusing a closed one.",
            )

    def _describe_extra(self) -> dict[str, Any]:
        return {}

    # ------------------------------------------------------------------ backend implementation

    @abc.abstractmethod
    def _stage(self, feed: dict[str, np.ndarray]) -> Any: ...

    @abc.abstractmethod
    def _execute(self, staged: Any) -> Any: ...

    @abc.abstractmethod
    def _fetch(self, outputs: Any) -> dict[str, np.ndarray]: ...

    def _close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (default: nothing to release)."""

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<{type(self).__name__} {self.name} {self.precision} on {self.device}, {state}>"


def _cast_float(array: np.ndarray, dtype: str) -> np.ndarray:
    want = np.dtype(dtype)
    if (
        isinstance(array, np.ndarray)
        and array.dtype != want
        and np.issubdtype(array.dtype, np.floating)
        and np.issubdtype(want, np.floating)
    ):
        return array.astype(want)
    return array
