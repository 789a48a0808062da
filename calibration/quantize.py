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

from calibration.defaults import (
    DEFAULT_BATCH,
    DEFAULT_DEVICE,
    DEFAULT_EVAL_IMAGES,
    DEFAULT_FLOAT_PRECISION,
    DEFAULT_METHOD,
    DEFAULT_NUM_IMAGES,
    DEFAULT_PERCENTILE,
    DEFAULT_PLACEMENT,
    DEFAULT_SEED,
    DEFAULT_TARGET_AGREEMENT,
)
from calibration.evaluate import OutputAgreement, RunModel, agreement, judge, require_runner
from calibration.memory import estimate_memory
from calibration.placement import PLACEMENTS, QuantPlan, plan_quantization
from calibration.qdq import build_qdq_model, count_qdq, with_fp16_float_part
from calibration.ranges import MethodConfig, Ranges
from calibration.sensitivity import SensitivityReport, analyze_sensitivity
from calibration.source import (
    Source,
    comparison_images,
    load_source,
    measure_ranges,
)
from deploy_ran.artifacts import ArtifactInfo, get_metadata, set_metadata
from deploy_ran.errors import AccuracyError, DeployRanError, ExportError
from deploy_ran.fileio import (
    atomic_write_bytes,
    atomic_write_text,
    check_writable,
    derived_output,
    json_text,
)
from exporters.coverage import Coverage, int8_coverage
from exporters.graph_checks import require_valid_graph

AUTO = "auto"
#: What the non-quantized part of a Q/DQ file is computed in (see calibration.qdq.with_fp16_float_part).
FLOAT_PRECISIONS = ("fp16", "fp32")

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
    placement: str = DEFAULT_PLACEMENT
    #: Activation bytes per image by precision, float islands, unfoldable Q/DQ (exporters.coverage).
    coverage: Coverage | None = None

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
            # where the ranges were measured, in which arithmetic (part of the cache key)
            "calibration_device": self.ranges.key_parts.get("device"),
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
            "placement": self.placement,
            "coverage": self.coverage.as_dict() if self.coverage else None,
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
    placement: str = DEFAULT_PLACEMENT,
    allow_tf32: bool = False,
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

    ``placement``: ``"trt"`` (Q/DQ for TensorRT's fusions, default) or ``"conservative"`` (see
    :mod:`calibration.placement`). ``float_precision="fp16"`` (default) writes the non-quantized
    part in FP16 (FP32 graph I/O, the FP16 keep-list in FP32), as TensorRT's strongly typed INT8
    engines want it; ``"fp32"`` keeps it FP32. The written file is judged with ``verify``'s INT8
    criteria (per output kind) on the comparison images; with ``require_pass`` a failing file raises
    :class:`AccuracyError` (exit code 1) and is not written (``exclude="auto"`` keeps more groups in
    FP32 until it passes, where it can). The result's ``coverage`` counts what the file leaves in
    float (:mod:`exporters.coverage`).
    """
    say = progress or (lambda _p, _d, _t: None)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    method_cfg = MethodConfig(method, percentile, bins)
    patterns, auto = _split_exclude(exclude)
    target_agreement = _check_settings(
        target_agreement, auto, batch, eval_images, float_precision, placement
    )
    if sensitivity or auto:
        require_runner(run_model, "The sensitivity analysis" if sensitivity else 'exclude="auto"')

    # 1. inputs and output paths, before any long work
    source = Path(onnx_path)
    output = derived_output(source, output, default_int8_path(source), "INT8")
    cache = (Path(cache_path) if cache_path else cache_path_for(output)) if use_cache else None
    if cache is not None:
        check_writable(cache)
    report_path = sensitivity_path_for(output) if (sensitivity or auto) else None
    if report_path is not None:
        check_writable(report_path)
    src = load_source(source, data, num_images, seed, batch)
    batch = src.batch
    warnings = list(src.warnings)
    # Said before the run, and a batch that would not fit is refused with one that would.
    memory = estimate_memory(src.model, src.tensors, batch, device)
    say(memory.summary(), 1, 1)
    memory.require_fits(fixed_batch=src.static_batch)
    timings["prepare"] = time.perf_counter() - started

    # 2-3. calibration data and ranges (or the cache)
    ranges = measure_ranges(src, method_cfg, cache, device, say, timings, allow_tf32)
    eval_set, data_report = comparison_images(src, ranges, eval_images, say, timings, warnings)
    data_report["memory_estimate"] = memory.as_dict()

    # 4. groups kept in float by sensitivity (exclude="auto")
    inferred = onnx.shape_inference.infer_shapes(src.model)
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
            placement=placement,
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

    # 5. the Q/DQ file, checked against FP32
    t3 = time.perf_counter()
    plan = plan_quantization(
        src.index,
        exclude=[*patterns, *auto_groups],
        include_attention=include_attention,
        placement=placement,
    )
    qdq = _build_file(src, plan, ranges, method_cfg, data_report, float_precision)
    timings["quantize"] = time.perf_counter() - t3
    rows: list[OutputAgreement] = []
    verdict = None
    if run_model is not None:
        t4 = time.perf_counter()
        rows, verdict = _compare_with_fp32(src.model, qdq, eval_set, batch, run_model, say)
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

    # 6. written atomically
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
        placement=placement,
        coverage=int8_coverage(qdq),
    )


def _check_settings(
    target_agreement: float | None,
    auto: bool,
    batch: int,
    eval_images: int,
    float_precision: str,
    placement: str,
) -> float | None:
    """Refuse bad settings before any work; the target agreement ``auto`` will use."""
    if target_agreement is not None and not 0.0 < target_agreement <= 1.0:
        raise DeployRanError(
            f"target_agreement must be in (0, 1], got {target_agreement}.",
            hint="E.g. 0.99 for 99 % top-1 agreement with FP32.",
        )
    if batch < 1:
        raise DeployRanError(f"batch must be at least 1, got {batch}.", hint="E.g. 8.")
    if eval_images < 1:
        raise DeployRanError(f"eval_images must be at least 1, got {eval_images}.")
    if float_precision not in FLOAT_PRECISIONS:
        raise DeployRanError(
            f"float_precision must be one of {', '.join(FLOAT_PRECISIONS)}, got {float_precision!r}.",
            hint='"fp16" puts the non-quantized part in FP16 (faster TensorRT engines; '
            "--float-precision).",
            param="float_precision",
        )
    if placement not in PLACEMENTS:
        raise DeployRanError(
            f"placement must be one of {', '.join(PLACEMENTS)}, got {placement!r}.",
            hint='"trt" places Q/DQ for TensorRT\'s fusions (--placement).',
            param="placement",
        )
    if auto and target_agreement is None:
        return DEFAULT_TARGET_AGREEMENT
    return target_agreement


def _build_file(
    src: Source,
    plan: QuantPlan,
    ranges: Ranges,
    method_cfg: MethodConfig,
    data_report: dict[str, Any],
    float_precision: str,
) -> onnx.ModelProto:
    """The Q/DQ model of ``plan`` with its float part and metadata, graph-checked."""
    if not plan.weight_nodes:
        raise DeployRanError(
            "Every Conv/Gemm is excluded; the INT8 file would be the FP32 model.",
            hint="Narrow exclude, or deploy the FP32 / FP16 file instead.",
        )
    inferred = onnx.shape_inference.infer_shapes(src.model)
    qdq = build_qdq_model(inferred, plan, ranges.ranges)
    if float_precision == "fp16":
        qdq = with_fp16_float_part(qdq)
    info = ArtifactInfo.from_props(get_metadata(src.model))
    info.extra["int8_float_precision"] = float_precision
    info.extra["int8_placement"] = plan.placement
    _write_metadata(qdq, info, method_cfg, ranges, plan, data_report, src.sha256, src.path)
    require_valid_graph(
        qdq,
        src.static_batch,
        "the Q/DQ graph",
        hint="Nothing was written. Please report the model and options.",
    )
    return qdq


def _compare_with_fp32(
    model: onnx.ModelProto,
    qdq: onnx.ModelProto,
    eval_set,
    batch: int,
    run_model: RunModel,
    say: Progress,
):
    """Agreement rows and verify's INT8 verdict of ``qdq`` against ``model``; NaN output refused."""
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
    return rows, verdict


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
                    "placement": plan.placement,
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
