"""Execution-provider choice and options for ONNX Runtime (CUDA and TensorRT providers).

Split from :mod:`deploy_ran.runners.ort_runner` so the session runner stays one job: this module
turns what the user asked for (short provider names, a precision, TF32 allowed or not, a TensorRT
profile) into ONNX Runtime's provider list and option strings, and checks the values it knows so
a typo fails here rather than deep inside ONNX Runtime.

**FP32 is FP32.** ONNX Runtime's CUDA provider computes FP32 convolutions and GEMMs in TF32 on
Ampere and later unless ``use_tf32`` is ``0`` (its default is on). Eager FP32 (``TorchRunner``)
and the TensorRT build (``EngineBuildOptions.allow_tf32``) keep TF32 off, so every CUDA default
here carries ``use_tf32=0``; ``allow_tf32=True`` (``--allow-tf32``) turns it on and the choice is
recorded with the row. ONNX Runtime's TensorRT provider has no such option: its engines use
TensorRT's default (TF32 allowed for FP32 layers), which its rows record as such
(``tensorrt_provider_tf32``); FP32 parity on TensorRT comes from ``build-engine`` plans, built with
TF32 off.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from deploy_ran.device import Device
from deploy_ran.onnx_graph import graph_inputs
from deploy_ran.runners.base import BackendUnavailableError, RunnerError

PROVIDER_NAMES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "dml": "DmlExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
}
GPU_PROVIDERS = {"CUDAExecutionProvider", "TensorrtExecutionProvider"}
# CUDA provider options per artifact precision (ONNX Runtime's names and string values).
# NONE of these have been measured by the toolkit yet (no GPU where they were written); what is
# known, from one H200 (onnxruntime-gpu with CUDA 13, ran92 at 224 px): the FP16 ONNX on ORT CUDA
# with ORT's defaults (EXHAUSTIVE search, max workspace on, NCHW kernels) ran 114 / 2,556 / 3,141
# images/s at batch 1 / 32 / 128, below eager PyTorch FP16 channels_last (2,234 at 32, 5,512 at
# 256), and NCHW FP16 convolutions were PyTorch's bottleneck on that GPU (456 vs 5,545 images/s).
# Hence FP16 prefers the provider's NHWC kernels; FP32 and INT8 (Q/DQ runs dequantised, in float)
# keep NCHW until a GPU measurement says otherwise. EXHAUSTIVE search and the largest workspace
# are ORT's own defaults, written out so that the results record them; replace any entry with
# the measurement that justifies it (`bench --device cuda` with `provider_options` variants).
CUDA_PROVIDER_DEFAULTS: dict[str, dict[str, str]] = {
    "fp32": {
        "prefer_nhwc": "0",
        "cudnn_conv_algo_search": "EXHAUSTIVE",
        "cudnn_conv_use_max_workspace": "1",
        "use_tf32": "0",  # ORT's default is on: FP32 would be TF32 (see the module docstring)
    },
    "fp16": {
        "prefer_nhwc": "1",
        "cudnn_conv_algo_search": "EXHAUSTIVE",
        "cudnn_conv_use_max_workspace": "1",
        "use_tf32": "0",  # ORT's default is on: FP32 would be TF32 (see the module docstring)
    },
    "int8": {
        "prefer_nhwc": "0",
        "cudnn_conv_algo_search": "EXHAUSTIVE",
        "cudnn_conv_use_max_workspace": "1",
        "use_tf32": "0",  # ORT's default is on: FP32 would be TF32 (see the module docstring)
    },
}
CUDNN_CONV_ALGO_SEARCH = ("EXHAUSTIVE", "HEURISTIC", "DEFAULT")


def cuda_provider_options(
    precision: str, given: dict[str, Any] | None = None, *, allow_tf32: bool = False
) -> dict[str, str]:
    """The CUDA provider's conv options for an artifact of ``precision``: the defaults of
    :data:`CUDA_PROVIDER_DEFAULTS` under ``given`` (the caller's own options win). TF32 stays
    off unless ``allow_tf32`` (``--allow-tf32``) or ``given`` says ``use_tf32=1``. Checks the
    values the toolkit knows, so a typo fails here rather than deep in ONNX Runtime."""
    options = dict(CUDA_PROVIDER_DEFAULTS.get(precision, CUDA_PROVIDER_DEFAULTS["fp32"]))
    if allow_tf32:
        options["use_tf32"] = "1"
    options.update({k: str(v) for k, v in (given or {}).items()})
    search = options["cudnn_conv_algo_search"]
    if search not in CUDNN_CONV_ALGO_SEARCH:
        raise RunnerError(
            f"cudnn_conv_algo_search={search!r} is not an ONNX Runtime value.",
            hint=f"Choose one of: {', '.join(CUDNN_CONV_ALGO_SEARCH)}.",
        )
    for key in ("prefer_nhwc", "cudnn_conv_use_max_workspace", "use_tf32"):
        if options[key] not in ("0", "1"):
            raise RunnerError(
                f"{key}={options[key]!r}: ONNX Runtime takes '0' or '1'.",
                hint=f"Set {key} to '1' (on) or '0' (off).",
            )
    return options


def default_threads() -> int:
    """Cores this process may use (the affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def resolve_providers(
    providers: str | list[str] | tuple[str, ...] | None, device: str | Device
) -> list[str]:
    """Short or full provider names → ONNX Runtime names, checked against this installation.

    The CPU provider is appended as the fallback for operators a GPU provider does not take.
    """
    import onnxruntime as ort

    if providers is None:
        providers = ["cuda"] if Device.parse(device).is_cuda else ["cpu"]
    if isinstance(providers, str):
        providers = [p for p in providers.split(",") if p.strip()]
    available = ort.get_available_providers()
    full = []
    for p in providers:
        name = PROVIDER_NAMES.get(p.strip().lower(), p.strip())
        if name not in available:
            known = ", ".join(f"{k} ({v})" for k, v in PROVIDER_NAMES.items() if v in available)
            hint = f"Available here: {known or ', '.join(available)}."
            if name in GPU_PROVIDERS:
                hint += (
                    " GPU providers need the onnxruntime-gpu package (pip install -e '.[gpu]') "
                    "with matching CUDA/cuDNN (and TensorRT for the TensorRT provider) on a GPU "
                    "machine."
                )
            raise BackendUnavailableError(
                f"ONNX Runtime execution provider {p.strip()!r} ({name}) is not available in "
                f"this installation (onnxruntime {ort.__version__}).",
                hint=hint,
            )
        if name not in full:
            full.append(name)
    if (
        "TensorrtExecutionProvider" in full
        and "CUDAExecutionProvider" not in full
        and "CUDAExecutionProvider" in available
    ):
        # Nodes TensorRT rejects go to CUDA, not the CPU (ONNX Runtime's documented order).
        full.insert(full.index("TensorrtExecutionProvider") + 1, "CUDAExecutionProvider")
    if "CPUExecutionProvider" not in full:
        full.append("CPUExecutionProvider")
    return full


#: Batch sizes of the TensorRT provider's optimisation profile (min, opt, max), as build-engine's.
DEFAULT_TRT_PROFILE = (1, 8, 32)


def default_trt_cache_dir(path: str | Path) -> Path:
    """``ran92.onnx`` → ``ran92.onnx.ort-trt-cache/`` (engines and timing cache of the provider)."""
    path = Path(path)
    return path.with_name(path.name + ".ort-trt-cache")


def tensorrt_provider_options(
    proto: Any,
    *,
    device_id: int,
    stream_handle: int | None,
    precision: str,
    cuda_graph: bool,
    cache_dir: Path,
    profile_batches: tuple[int, int, int] = DEFAULT_TRT_PROFILE,
) -> dict[str, str]:
    """Options of ONNX Runtime's TensorRT provider for one of the toolkit's ONNX files.

    Explicit min/opt/max shapes for every dynamic-batch input (one engine for the whole batch
    range), the engine and timing caches in ``cache_dir``, the runner's stream, and the precision
    flags the provider's weakly typed build needs to honour an FP16 or Q/DQ ONNX.
    """
    lo, opt, hi = profile_batches
    if not 1 <= lo <= opt <= hi:
        raise RunnerError(
            f"TensorRT provider profile {lo}/{opt}/{hi} is not ordered.",
            hint="Use 1 <= min <= opt <= max batch.",
        )
    options = {
        "device_id": str(device_id),
        "trt_engine_cache_enable": "True",
        "trt_engine_cache_path": str(cache_dir),
        "trt_timing_cache_enable": "True",
        "trt_timing_cache_path": str(cache_dir),
    }
    if stream_handle is not None:
        options["user_compute_stream"] = str(stream_handle)
    shapes: dict[str, list[str]] = {"min": [], "opt": [], "max": []}
    for inp in graph_inputs(proto):
        dims = [
            d.dim_value if d.HasField("dim_value") else None for d in inp.type.tensor_type.shape.dim
        ]
        if not dims or dims[0] is not None:
            continue  # a static shape needs no profile
        if any(d is None for d in dims[1:]):
            raise RunnerError(
                f"Input {inp.name} has dynamic dimensions besides the batch; the TensorRT "
                "provider needs a profile the toolkit cannot choose.",
                hint="Export with a fixed image size (every deploy-ran export has one).",
            )
        for key, batch in (("min", lo), ("opt", opt), ("max", hi)):
            shapes[key].append(f"{inp.name}:" + "x".join(str(d) for d in [batch, *dims[1:]]))
    if shapes["min"]:
        for key in ("min", "opt", "max"):
            options[f"trt_profile_{key}_shapes"] = ",".join(shapes[key])
    # Precision is explicit in the ONNX (FP16 tensors, Q/DQ); these flags only let the
    # provider's (weakly typed) TensorRT build honour it.
    if precision == "fp16":
        options["trt_fp16_enable"] = "True"
    if precision == "int8":
        options["trt_int8_enable"] = "True"
    if cuda_graph:
        options["trt_cuda_graph_enable"] = "True"
    return options
