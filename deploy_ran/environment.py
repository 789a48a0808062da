"""The software and hardware a result was produced on.

``doctor`` prints it; benchmarks store it next to their numbers so that two results can be compared
(or not) knowingly. Optional packages are probed, never required: a missing TensorRT is a fact to
report, not an error.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import platform
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any


def cpu_model() -> str:
    """Human-readable CPU model name (from /proc/cpuinfo on Linux)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return re.sub(r"\s+", " ", line.split(":", 1)[1]).strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def tensorrt_status() -> str:
    """TensorRT's version when importable, else why not (missing, or native libraries absent)."""
    try:
        trt = importlib.import_module("tensorrt")
    except ImportError as exc:
        return f"not importable ({exc})"
    except OSError as exc:  # bindings present but libnvinfer missing
        return f"bindings present, native libraries missing ({exc})"
    return getattr(trt, "__version__", "unknown version")


@lru_cache(maxsize=1)
def collect_environment() -> dict[str, object]:
    """Versions and devices, as a flat dict of strings (and a few lists)."""
    import numpy
    import onnx
    import onnxruntime
    import torch

    env: dict[str, object] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": str(os.cpu_count()),
        "torch": torch.__version__,
        "torch_threads": str(torch.get_num_threads()),
        "cuda_available": str(torch.cuda.is_available()),
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "onnxruntime_providers": onnxruntime.get_available_providers(),
        "onnxscript": _version("onnxscript"),
        "onnxslim": _version("onnxslim"),
        "numpy": numpy.__version__,
        "tensorrt": tensorrt_status(),
        "cuda-python": _version("cuda-python"),
    }
    if torch.cuda.is_available():
        env["cuda"] = str(torch.version.cuda)
        env["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        major, minor = torch.cuda.get_device_capability(0)
        env["compute_capability"] = f"{major}.{minor}"
    return env


def _slug(text: str) -> str:
    text = re.sub(r"\((R|TM|tm|r)\)", "", text)
    text = re.sub(r"\b(CPU|Processor|with Radeon Graphics)\b", "", text)
    text = text.replace("@", " ").replace("+", "-")
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-.").lower()


def environment_tag(env: Mapping[str, Any]) -> str:
    """CPU model, GPU (or ``nogpu``) and library versions of :func:`collect_environment`'s
    result as one file-name-safe string, so that a result's file name says where it was measured."""
    gpus = env.get("gpus") or []
    parts = [
        _slug(str(env.get("cpu", "cpu"))),
        _slug(str(gpus[0])) if gpus else "nogpu",
        "torch" + _slug(str(env.get("torch", "unknown"))),
        "ort" + _slug(str(env.get("onnxruntime", "unknown"))),
    ]
    trt = str(env.get("tensorrt", ""))
    if trt and re.match(r"^\d", trt):
        parts.append("trt" + _slug(trt))
    return "_".join(p for p in parts if p)


def diagnose(env: Mapping[str, Any]) -> dict[str, Any]:
    """``doctor``'s verdict on an environment: what works here, and the next step for what does not.

    Returns ``{"verdict": one sentence, "works": [...], "next_steps": [...]}``; read from
    :func:`collect_environment`'s dict, so it can be checked on any recorded environment.
    """
    providers = set(env.get("onnxruntime_providers") or ())
    cuda = str(env.get("cuda_available")) == "True"
    trt_version = str(env.get("tensorrt", ""))
    trt_ok = bool(trt_version) and not trt_version.startswith(("not ", "bindings present"))
    works = ["export, FP16 and INT8 Q/DQ ONNX, verify, evaluate, bench, infer on the CPU"]
    steps: list[str] = []
    if env.get("onnxslim") == "not installed":
        steps.append("pip install onnxslim (export simplifies graphs with it)")
    if cuda:
        works.append("PyTorch on the GPU")
        if "CUDAExecutionProvider" in providers:
            works.append("ONNX Runtime on the GPU")
        else:
            steps.append('pip install -e ".[gpu]" (onnxruntime-gpu: ONNX Runtime on the GPU)')
        if trt_ok:
            works.append(f"TensorRT {trt_version} engine builds")
        else:
            steps.append('pip install -e ".[gpu]" (TensorRT bindings: engine builds)')
    else:
        steps.append(
            "build engines on a GPU host: build-engine here writes the precision ONNX and exits 3 "
            "with the command that finishes on the GPU host"
        )
    if cuda and trt_ok and "CUDAExecutionProvider" in providers:
        verdict = "Ready for everything, TensorRT engines included."
    elif cuda:
        verdict = "GPU found; some GPU backends are missing (see the next steps)."
    else:
        verdict = "Ready for the CPU path; no GPU here, so no TensorRT engines or GPU timings."
    return {"verdict": verdict, "works": works, "next_steps": steps}
