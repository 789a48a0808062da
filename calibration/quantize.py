"""FP32 ONNX + calibration data → INT8 Q/DQ ONNX: the library front door of ``calibrate``.

``quantize_int8`` ties the pieces together and is what the CLI, the demo pipeline and the engine
builder call:

1. check the inputs and the output paths before any long work (an FP16 or already quantized file is
   refused; an unwritable output fails at once);
2. plan the calibration data (:mod:`calibration.data`) and key the range cache on it;
3. measure activation ranges with ONNX Runtime's calibrator, or reuse the cache
   (:mod:`calibration.ranges`);
4. optionally measure per-group sensitivity and pick groups to keep in FP32
   (:mod:`calibration.sensitivity`);
5. write Q/DQ with ONNX Runtime's quantizer where TensorRT fuses them (:mod:`calibration.placement`,
   :mod:`calibration.qdq`), re-run the static-graph checks and ``onnx.checker``, and compare the
   INT8 file with FP32 in ONNX Runtime on the first calibration images;
6. write the model (and the cache, and the sensitivity JSON) atomically, with the calibration
   facts in the ONNX metadata.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
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
from calibration.defaults import (
    DEFAULT_BATCH,
    DEFAULT_DEVICE,
    DEFAULT_EVAL_IMAGES,
    DEFAULT_FLOAT_PRECISION,
    DEFAULT_METHOD,
    DEFAULT_NUM_IMAGES,
    DEFAULT_PERCENTILE,
    DEFAULT_SEED,
    DEFAULT_TARGET_AGREEMENT,
)
from calibration.evaluate import OutputAgreement, RunModel, agreement, judge, require_runner
from calibration.placement import GraphIndex, QuantPlan, calibration_tensors, plan_quantization
from calibration.qdq import build_qdq_model, count_qdq, with_fp16_float_part
from calibration.ranges import (
    MethodConfig,
    Ranges,
    calibrate_ranges,
)
from calibration.sensitivity import SensitivityReport, analyze_sensitivity
from deploy_ran.artifacts import ArtifactInfo, get_metadata, load_onnx, set_metadata
from deploy_ran.errors import AccuracyError, DeployRanError, ExportError
from deploy_ran.fileio import (
    atomic_write_bytes,
    atomic_write_text,
    check_writable,
    derived_output,
    json_text,
    sha256_file,
)
from deploy_ran.onnx_graph import graph_inputs
from exporters.fp16 import require_fp32
from exporters.graph_checks import require_valid_graph

AUTO = "auto"
#: What the non-quantized part of a Q/DQ file is computed in (see calibration.qdq.with_fp16_float_part).
FLOAT_PRECISIONS = ("fp32", "fp16")

Progress = Callable[[str, int, int], None]  # (phase, done, total)


@dataclass
class QuantizeResult:
    """What :func:`quantize_int8` wrote and measured."""

    path: Path
    source: Path
    cache_path: Path | None
    method: MethodConfig
    ranges: Ranges
    data: dict[str, Any]  # CalibrationData.describe() (plus "loaded": False on a cache hit)
    plan: QuantPlan
    qdq: dict[str, int]
    agreement: list[OutputAgreement]
    eval_images: int
    seconds: dict[str, float]
    warnings: list[str] = field(default_factory=list)
    sensitivity: SensitivityReport | None = None
    sensitivity_path: Path | None = None
    size_bytes: int = 0
    source_size_bytes: int = 0
    float_precision: str = "fp32"
    #: verify's INT8 criteria on the comparison images (Comparison.as_dict()), None if unchecked.
    verdict: dict[str, Any] | None = None
    #: How run_model evaluated Q/DQ (e.g. fake-quantization in float, as TensorRT), if it says.
    arithmetic: str | None = None

    @property
    def passed(self) -> bool | None:
        """Whether the file meets verify's INT8 criteria on the comparison images."""
        return None if self.verdict is None else bool(self.verdict["passed"])

    @property
    def top1(self) -> float | None:
        return self.agreement[0].top1 if self.agreement else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "output": str(self.path),
            "source": str(self.source),
            "cache": str(self.cache_path) if self.cache_path else None,
            "cache_note": self.ranges.cache_note,
            "from_cache": self.ranges.from_cache,
            "method": self.method.key(),
            "data": self.data,
            "calibration_images": self.ranges.num_images,
            "calibrated_tensors": len(self.ranges.ranges),
            "quantized_weight_nodes": len(self.plan.weight_nodes),
            "quantized_activations": len(self.plan.activation_tensors),
            "kept_float": [
                {"node": n, "op": op, "reason": why} for n, op, why in self.plan.kept_float
            ],
            "excluded_groups": self.plan.excluded_groups,
            "qdq": self.qdq,
            "eval_images": self.eval_images,
            "float_precision": self.float_precision,
            "evaluation_arithmetic": self.arithmetic,
            "agreement_vs_fp32": [a.as_dict() for a in self.agreement],
            "criteria": self.verdict,
            "seconds": self.seconds,
            "warnings": self.warnings,
            "sensitivity": self.sensitivity.as_dict() if self.sensitivity else None,
            "size_bytes": self.size_bytes,
            "source_size_bytes": self.source_size_bytes,
        }


def default_int8_path(source: str | Path) -> Path:
    """``ran92.onnx`` → ``ran92.int8.onnx``."""
    source = Path(source)
    return source.with_name(f"{source.stem}.int8.onnx")


def cache_path_for(output: str | Path) -> Path:
    """``ran92.int8.onnx`` → ``ran92.int8.calibration.json`` (beside the model)."""
    output = Path(output)
    return output.with_name(f"{output.stem}.calibration.json")


def sensitivity_path_for(output: str | Path) -> Path:
    output = Path(output)
    return output.with_name(f"{output.stem}.sensitivity.json")


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


def _split_exclude(exclude: Iterable[str]) -> tuple[list[str], bool]:
    patterns, auto = [], False
    for item in exclude:
        for part in str(item).split(","):
            part = part.strip()
            if not part:
                continue
            if part == AUTO:
                auto = True
            else:
                patterns.append(part)
    return patterns, auto


def quantize_int8(
    onnx_path: str | Path,
    output: str | Path | None = None,
    *,
    data: str | Path | None = None,
    method: str = DEFAULT_METHOD,
    percentile: float = DEFAULT_PERCENTILE,
    bins: int | None = None,
    num_images: int = DEFAULT_NUM_IMAGES,
    batch: int = DEFAULT_BATCH,
    seed: int = DEFAULT_SEED,
    exclude: Sequence[str] = (),
    include_attention: bool = False,
    sensitivity: bool = False,
    target_agreement: float | None = None,
    eval_images: int = DEFAULT_EVAL_IMAGES,
    use_cache: bool = True,
    cache_path: str | Path | None = None,
    run_model: RunModel | None = None,
    progress: Progress | None = None,
    device: str = DEFAULT_DEVICE,
    float_precision: str = DEFAULT_FLOAT_PRECISION,
    require_pass: bool = True,
) -> QuantizeResult:
    """Quantize the FP32 ONNX file at ``onnx_path`` to an INT8 Q/DQ file (default ``*.int8.onnx``).

    ``data``: an image folder / glob / ``.txt`` list, a preprocessed ``.npy``/``.npz``
    (``file.npz:key``), ``"synthetic"``, or ``None`` for the built-in sample. ``exclude``: shell
    patterns over node and group names kept in FP32, or ``"auto"`` to keep the most sensitive
    groups in FP32 until top-1 agreement with FP32 reaches ``target_agreement`` (default 0.99).
    ``sensitivity``: also measure each group quantized alone. ``run_model`` runs the FP32 and
    Q/DQ graphs for the comparison with FP32, the sensitivity table and ``"auto"`` (calibration sits
    below the runners: ``deploy_ran.compare.runner_checks.RunnerChecks().run_model``); without it the file is
    written unchecked and ``sensitivity``/``"auto"`` are refused. Nothing is written on failure.

    ``float_precision="fp16"`` writes the non-quantized part in FP16 (FP32 graph I/O, the FP16
    keep-list in FP32), as TensorRT's strongly typed INT8 engines want it; ``"fp32"`` keeps it FP32.
    The written file is judged with ``verify``'s INT8 criteria (per output kind) on the comparison
    images; with ``require_pass`` a failing file raises :class:`AccuracyError` (exit code 1) and is
    not written (``exclude="auto"`` keeps more groups in FP32 until it passes, where it can).
    """
    say = progress or (lambda _p, _d, _t: None)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    method_cfg = MethodConfig(method, percentile, bins)
    patterns, auto = _split_exclude(exclude)
    if target_agreement is not None and not 0.0 < target_agreement <= 1.0:
        raise DeployRanError(
            f"target_agreement must be in (0, 1], got {target_agreement}.",
            hint="E.g. 0.99 for 99 % top-1 agreement with FP32.",
        )
    if auto and target_agreement is None:
        target_agreement = DEFAULT_TARGET_AGREEMENT
    if batch < 1:
        raise DeployRanError(f"batch must be at least 1, got {batch}.", hint="E.g. 8.")
    if eval_images < 1:
        raise DeployRanError(f"eval_images must be at least 1, got {eval_images}.")
    if float_precision not in FLOAT_PRECISIONS:
        raise DeployRanError(
            f"float_precision must be one of {', '.join(FLOAT_PRECISIONS)}, got {float_precision!r}.",
            hint='"fp16" puts the non-quantized part in FP16 (faster TensorRT engines).',
            param="float_precision",
        )
    if sensitivity or auto:
        require_runner(run_model, "The sensitivity analysis" if sensitivity else 'exclude="auto"')

    source = Path(onnx_path)
    output = derived_output(source, output, default_int8_path(source), "INT8")
    cache = (Path(cache_path) if cache_path else cache_path_for(output)) if use_cache else None
    if cache is not None:
        check_writable(cache)
    report_path = sensitivity_path_for(output) if (sensitivity or auto) else None
    if report_path is not None:
        check_writable(report_path)

    model = load_onnx(source)
    require_fp32(model, source, "INT8 calibration")
    input_name, input_shape, static_batch = _input_spec(model, source)
    if static_batch:  # a fixed-batch graph only takes batches of exactly that size
        batch = graph_inputs(model)[0].type.tensor_type.shape.dim[0].dim_value
    info = ArtifactInfo.from_props(get_metadata(model))
    preprocessing, warnings = _preprocessing(info, input_shape)
    plan_data = plan_calibration_data(
        data,
        input_shape=input_shape,
        preprocessing=preprocessing,
        num_images=num_images,
        seed=seed,
    )
    index = GraphIndex(model)
    tensors = calibration_tensors(index)
    if not tensors:
        raise DeployRanError(
            f"{source} has no Conv/Gemm with constant weights to quantize.",
            hint="INT8 Q/DQ here targets convolutional networks exported by deploy-ran.",
        )
    onnx_sha = sha256_file(source)
    timings["prepare"] = time.perf_counter() - started

    loaded: dict[str, CalibrationData] = {}

    def load_all() -> CalibrationData:
        if "all" not in loaded:
            t0 = time.perf_counter()
            loaded["all"] = plan_data.load(lambda d, t: say("load", d, t))
            timings["load"] = time.perf_counter() - t0
        return loaded["all"]

    def load_batches():
        cal = load_all()
        batches = list(cal.batches(batch))
        if static_batch and len(batches[-1]) != batch:
            batches = batches[:-1]
            if not batches:
                raise DeployRanError(
                    f"The model has a fixed batch of {batch} but only {len(cal)} calibration "
                    "image(s) were found.",
                    hint="Give more images, or export with a dynamic batch (the default).",
                )
        return batches, sum(len(b) for b in batches)

    t0 = time.perf_counter()
    ranges = calibrate_ranges(
        source,
        onnx_sha,
        plan_data.fingerprint,
        preprocessing,
        load_batches,
        tensors,
        method_cfg,
        cache_path=cache,
        input_name=input_name,
        progress=say,
        device=device,
    )
    timings["calibrate"] = time.perf_counter() - t0 - timings.get("load", 0.0)
    for phase, seconds in ranges.phases.items():  # "collect" (run + histograms), "ranges"
        timings[f"calibrate.{phase}"] = seconds

    # Images for the comparison with FP32: the first of the seeded subset. On a cache hit
    # only those are decoded.
    if "all" in loaded:
        cal = loaded["all"]
        eval_set = cal.images[: min(eval_images, len(cal))]
        data_report = cal.describe()
        warnings += cal.warnings
    else:
        small = plan_calibration_data(
            data,
            input_shape=input_shape,
            preprocessing=preprocessing,
            num_images=min(eval_images, num_images),
            seed=seed,
        )
        t1 = time.perf_counter()
        cal = small.load(lambda d, t: say("load", d, t))
        timings["load"] = time.perf_counter() - t1
        eval_set = cal.images
        data_report = {**cal.describe(), "fingerprint": plan_data.fingerprint, "loaded": False}
        data_report["num_images"] = ranges.num_images
        # The small load's own count warnings describe the comparison set, not the calibration.
        warnings += [w for w in cal.warnings if w in (BUILTIN_NOTE, SYNTHETIC_NOTE)]
        if ranges.num_images < RECOMMENDED_MIN_IMAGES:
            warnings.append(
                f"The cached ranges were calibrated on {ranges.num_images} images; NVIDIA "
                f"recommends at least {RECOMMENDED_MIN_IMAGES} for INT8 (num_images)."
            )
    if static_batch:
        eval_set = eval_set[: (len(eval_set) // batch) * batch]

    inferred = onnx.shape_inference.infer_shapes(model)
    report: SensitivityReport | None = None
    auto_groups: list[str] = []
    if sensitivity or auto:
        t2 = time.perf_counter()
        report = analyze_sensitivity(
            inferred,
            ranges.ranges,
            eval_set,
            method=method_cfg.label(),
            batch=batch,
            include_attention=include_attention,
            exclude=patterns,
            target_agreement=target_agreement if auto else None,
            run_model=run_model,
            float_precision=float_precision,
            progress=say,
        )
        timings["sensitivity"] = time.perf_counter() - t2
        if auto:
            auto_groups = report.excluded
            if not report.met_target:
                warnings.append(
                    f"exclude=auto could not reach top-1 agreement {target_agreement:.3f} "
                    f"even with every group in FP32 but the ones left; best "
                    f"{report.steps[-1].top1 if report.steps else float('nan'):.3f}."
                )

    t3 = time.perf_counter()
    plan = plan_quantization(
        index, exclude=[*patterns, *auto_groups], include_attention=include_attention
    )
    if not plan.weight_nodes:
        raise DeployRanError(
            "Every Conv/Gemm is excluded; the INT8 file would be the FP32 model.",
            hint="Narrow exclude, or deploy the FP32 / FP16 file instead.",
        )
    qdq = build_qdq_model(inferred, plan, ranges.ranges)
    if float_precision == "fp16":
        qdq = with_fp16_float_part(qdq)
    info.extra["int8_float_precision"] = float_precision
    _write_metadata(qdq, info, method_cfg, ranges, plan, data_report, onnx_sha, source)
    require_valid_graph(
        qdq,
        static_batch,
        "the Q/DQ graph",
        hint="Nothing was written. Please report the model and options.",
    )
    timings["quantize"] = time.perf_counter() - t3

    rows: list[OutputAgreement] = []
    verdict = None
    if run_model is not None:
        t4 = time.perf_counter()
        say("check", 0, len(eval_set))
        reference_out = run_model(model, eval_set, batch)
        candidate_out = run_model(qdq, eval_set, batch)
        rows = agreement(reference_out, candidate_out)
        verdict = judge(reference_out, candidate_out)
        say("check", len(eval_set), len(eval_set))
        if not all(r.finite for r in rows):
            raise ExportError(
                "The INT8 model produces NaN or infinite outputs in ONNX Runtime.",
                hint="Nothing was written. Check the calibration data for NaN/inf, or try "
                'method="minmax".',
            )
        timings["check"] = time.perf_counter() - t4
        if not verdict.passed:
            message = (
                f"The INT8 file fails verify's INT8 criteria on {len(eval_set)} comparison "
                f"image(s): {verdict.worst_failure()}."
            )
            if require_pass:
                raise AccuracyError(
                    message,
                    hint="Nothing was written. Keep the sensitive parts in float "
                    '(exclude="auto", or exclude=GROUP from the sensitivity table), calibrate on '
                    "more representative data, or pass require_pass=False to write it anyway.",
                )
            warnings.append(message)
    else:
        warnings.append("The INT8 file was not compared with FP32 (no run_model given).")

    model_bytes = qdq.SerializeToString()
    atomic_write_bytes(output, model_bytes)
    sensitivity_written = None
    if report is not None and report_path is not None:
        atomic_write_text(report_path, json_text(report.as_dict(), indent=1))
        sensitivity_written = report_path
    timings["total"] = time.perf_counter() - started
    return QuantizeResult(
        path=output,
        source=source,
        cache_path=ranges.cache_path,
        method=method_cfg,
        ranges=ranges,
        data=data_report,
        plan=plan,
        qdq=count_qdq(qdq),
        agreement=rows,
        eval_images=len(eval_set) if rows else 0,
        seconds=timings,
        warnings=warnings,
        sensitivity=report,
        sensitivity_path=sensitivity_written,
        size_bytes=len(model_bytes),
        source_size_bytes=source.stat().st_size,
        float_precision=float_precision,
        verdict=verdict.as_dict() if verdict is not None else None,
        arithmetic=getattr(getattr(run_model, "__self__", None), "qdq_arithmetic", None),
    )


def _write_metadata(
    qdq: onnx.ModelProto,
    info: ArtifactInfo,
    method: MethodConfig,
    ranges: Ranges,
    plan: QuantPlan,
    data_report: dict[str, Any],
    onnx_sha: str,
    source: Path,
) -> None:
    info.precision = "int8"
    info.extra.update(
        {
            "quantization": json.dumps(
                {
                    "format": "QDQ",
                    "activations": "int8 symmetric per-tensor (zero point 0)",
                    "weights": "int8 symmetric per-channel (Conv/Gemm, axis 0)",
                    "method": method.key(),
                    "calibration_images": ranges.num_images,
                    "calibration_data": data_report.get("source"),
                    "calibration_key": ranges.key,
                    "excluded_groups": plan.excluded_groups,
                    "kept_float_ops": sorted({op for _n, op, _w in plan.kept_float}),
                    "quantized_weight_nodes": len(plan.weight_nodes),
                    "quantized_activations": len(plan.activation_tensors),
                }
            ),
            "source_onnx": source.name,
            "source_onnx_sha256": onnx_sha,
            "onnxruntime_quantization": ranges.onnxruntime_version or "",
        }
    )
    set_metadata(qdq, info.to_props())
    # ONNX Runtime's quantizer leaves an "onnx.infer" marker of its own; the toolkit's keys say more.
    kept = [p for p in qdq.metadata_props if p.key != "onnx.infer"]
    del qdq.metadata_props[:]
    qdq.metadata_props.extend(kept)
