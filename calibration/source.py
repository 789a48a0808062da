"""The FP32 file to calibrate, its calibration data and its activation ranges.

The first steps of :func:`calibration.quantize.quantize_int8`: read and check the file once
(:func:`load_source`), measure the ranges or read them from the cache, loading the images only when
needed (:func:`measure_ranges`), and pick the images the INT8 file is compared with FP32 on
(:func:`comparison_images`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx

from calibration.data import (
    BUILTIN_NOTE,
    RECOMMENDED_MIN_IMAGES,
    SYNTHETIC_NOTE,
    CalibrationData,
    plan_calibration_data,
)
from calibration.placement import GraphIndex, calibration_tensors
from calibration.ranges import MethodConfig, Ranges, calibrate_ranges
from deploy_ran.artifacts import ArtifactInfo, get_metadata, load_onnx
from deploy_ran.errors import DeployRanError
from deploy_ran.fileio import sha256_file
from deploy_ran.onnx_graph import graph_inputs
from exporters.fp16 import require_fp32

Progress = Callable[[str, int, int], None]  # (phase, done, total)


def _input_spec(model: onnx.ModelProto, path: Path) -> tuple[str, tuple[int, int, int], bool]:
    graph_input = graph_inputs(model)[0]
    dims = graph_input.type.tensor_type.shape.dim
    values = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    if len(values) != 4 or any(v is None for v in values[1:]):
        raise DeployRanError(
            f"{path} does not take one NCHW image input with static C, H, W (input shape {values}).",
            hint="Calibrate a file written by `python cli.py export NAME`.",
        )
    return graph_input.name, (values[1], values[2], values[3]), values[0] is not None


def _preprocessing(info: ArtifactInfo, shape: tuple[int, int, int]) -> tuple[dict, list[str]]:
    """The file's own preprocessing; ImageNet defaults (with a warning) for foreign files."""
    if info.preprocessing:
        return dict(info.preprocessing), []
    size = shape[1]
    fallback = {
        "resize_size": round(size * 256 / 224),
        "crop_size": size,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "interpolation": "bilinear",
        "channel_order": "RGB",
        "layout": "NCHW",
        "scale": "1/255",
    }
    return fallback, [
        "The ONNX file carries no preprocessing metadata; images are preprocessed with ImageNet "
        "defaults (resize 256/224, centre crop, ImageNet mean/std). Export with deploy-ran to avoid "
        "this, or pass a preprocessed .npy."
    ]


@dataclass
class Source:
    """The FP32 file to quantize and what was read from it once."""

    path: Path
    model: onnx.ModelProto
    info: ArtifactInfo
    input_name: str
    static_batch: bool
    batch: int
    preprocessing: dict
    warnings: list[str]
    plan_data: Any  # calibration.data plan: fingerprint + load()
    index: GraphIndex
    tensors: list[str]
    sha256: str
    data: str | Path | None
    num_images: int
    seed: int
    input_shape: tuple[int, int, int]
    loaded: dict[str, CalibrationData] = field(default_factory=dict)


def load_source(
    source: Path, data: str | Path | None, num_images: int, seed: int, batch: int
) -> Source:
    """Read and check the FP32 file; plan (not load) the calibration data."""
    model = load_onnx(source)
    require_fp32(model, source, "INT8 calibration")
    input_name, input_shape, static_batch = _input_spec(model, source)
    if static_batch:  # a fixed-batch graph only takes batches of exactly that size
        batch = graph_inputs(model)[0].type.tensor_type.shape.dim[0].dim_value
    info = ArtifactInfo.from_props(get_metadata(model))
    preprocessing, warnings = _preprocessing(info, input_shape)
    plan_data = plan_calibration_data(
        data, input_shape=input_shape, preprocessing=preprocessing, num_images=num_images, seed=seed
    )
    index = GraphIndex(model)
    tensors = calibration_tensors(index)
    if not tensors:
        raise DeployRanError(
            f"{source} has no Conv/Gemm with constant weights to quantize.",
            hint="INT8 Q/DQ here targets convolutional networks exported by deploy-ran.",
        )
    return Source(
        source, model, info, input_name, static_batch, batch, preprocessing, warnings,
        plan_data, index, tensors, sha256_file(source), data, num_images, seed, input_shape,
    )  # fmt: skip


def measure_ranges(
    src: Source,
    method_cfg: MethodConfig,
    cache: Path | None,
    device: str,
    say: Progress,
    timings: dict[str, float],
    allow_tf32: bool = False,
) -> Ranges:
    """Activation ranges from ONNX Runtime's calibrator, or from the cache (data loaded lazily)."""

    def load_all() -> CalibrationData:
        if "all" not in src.loaded:
            t0 = time.perf_counter()
            src.loaded["all"] = src.plan_data.load(lambda d, t: say("load", d, t))
            timings["load"] = time.perf_counter() - t0
        return src.loaded["all"]

    def load_batches():
        cal = load_all()
        batches = list(cal.batches(src.batch))
        if src.static_batch and len(batches[-1]) != src.batch:
            batches = batches[:-1]
            if not batches:
                raise DeployRanError(
                    f"The model has a fixed batch of {src.batch} but only {len(cal)} calibration "
                    "image(s) were found.",
                    hint="Give more images, or export with a dynamic batch (the default).",
                )
        return batches, sum(len(b) for b in batches)

    t0 = time.perf_counter()
    ranges = calibrate_ranges(
        src.path,
        src.sha256,
        src.plan_data.fingerprint,
        src.preprocessing,
        load_batches,
        src.tensors,
        method_cfg,
        cache_path=cache,
        input_name=src.input_name,
        progress=say,
        device=device,
        allow_tf32=allow_tf32,
    )
    timings["calibrate"] = time.perf_counter() - t0 - timings.get("load", 0.0)
    for phase, seconds in ranges.phases.items():  # "collect" (run + histograms), "ranges"
        timings[f"calibrate.{phase}"] = seconds
    return ranges


def comparison_images(
    src: Source,
    ranges: Ranges,
    eval_images: int,
    say: Progress,
    timings: dict[str, float],
    warnings: list[str],
):
    """Images for the comparison with FP32 (the first of the seeded subset) and the data report.

    On a cache hit only those images are decoded."""
    if "all" in src.loaded:
        cal = src.loaded["all"]
        eval_set = cal.images[: min(eval_images, len(cal))]
        data_report = cal.describe()
        warnings += cal.warnings
    else:
        small = plan_calibration_data(
            src.data,
            input_shape=src.input_shape,
            preprocessing=src.preprocessing,
            num_images=min(eval_images, src.num_images),
            seed=src.seed,
        )
        t1 = time.perf_counter()
        cal = small.load(lambda d, t: say("load", d, t))
        timings["load"] = time.perf_counter() - t1
        eval_set = cal.images
        data_report = {
            **cal.describe(),
            "fingerprint": src.plan_data.fingerprint,
            "loaded": False,
            "num_images": ranges.num_images,
        }
        # The small load's own count warnings describe the comparison set, not the calibration.
        warnings += [w for w in cal.warnings if w in (BUILTIN_NOTE, SYNTHETIC_NOTE)]
        if ranges.num_images < RECOMMENDED_MIN_IMAGES:
            warnings.append(
                f"The cached ranges were calibrated on {ranges.num_images} images; NVIDIA "
                f"recommends at least {RECOMMENDED_MIN_IMAGES} for INT8 (num_images)."
            )
    if src.static_batch:
        eval_set = eval_set[: (len(eval_set) // src.batch) * src.batch]
    return eval_set, data_report
