"""TensorRT as an optional dependency, and the few places where its versions differ.

The toolkit supports TensorRT 10.x (10.3, the JetPack 6 line, through 10.16) and 11.x. Everything
version-dependent is decided here, by looking at what the installed module offers rather than at
its version string, and each branch is exercised in the tests against the real API surfaces of
10.3, 10.16 and 11.4 (``tests/data/trt_api``):

* networks are created strongly typed: ``NetworkDefinitionCreationFlag.STRONGLY_TYPED`` in 10.x;
  11.x builds only strongly typed networks and still accepts the flag. Precision therefore comes
  from the ONNX (FP16 tensors, Q/DQ nodes); the FP16/INT8 builder flags and the INT8 calibrators,
  removed in 11, are never used;
* ``HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY`` exists from 10.16 on.

Only this module, ``exporters.tensorrt`` and ``deploy_ran.runners`` import ``tensorrt``, always
lazily, so the rest of the toolkit works where it is not installed.
"""

from __future__ import annotations

import importlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deploy_ran.device import Device
from deploy_ran.errors import DeployRanError
from deploy_ran.reading import read_regular_bytes

#: Exit code of commands that stop because TensorRT or a CUDA GPU is missing (documented).
EXIT_NO_TENSORRT = 3


class TensorRTUnavailable(DeployRanError):
    """TensorRT or a CUDA GPU is missing: the work that needs them cannot run on this host."""

    exit_code = EXIT_NO_TENSORRT


class EngineError(DeployRanError):
    """An engine that cannot be built or loaded (parser errors, build failure, bad plan)."""


def import_tensorrt() -> Any:
    """The ``tensorrt`` module, or :class:`TensorRTUnavailable` saying why it cannot be used."""
    try:
        return importlib.import_module("tensorrt")
    except ImportError as exc:
        reason = f"the Python package is not installed ({exc})"
    except OSError as exc:  # bindings present, libnvinfer missing
        reason = f"its native libraries cannot be loaded ({exc})"
    raise TensorRTUnavailable(
        f"TensorRT is not usable here: {reason}.",
        hint='On a GPU server: pip install -e ".[gpu]" (TensorRT 10.3 or newer, CUDA 12/13).',
    )


def version_tuple(version: str) -> tuple[int, int, int]:
    """``"10.16.1.11"`` → ``(10, 16, 1)``; tolerant of suffixes."""
    parts = [int(p) for p in re.findall(r"\d+", version)[:3]]
    return tuple(parts + [0] * (3 - len(parts)))  # type: ignore[return-value]


def full_version(version: str) -> tuple[int, int, int, int]:
    """``"10.16.1.11"`` → ``(10, 16, 1, 11)``: major, minor, patch and build, as TensorRT compares
    them when it deserializes a plan; a local suffix (``+standin``) is ignored."""
    parts = [int(p) for p in re.findall(r"\d+", version.split("+", 1)[0])[:4]]
    return tuple(parts + [0] * (4 - len(parts)))  # type: ignore[return-value]


def cuda_device_index(device: str | Device, current: int | None = None) -> int:
    """The CUDA device index of ``"cuda"`` / ``"cuda:N"`` (``"cuda"`` is the current device);
    see :meth:`deploy_ran.device.Device.cuda_index`, which does the work."""
    return Device.parse(device, default="cuda").cuda_index(current)


def network_flags(trt: Any) -> int:
    """Creation flags for a strongly typed network on every supported version."""
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    return 0 if flag is None else 1 << int(flag)


HARDWARE_COMPATIBILITY = {
    "none": "NONE",
    "ampere_plus": "AMPERE_PLUS",
    "same_cc": "SAME_COMPUTE_CAPABILITY",
}


def hardware_compatibility_level(trt: Any, choice: str) -> Any:
    """The ``HardwareCompatibilityLevel`` member for ``choice``, or a clear error on old versions."""
    if choice not in HARDWARE_COMPATIBILITY:
        raise DeployRanError(
            f"Unknown hardware compatibility {choice!r}.",
            hint=f"Choose one of: {', '.join(HARDWARE_COMPATIBILITY)}.",
        )
    member = getattr(trt.HardwareCompatibilityLevel, HARDWARE_COMPATIBILITY[choice], None)
    if member is None:
        raise DeployRanError(
            f"TensorRT {trt.__version__} has no hardware compatibility level {choice!r}.",
            hint="'same_cc' needs TensorRT 10.16 or newer; use 'ampere_plus' or upgrade.",
        )
    return member


_DTYPES = {
    "FLOAT": np.float32,
    "HALF": np.float16,
    "INT8": np.int8,
    "UINT8": np.uint8,
    "INT32": np.int32,
    "INT64": np.int64,
    "BOOL": np.bool_,
}


def numpy_dtype(trt_dtype: Any) -> np.dtype:
    """NumPy dtype of a ``tensorrt.DataType`` member (by name, so it holds across versions)."""
    name = getattr(trt_dtype, "name", str(trt_dtype).split(".")[-1])
    if name not in _DTYPES:
        raise EngineError(
            f"Engine tensor type {name} has no NumPy equivalent.",
            hint="deploy-ran engines take and return FP32 tensors; rebuild from its ONNX.",
        )
    return np.dtype(_DTYPES[name])


#: Messages a logger keeps (the newest): a runner's logger lives as long as the runner, and an
#: unbounded list would grow with every warning TensorRT logs over a long serving run.
LOGGER_KEEP = 1000


def make_logger(trt: Any, verbose: bool = False, echo=None, keep: int = LOGGER_KEEP) -> Any:
    """A ``tensorrt.ILogger`` that keeps the newest ``keep`` messages (to report parser, build
    and run errors).

    TensorRT calls a Python logger for every message whatever its severity (a custom ``ILogger``
    has no minimum severity), and a build logs tens of thousands of VERBOSE lines: unless
    ``verbose``, they are dropped on arrival, as Polygraphy's logger and trtexec do by default.
    ``error_count`` only grows (old messages are dropped, not uncounted), so "errors logged since"
    is :meth:`errors_since` of a count taken before, whatever was dropped in between.
    """
    from collections import deque

    class CapturingLogger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.messages: deque[tuple[str, str]] = deque(maxlen=keep)
            self._errors: deque[str] = deque(maxlen=keep)
            self.error_count = 0

        def log(self, severity: Any, msg: str) -> None:
            level = getattr(severity, "name", str(severity))
            if level == "VERBOSE" and not verbose:
                return
            self.messages.append((level, msg))
            if level in ("ERROR", "INTERNAL_ERROR"):
                self._errors.append(msg)
                self.error_count += 1
            if echo is not None and (verbose or level in ("ERROR", "INTERNAL_ERROR", "WARNING")):
                echo(level, msg)

        def errors(self) -> list[str]:
            return list(self._errors)

        def errors_since(self, count: int) -> list[str]:
            """Errors logged after :attr:`error_count` was ``count`` (those still kept)."""
            new = self.error_count - count
            return list(self._errors)[-new:] if new > 0 else []

    return CapturingLogger()


@dataclass(frozen=True)
class GpuInfo:
    """The CUDA device an engine is built for or runs on."""

    name: str
    compute_capability: str  # "9.0"
    index: int = 0


def current_gpu(index: int = 0) -> GpuInfo | None:
    """The visible CUDA GPU (through PyTorch's CUDA context), or ``None`` without one."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a base dependency
        return None
    if not torch.cuda.is_available():
        return None
    major, minor = torch.cuda.get_device_capability(index)
    return GpuInfo(torch.cuda.get_device_name(index), f"{major}.{minor}", index)


# --------------------------------------------------------------------------------------------
# the sidecar: what a plan is, written beside it by build-engine, read by the engine runner

SIDECAR_FORMAT = "deploy-ran engine sidecar"
SIDECAR_VERSION = 1


def sidecar_path(plan: str | Path) -> Path:
    """``ran92.int8.plan`` → ``ran92.int8.plan.json``."""
    plan = Path(plan)
    return plan.with_name(plan.name + ".json")


def read_sidecar(plan: str | Path) -> dict[str, Any] | None:
    """The sidecar of a plan, or ``None`` when it has none (an engine from another tool)."""
    path = sidecar_path(plan)
    if not path.exists():
        return None
    try:  # only a regular file: a FIFO named .plan.json would block the read
        data = json.loads(read_regular_bytes(path, "engine sidecar", max_bytes=16 << 20))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EngineError(
            f"Sidecar {path} is not valid JSON ({exc}).",
            hint="Rebuild the engine with `python cli.py build-engine`, or delete the sidecar.",
        ) from None
    if not isinstance(data, dict) or data.get("format") != SIDECAR_FORMAT:
        raise EngineError(
            f"{path} is not a deploy-ran engine sidecar.",
            hint="Rebuild the engine with `python cli.py build-engine`, or delete the file.",
        )
    problem = sidecar_problem(data)
    if problem is not None:
        raise EngineError(
            f"Sidecar {path} was edited or damaged: {problem}.",
            hint="Rebuild the engine with `python cli.py build-engine` (it rewrites the sidecar).",
        )
    return data


def _ints(value: Any) -> bool:
    return isinstance(value, list) and all(type(v) is int for v in value)


#: Field → (check, what it must be). Every reader of a sidecar indexes these without looking.
_SIDECAR_FIELDS: dict[str, tuple[Any, str]] = {
    "input": (lambda v: isinstance(v, dict), "an object"),
    "outputs": (lambda v: isinstance(v, list) and all(isinstance(o, str) for o in v), "a list of names"),
    "build_options": (lambda v: isinstance(v, dict), "an object"),
    "gpu": (lambda v: isinstance(v, dict), "an object"),
    "source_onnx": (lambda v: isinstance(v, dict), "an object"),
    "preprocessing": (lambda v: v is None or isinstance(v, dict), "an object or null"),
    "precision": (lambda v: isinstance(v, str), "a string"),
    "tensorrt_version": (lambda v: isinstance(v, str), "a string"),
    "image_size": (lambda v: v is None or type(v) is int, "an integer or null"),
    "num_classes": (lambda v: v is None or type(v) is int, "an integer or null"),
}


def sidecar_problem(data: dict[str, Any]) -> str | None:
    """What is wrong with the types in a sidecar (None: nothing): a hand-edited ``"shape":
    "3x224x224"`` must be an error that names the field, not a ``TypeError`` deep in a reader."""
    for key, (ok, want) in _SIDECAR_FIELDS.items():
        if key in data and not ok(data[key]):
            return f"{key!r} must be {want}, not {type(data[key]).__name__}"
    spec = data.get("input") or {}
    if "name" in spec and not isinstance(spec["name"], str):
        return "'input.name' must be a string"
    if "shape" in spec and not _ints(spec["shape"]):
        return "'input.shape' must be a list of integers"
    profile = spec.get("profile")
    if profile is not None:
        if not isinstance(profile, dict):
            return "'input.profile' must be an object with min/opt/max shapes"
        for key in ("min", "opt", "max"):
            if key in profile and not _ints(profile[key]):
                return f"'input.profile.{key}' must be a list of integers"
    source = data.get("source_onnx") or {}
    for key in ("path", "sha256"):
        if key in source and not isinstance(source[key], str):
            return f"'source_onnx.{key}' must be a string"
    if "metadata" in source and not isinstance(source["metadata"], dict):
        return "'source_onnx.metadata' must be an object"
    return None


#: Lowest compute capability a plan built with ``--hardware-compatibility ampere_plus`` runs on.
AMPERE_CC = (8, 0)


def _cc(text: str) -> tuple[int, int] | None:
    try:
        major, minor = (int(p) for p in str(text).split(".")[:2])
    except ValueError:
        return None
    return major, minor


def compatibility_problems(
    sidecar: dict[str, Any], trt_version: str, gpu: GpuInfo | None
) -> list[str]:
    """Why a plan described by ``sidecar`` cannot run with this TensorRT and GPU (empty: it can).

    As strict as TensorRT's own check at deserialization: a plain plan runs only on the exact
    TensorRT version that built it (major, minor, patch and build); a version-compatible plan on
    that version or a newer one. A plain plan (and a ``same_cc`` one) needs a GPU of the same
    compute capability; an ``ampere_plus`` plan any GPU of compute capability 8.0 or newer.
    """
    problems = []
    options = sidecar.get("build_options", {})
    built = str(sidecar.get("tensorrt_version", "unknown"))
    if options.get("version_compatible"):
        if full_version(trt_version) < full_version(built):
            problems.append(
                f"it was built version-compatible with TensorRT {built}, which runs on that "
                f"version or newer; this host has the older TensorRT {trt_version}"
            )
    elif full_version(built) != full_version(trt_version):
        problems.append(
            f"it was built with TensorRT {built}, this host has TensorRT {trt_version} "
            "(a plan runs only on the exact version that built it)"
        )
    built_gpu = sidecar.get("gpu", {})
    built_cc = str(built_gpu.get("compute_capability", "unknown"))
    level = options.get("hardware_compatibility", "none")
    if gpu is None:
        return problems
    here = _cc(gpu.compute_capability)
    if level == "ampere_plus":
        if here is not None and here < AMPERE_CC:
            problems.append(
                f"it was built for Ampere or newer GPUs (compute capability 8.0+), this one is "
                f"{gpu.compute_capability} ({gpu.name})"
            )
    elif built_cc != "unknown" and _cc(built_cc) != here:
        problems.append(
            f"it was built on a GPU of compute capability {built_cc} "
            f"({built_gpu.get('name', '?')}), this one is {gpu.compute_capability} ({gpu.name})"
        )
    return problems


def deserialize_engine(trt: Any, logger: Any, plan: bytes, *, version_compatible: bool) -> Any:
    """``(runtime, engine)`` for a serialized plan; ``engine`` is ``None`` when TensorRT refuses it.

    A version-compatible plan embeds the lean runtime that executes it, and TensorRT loads that
    host code only when ``Runtime.engine_host_code_allowed`` is set (trtexec sets it for
    ``--versionCompatible``, Polygraphy's ``EngineFromBytes`` before deserializing); without it
    deserialization fails. It is set only for plans built version-compatible.
    """
    runtime = trt.Runtime(logger)
    if version_compatible:
        runtime.engine_host_code_allowed = True
    return runtime, runtime.deserialize_cuda_engine(plan)
