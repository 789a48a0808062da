"""Activation ranges from calibration data, with ONNX Runtime's calibrators, and their cache.

The measuring is ONNX Runtime's (``onnxruntime.quantization.calibrate``): ``MinMaxCalibrater``,
``PercentileCalibrater`` and the histogram collection behind them. For ``entropy`` the histograms
of ``|x|`` come from ONNX Runtime and the threshold search is TensorRT's
(:mod:`calibration.entropy`, which says why). This module only drives them: it picks the tensors (every activation any
Q/DQ placement may need, so one run serves every ``--exclude`` choice), feeds the data one batch
at a time (histograms are merged as they come, so memory stays flat), reports progress, and runs
the per-tensor threshold search with a progress callback instead of one silent call.

Ranges are cached as JSON next to the INT8 output. The key is a hash of the source ONNX file, the
calibration data (file list or array hash, subset, seed), the preprocessing and the method with
its parameters. A matching cache is reused; a stale one is recomputed and the reason is given.

``device="cuda"`` (or ``"cuda:N"``) runs the augmented model on ONNX Runtime's CUDA provider: the
forward passes are most of the calibration time (minutes for ran92 at 224 px on two CPU cores).
The CUDA provider computes FP32 convolutions in TF32 unless told not to, which moves activations
(and so ranges) by ~1e-3 relative, so calibration on CUDA passes ``use_tf32=0`` unless
``allow_tf32``; and the device with its arithmetic (:func:`device_key`) is part of the cache key,
so a cache measured on the CPU is not silently reused for a CUDA run in TF32 or the other way.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from calibration.defaults import DEFAULT_BINS, DEFAULT_METHOD, DEFAULT_PERCENTILE  # noqa: F401
from calibration.entropy import FLOOR_PERCENTILE, QUANTIZED_BINS, entropy_threshold
from deploy_ran.device import Device
from deploy_ran.errors import DeployRanError
from deploy_ran.fileio import atomic_write_text, temp_dir

METHODS = ("entropy", "minmax", "percentile")
CACHE_VERSION = 2  # 2: the device and its arithmetic joined the key

Progress = Callable[[str, int, int], None]  # (phase, done, total)


class CalibrationError(DeployRanError):
    """Calibration that cannot run or produced unusable ranges."""


@dataclass(frozen=True)
class MethodConfig:
    """The calibration method and every parameter that changes its result."""

    method: str = DEFAULT_METHOD
    percentile: float = DEFAULT_PERCENTILE
    bins: int | None = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise CalibrationError(
                f"Unknown calibration method {self.method!r}.",
                hint=f"Choose one of: {', '.join(METHODS)}.",
            )
        if self.method == "percentile" and not 50.0 < self.percentile <= 100.0:
            raise CalibrationError(
                f"--percentile must be in (50, 100], got {self.percentile}.",
                hint="Typical values are 99.9 to 99.999.",
            )
        if self.bins is not None and self.bins < 2 * QUANTIZED_BINS:
            raise CalibrationError(
                f"--bins must be at least {2 * QUANTIZED_BINS}, got {self.bins}."
            )

    @property
    def num_bins(self) -> int | None:
        if self.method == "minmax":
            return None
        return self.bins or DEFAULT_BINS[self.method]

    def key(self) -> dict[str, Any]:
        """The parameters that change the result (and only those)."""
        out: dict[str, Any] = {"method": self.method}
        if self.method != "minmax":
            out["bins"] = self.num_bins
        if self.method == "percentile":
            out["percentile"] = self.percentile
        if self.method == "entropy":
            out["quantized_bins"] = QUANTIZED_BINS
            out["search"] = "tensorrt-kl-abs"  # caches of ONNX Runtime's search are stale
            out["floor_percentile"] = FLOOR_PERCENTILE
        return out

    def label(self) -> str:
        if self.method == "percentile":
            return f"percentile {self.percentile:g}"
        return self.method


@dataclass
class Ranges:
    """Per-tensor activation ranges and how they were made."""

    ranges: dict[str, tuple[float, float]]
    method: MethodConfig
    key: str
    key_parts: dict[str, Any]
    num_images: int
    seconds: float
    from_cache: bool = False
    cache_path: Path | None = None
    cache_note: str = ""  # "reused ..." or "recomputed: ..." for the user
    onnxruntime_version: str = ""
    phases: dict[str, float] = field(default_factory=dict)  # seconds: "collect", "ranges"

    def to_json(self) -> dict[str, Any]:
        return {
            "format": "deploy-ran calibration cache",
            "version": CACHE_VERSION,
            "key": self.key,
            "key_parts": self.key_parts,
            "method": asdict(self.method),
            "num_images": self.num_images,
            "seconds": self.seconds,
            "onnxruntime_version": self.onnxruntime_version,
            "ranges": {k: [float(lo), float(hi)] for k, (lo, hi) in sorted(self.ranges.items())},
        }


@dataclass
class CacheStatus:
    """Whether a cache file can be reused, and if not, why."""

    usable: bool
    reason: str
    data: dict[str, Any] = field(default_factory=dict)


def device_key(device: str | Device = "cpu", allow_tf32: bool = False) -> str:
    """Where the ranges are measured and in which arithmetic: ``cpu (fp32)``,
    ``cuda (fp32, use_tf32=0)`` or ``cuda (tf32)``. The device index is left out: two GPUs of one
    host compute alike; the arithmetic is what changes the activations."""
    if not Device.parse(device).is_cuda:
        return "cpu (fp32)"
    return "cuda (tf32)" if allow_tf32 else "cuda (fp32, use_tf32=0)"


def cache_key(
    onnx_sha256: str,
    data_fingerprint: str,
    preprocessing: dict,
    method: MethodConfig,
    device: str = "cpu (fp32)",
) -> tuple[str, dict[str, Any]]:
    """The cache key and the parts it hashes (kept in the file to explain a mismatch).
    ``device``: :func:`device_key` of the run."""
    parts = {
        "onnx_sha256": onnx_sha256,
        "data": data_fingerprint,
        "preprocessing": hashlib.sha256(
            json.dumps(preprocessing, sort_keys=True).encode()
        ).hexdigest(),
        "method": method.key(),
        "device": device,
        "cache_version": CACHE_VERSION,
    }
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
    return digest, parts


_PART_NAMES = {
    "onnx_sha256": "the source ONNX file changed",
    "data": "the calibration data changed (files, subset, --num-images or seed)",
    "preprocessing": "the preprocessing changed",
    "method": "the calibration method or its parameters changed",
    "device": "the calibration device or its arithmetic (TF32 or FP32) changed",
    "cache_version": "the cache format changed",
}


def check_cache(path: Path, key: str, parts: dict[str, Any], needed: Sequence[str]) -> CacheStatus:
    """Read the cache at ``path`` and say whether it serves ``key`` for the ``needed`` tensors."""
    if not path.exists():
        return CacheStatus(False, "no cache yet")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        stored_key = data["key"]
        stored_parts = data.get("key_parts", {})
        ranges = data["ranges"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return CacheStatus(False, f"the cache file is unreadable ({type(exc).__name__})")
    if stored_key != key:
        changed = [_PART_NAMES.get(k, k) for k in parts if stored_parts.get(k) != parts[k]]
        return CacheStatus(False, "; ".join(changed) or "its key differs")
    missing = [t for t in needed if t not in ranges]
    if missing:
        return CacheStatus(False, f"it lacks {len(missing)} tensor range(s), e.g. {missing[0]}")
    return CacheStatus(True, "key matches", data)


def calibration_providers(device: str | Device, allow_tf32: bool = False) -> list[Any]:
    """ONNX Runtime providers for ``device`` (``cpu``, ``cuda``, ``cuda:N``), checked.

    A missing CUDA provider is an error, not a silent run on the CPU: the user asked for the GPU.
    On CUDA, ``use_tf32`` is ``0`` unless ``allow_tf32``: FP32 ranges from FP32 arithmetic.
    """
    import onnxruntime

    parsed = Device.parse(device)
    if not parsed.is_cuda:
        return ["CPUExecutionProvider"]
    available = onnxruntime.get_available_providers()
    if "CUDAExecutionProvider" not in available:
        raise CalibrationError(
            f"Calibration on {device} needs ONNX Runtime's CUDA provider; this onnxruntime "
            f"{onnxruntime.__version__} has {', '.join(available)}.",
            hint="On a GPU host: pip install -e '.[gpu]' (onnxruntime-gpu), or calibrate with "
            "--device cpu.",
        )
    cuda = {"device_id": str(parsed.index or 0), "use_tf32": "1" if allow_tf32 else "0"}
    return [("CUDAExecutionProvider", cuda), "CPUExecutionProvider"]


def _ort_calibrator(
    method: MethodConfig,
    model_path: Path,
    tensors: Sequence[str],
    tmp: Path,
    providers: list[Any] | None = None,
):
    """An ONNX Runtime calibrator that measures exactly ``tensors``."""
    from onnxruntime.quantization.calibrate import MinMaxCalibrater, PercentileCalibrater

    wanted = set(tensors)
    base, kwargs = {
        "minmax": (MinMaxCalibrater, {"symmetric": False}),
        # Percentile's collector histograms |x|, which is what TensorRT's entropy search reads.
        "entropy": (PercentileCalibrater, {"symmetric": True, "num_bins": method.num_bins}),
        "percentile": (
            PercentileCalibrater,
            {"symmetric": True, "num_bins": method.num_bins, "percentile": method.percentile},
        ),
    }[method.method]

    class Selected(base):  # type: ignore[misc, valid-type]
        def select_tensors_to_calibrate(self, model):  # noqa: D102 - narrows ORT's choice
            found, value_infos = super().select_tensors_to_calibrate(model)
            return {t for t in wanted if t in value_infos}, value_infos

    calibrator = Selected(
        model_path,
        op_types_to_calibrate=None,
        augmented_model_path=str(tmp / "augmented.onnx"),
        **kwargs,
    )
    calibrator.augment_graph()
    if providers is not None:
        calibrator.execution_providers = providers  # read by create_inference_session
    calibrator.create_inference_session()
    wanted_first = providers[0] if providers else "CPUExecutionProvider"
    wanted_first = wanted_first[0] if isinstance(wanted_first, tuple) else wanted_first
    got = calibrator.infer_session.get_providers()
    if got[0] != wanted_first:  # ONNX Runtime falls back silently when CUDA fails to load
        raise CalibrationError(
            f"ONNX Runtime fell back from {wanted_first} to {got[0]} for calibration (CUDA or "
            "cuDNN libraries failed to load).",
            hint="Run `python cli.py doctor`, or calibrate with --device cpu.",
        )
    return calibrator


class _OneBatch:
    """ONNX Runtime's CalibrationDataReader protocol for a single batch."""

    def __init__(self, input_name: str, batch: np.ndarray) -> None:
        self._items = [{input_name: batch}]

    def get_next(self):
        return self._items.pop() if self._items else None


@contextlib.contextmanager
def _quiet_ort():
    """ORT's calibrators print to stdout and log warnings; the toolkit reports progress itself."""
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logger.setLevel(level)


def compute_ranges(
    model_path: str | Path,
    batches: Sequence[np.ndarray],
    tensors: Sequence[str],
    method: MethodConfig,
    *,
    input_name: str = "input",
    progress: Progress | None = None,
    timings: dict[str, float] | None = None,
    device: str = "cpu",
    allow_tf32: bool = False,
) -> dict[str, tuple[float, float]]:
    """Run the calibration data through the model and return ``{tensor: (low, high)}``.

    ``timings`` (optional) receives the seconds spent collecting and computing the ranges.
    ``device``: ``cpu``, or ``cuda`` / ``cuda:N`` for ONNX Runtime's CUDA provider (TF32 only
    with ``allow_tf32``).
    """
    import onnxruntime

    providers = calibration_providers(device, allow_tf32)
    say = progress or (lambda _p, _d, _t: None)
    timings = timings if timings is not None else {}
    started = time.perf_counter()
    total = sum(len(b) for b in batches)
    with temp_dir("deploy-ran-calib-") as tmp, _quiet_ort():
        try:
            calibrator = _ort_calibrator(method, Path(model_path), tensors, Path(tmp), providers)
        except onnxruntime.capi.onnxruntime_pybind11_state.Fail as exc:  # pragma: no cover
            raise CalibrationError(f"ONNX Runtime could not load the model: {exc}") from None
        done = 0
        say("collect", 0, total)
        for batch in batches:
            calibrator.collect_data(_OneBatch(input_name, np.ascontiguousarray(batch)))
            done += len(batch)
            say("collect", done, total)
        timings["collect"] = time.perf_counter() - started
        if method.method == "entropy":
            histograms = calibrator.collector.histogram_dict
            result = {}
            for k, (name, (hist, edges, *_)) in enumerate(histograms.items()):
                amax = entropy_threshold(hist, edges)
                result[name] = (-amax, amax)
                say("thresholds", k + 1, len(histograms))
        else:
            data = calibrator.compute_data()
            result = {name: data[name].range_value for name in data}
        timings["ranges"] = time.perf_counter() - started - timings["collect"]
    ranges = {}
    for name in tensors:
        if name not in result:
            raise CalibrationError(
                f"ONNX Runtime returned no range for tensor {name!r}.",
                hint="Is the file a toolkit export? Re-export it with `python cli.py export`.",
            )
        lo, hi = (float(np.asarray(v).reshape(-1)[0]) for v in result[name][:2])
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise CalibrationError(
                f"Calibration measured a non-finite range for {name!r} ({lo}, {hi}).",
                hint="The calibration data holds NaN/inf values or overflows the model.",
            )
        ranges[name] = (lo, hi)
    return ranges


def calibrate_ranges(
    model_path: str | Path,
    onnx_sha256: str,
    data_fingerprint: str,
    preprocessing: dict,
    load_batches: Callable[[], tuple[Sequence[np.ndarray], int]],
    tensors: Sequence[str],
    method: MethodConfig,
    *,
    cache_path: str | Path | None = None,
    input_name: str = "input",
    progress: Progress | None = None,
    device: str = "cpu",
    allow_tf32: bool = False,
) -> Ranges:
    """Ranges from the cache when it matches, otherwise measured (and cached atomically).

    ``load_batches`` is only called on a cache miss: it returns the batches and the image count.
    """
    import onnxruntime

    key, parts = cache_key(
        onnx_sha256, data_fingerprint, preprocessing, method, device_key(device, allow_tf32)
    )
    cache = Path(cache_path) if cache_path else None
    note = "no cache requested"
    if cache is not None:
        status = check_cache(cache, key, parts, tensors)
        if status.usable:
            data = status.data
            return Ranges(
                ranges={k: (float(v[0]), float(v[1])) for k, v in data["ranges"].items()},
                method=method,
                key=key,
                key_parts=parts,
                num_images=int(data.get("num_images", 0)),
                seconds=float(data.get("seconds", 0.0)),
                from_cache=True,
                cache_path=cache,
                cache_note=f"reused calibration cache {cache} ({status.reason})",
                onnxruntime_version=str(data.get("onnxruntime_version", "")),
            )
        note = (
            f"no calibration cache at {cache}; calibrating"
            if status.reason == "no cache yet"
            else f"recomputing calibration cache {cache}: {status.reason}"
        )
    started = time.perf_counter()
    batches, count = load_batches()
    phases: dict[str, float] = {}
    measured = compute_ranges(
        model_path,
        batches,
        tensors,
        method,
        input_name=input_name,
        progress=progress,
        timings=phases,
        device=device,
        allow_tf32=allow_tf32,
    )
    result = Ranges(
        ranges=measured,
        method=method,
        key=key,
        key_parts=parts,
        num_images=count,
        seconds=time.perf_counter() - started,
        from_cache=False,
        cache_path=cache,
        cache_note=note,
        onnxruntime_version=onnxruntime.__version__,
        phases=phases,
    )
    if cache is not None:
        atomic_write_text(cache, json.dumps(result.to_json(), indent=1) + "\n")
    return result
