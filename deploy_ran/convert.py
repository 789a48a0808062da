"""One conversion entry point: target → precision → artifact.

``convert(target, precision)`` is what ``export`` (FP32 and ``--precision fp16``), ``calibrate``
and ``build-engine`` call, and what a Python user calls. It is the one place that

* takes a :class:`deploy_ran.target.Target` (a model name, an ONNX file or an engine, its
  precision read once) and decides what to do with it;
* names the files it writes (``NAME.onnx`` → ``NAME.fp16.onnx`` / ``NAME.int8.onnx``) and refuses
  an output that would overwrite an input or a file the caller did not name;
* runs the steps in order: export a model name to FP32 ONNX (:mod:`exporters.onnx`), convert to
  FP16 (:mod:`exporters.fp16`) or calibrate to INT8 Q/DQ (:mod:`calibration.quantize`).

It sits above ``exporters`` and ``calibration`` and below the runners, so it runs no model itself:
numerical checks come from the ``checks`` object the caller passes (:class:`Checks`;
``deploy_ran.compare.runner_checks.RunnerChecks`` is the one the CLI uses). Without it every file is still
graph-checked but not compared with eager PyTorch.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import onnx

from calibration import defaults as cal
from calibration.quantize import QuantizeResult, quantize_int8
from deploy_ran.device import Device
from deploy_ran.errors import DeployRanError
from deploy_ran.export_match import Difference, differences, requested_fields
from deploy_ran.fileio import check_writable, refuse_output_over_inputs
from deploy_ran.target import TARGET_KINDS, Target  # noqa: F401  (TARGET_KINDS: re-exported)
from deploy_ran.trt_compat import TensorRTUnavailable
from exporters.fp16 import Fp16Result, convert_to_fp16
from exporters.opsets import DEFAULT_OPSET
from exporters.tensorrt import (
    EngineBuildOptions,
    EngineBuildResult,
    build_engine,
    default_plan_path,
)

if TYPE_CHECKING:  # exporters.onnx imports PyTorch: loaded only where an export runs
    from exporters.onnx import ExportResult

PRECISIONS = ("fp32", "fp16", "int8")


class Checks(Protocol):
    """The numerical checks a conversion asks for; see ``deploy_ran.compare.runner_checks.RunnerChecks``."""

    def check_export(self, eager: Any, onnx_file: Path) -> Any:
        """Compare eager PyTorch with the written ONNX file; raise to refuse the file."""

    def check_precision(self, reference: Any, candidate: Path) -> Any:
        """Compare a reduced-precision file with its reference (module or FP32 file)."""

    def run_model(
        self,
        model: onnx.ModelProto | Path,
        inputs: np.ndarray,
        batch_size: int,
        *,
        device: str = "cpu",
        allow_tf32: bool = False,
    ) -> Mapping[str, np.ndarray]:
        """Every output of ``model`` on ``inputs`` on ``device`` (for calibration's evaluation:
        the agreement and sensitivity checks run where the ranges were measured)."""


# ------------------------------------------------------------------------------------ targets


def resolve_target(target: str | os.PathLike[str] | Target) -> Target:
    """``Target.parse``: kept under its old name for callers of the library."""
    return Target.parse(target)


# ------------------------------------------------------------------------------------ naming


def default_output(stem_source: str | Path, precision: str, folder: Path | None = None) -> Path:
    """``ran92`` / ``ran92.onnx`` → ``ran92.onnx``, ``ran92.fp16.onnx``, ``ran92.int8.onnx``."""
    text = os.fspath(stem_source)
    base = Path(text)
    stem = base.name[: -len(".onnx")] if base.name.lower().endswith(".onnx") else base.name
    for tag in (".fp32", ".fp16", ".int8"):
        if stem.endswith(tag):
            stem = stem[: -len(tag)]
    name = f"{stem}.onnx" if precision == "fp32" else f"{stem}.{precision}.onnx"
    parent = folder if folder is not None else (base.parent if base.suffix else Path("."))
    return parent / name


# ------------------------------------------------------------------------------------ configs


@dataclass
class ExportConfig:
    """How a model name becomes an FP32 ONNX file (ignored for file targets)."""

    checkpoint: Path | None = None
    image_size: int | None = None
    num_classes: int | None = None
    batch: int = 1
    static_batch: bool = False
    opset: int = DEFAULT_OPSET
    simplify: bool = True
    options: dict[str, Any] = field(default_factory=dict)  # model options (attention, ...)

    def model_specific(self) -> list[str]:
        """The settings that only a model name can honour, by parameter name."""
        given = {
            "checkpoint": self.checkpoint,
            "image_size": self.image_size,
            "num_classes": self.num_classes,
        }
        names = [k for k, v in given.items() if v is not None]
        return names + (["options"] if self.options else [])


@dataclass
class Fp16Config:
    """FP16 conversion settings.

    ``keep_fp32`` is the one meaning everywhere: op types kept in FP32 *in addition to*
    ``exporters.fp16.DEFAULT_KEEP_FP32`` (reductions, Sqrt, Pow); ``default_keep_fp32=False`` drops
    the defaults. ``keep_fp32_nodes`` names single nodes.
    """

    keep_fp32: tuple[str, ...] = ()
    default_keep_fp32: bool = True
    keep_fp32_nodes: tuple[str, ...] = ()


@dataclass
class CalibrationConfig:
    """INT8 calibration settings (see :func:`calibration.quantize.quantize_int8`)."""

    data: str | None = (
        None  # images / glob / list / .npy / .npz[:key] / "synthetic"; None: built-in
    )
    method: str = cal.DEFAULT_METHOD
    percentile: float = cal.DEFAULT_PERCENTILE
    bins: int | None = None
    num_images: int = cal.DEFAULT_NUM_IMAGES
    batch: int = cal.DEFAULT_BATCH
    seed: int = cal.DEFAULT_SEED
    exclude: tuple[str, ...] = ()
    include_attention: bool = False
    sensitivity: bool = False
    target_agreement: float | None = None
    eval_images: int = cal.DEFAULT_EVAL_IMAGES
    use_cache: bool = True
    cache_path: Path | None = None
    device: str = cal.DEFAULT_DEVICE  # where ONNX Runtime collects the ranges: cpu | cuda | cuda:N
    #: FP32 convolutions in TF32 on CUDA (ONNX Runtime's use_tf32); off: FP32 ranges are FP32.
    allow_tf32: bool = False
    #: The non-quantized part in "fp32" or "fp16" (TensorRT's strongly typed INT8 engines run it
    #: in the file's precision; "fp16" is what NVIDIA's tooling writes).
    float_precision: str = cal.DEFAULT_FLOAT_PRECISION
    #: Refuse (AccuracyError, exit 1) a file that fails verify's INT8 criteria on its comparison set.
    require_pass: bool = True
    #: Where Q/DQ go: "trt" (for TensorRT's fusions) or "conservative" (calibration.placement).
    placement: str = cal.DEFAULT_PLACEMENT

    def data_file(self) -> Path | None:
        """The calibration data as a file path, when it is one (for the overwrite check)."""
        if not self.data or self.data == "synthetic" or any(ch in self.data for ch in "*?["):
            return None
        return Path(self.data.split(".npz:", 1)[0] + ".npz" if ".npz:" in self.data else self.data)

    def check_source(self) -> None:
        """Fail before any export when the calibration data names something that does not exist."""
        path = self.data_file()
        if path is not None and not path.exists():
            raise DeployRanError(
                f"Calibration data {self.data} does not exist.",
                hint="Give a folder of images, a glob, a .txt list or a preprocessed .npy/.npz; "
                "it must exist before the conversion starts.",
            )


@dataclass
class ConversionResult:
    """The artifact ``convert`` produced (or found), and every step's own result."""

    target: Target
    path: Path
    precision: str
    steps: list[str] = field(default_factory=list)
    export: ExportResult | None = None
    fp16: Fp16Result | None = None
    int8: QuantizeResult | None = None
    engine: EngineBuildResult | None = None
    onnx_path: Path | None = None  # the precision ONNX a plan was (or is to be) built from


class EngineUnavailable(TensorRTUnavailable):
    """The precision ONNX is written, but TensorRT or a GPU is missing for the engine build.

    ``result`` holds what was done, so a caller can say which file to finish from on a GPU host.
    """

    def __init__(self, cause: TensorRTUnavailable, result: ConversionResult) -> None:
        super().__init__(cause.message, cause.hint)
        self.result = result


# ------------------------------------------------------------------------------------ convert


def convert(
    target: str | os.PathLike[str] | Target,
    precision: str | None = None,
    *,
    output: str | os.PathLike[str] | None = None,
    export: ExportConfig | None = None,
    fp16: Fp16Config | None = None,
    calibration: CalibrationConfig | None = None,
    checks: Checks | None = None,
    workdir: str | os.PathLike[str] | None = None,
    overwrite_intermediate: bool = False,
    reuse_matching: bool = False,
    engine: EngineBuildOptions | None = None,
    plan: str | os.PathLike[str] | None = None,
    engine_log: Callable[[str, str], None] | None = None,
    progress: Callable[[str], None] | None = None,
    calibration_progress: Callable[[str, int, int], None] | None = None,
) -> ConversionResult:
    """Produce the ``precision`` artifact for ``target``; see the module docstring.

    ``precision`` ``None`` keeps a file's own precision (a model name becomes FP32 ONNX).
    ``output`` names the final file (default beside the source, or in ``workdir`` for a model
    name). A model name converted to FP16/INT8 also writes its FP32 ONNX (``NAME.onnx`` beside the
    output). That file was not named by the caller: an existing one whose metadata matches the
    request is reused, one that differs is refused (each field: existing vs requested) unless
    ``overwrite_intermediate``. ``reuse_matching`` applies the same reuse to an FP32 final output
    (``bench`` uses it for its exports). With ``engine`` (build options) the precision ONNX is
    then built into a TensorRT plan (``plan``, default beside it): :class:`EngineUnavailable`
    says when the ONNX is written but TensorRT or a GPU is missing.
    """
    job = _Job(
        Target.parse(target),
        export or ExportConfig(),
        fp16 or Fp16Config(),
        calibration or CalibrationConfig(),
        checks,
        Path(output) if output is not None else None,
        Path(workdir) if workdir is not None else None,
        overwrite_intermediate,
        reuse_matching,
        progress or (lambda _msg: None),
        calibration_progress,
    )
    want = _check_request(job, precision, building_engine=engine is not None)
    if job.target.kind == "engine":
        return ConversionResult(job.target, job.target.path, want, [f"using {job.target.text}"])
    result = _fp32_step(job, want)
    if result.precision != want:
        _reduce_step(job, result, want)
    if engine is not None:
        _engine_step(result, engine, plan, engine_log)
    return result


@dataclass
class _Job:
    """One conversion's inputs, resolved once and passed to each step."""

    target: Target
    export: ExportConfig
    fp16: Fp16Config
    calibration: CalibrationConfig
    checks: Checks | None
    output: Path | None
    workdir: Path | None
    overwrite_intermediate: bool
    reuse_matching: bool
    say: Callable[[str], None]
    calibration_progress: Callable[[str, int, int], None] | None

    def inputs(self, want: str) -> dict[str, Path | None]:
        """The files this conversion reads: none of its outputs may replace one."""
        return {
            "checkpoint": self.export.checkpoint,
            "calibration data": self.calibration.data_file() if want == "int8" else None,
            "target": self.target.path,
        }


def _check_request(job: _Job, precision: str | None, building_engine: bool) -> str:
    """The precision to produce, after every check that needs no work: a known precision,
    existing calibration data, outputs that replace no input, a target that can be converted."""
    resolved = job.target
    want = resolved.precision if precision is None and not resolved.is_model else precision
    want = want or "fp32"
    if want not in PRECISIONS:
        raise DeployRanError(
            f"Unknown precision {want!r}.", hint=f"Choose one of: {', '.join(PRECISIONS)}."
        )
    if want == "int8":
        job.calibration.check_source()
    refuse_output_over_inputs({"output": job.output}, job.inputs(want))
    if want == "int8" and job.calibration.cache_path is not None:
        refuse_output_over_inputs({"cache_path": job.calibration.cache_path}, job.inputs(want))
    if resolved.kind == "served":
        raise DeployRanError(
            f"{resolved.text} is a served model; it cannot be converted.",
            hint="Convert the model name or the ONNX file, then serve the result (triton-repo).",
        )
    if resolved.kind == "engine":
        if building_engine:
            raise DeployRanError(
                f"{resolved.text} is already an engine.",
                hint="Build from the model name or its ONNX file.",
            )
        if want != resolved.precision:
            raise DeployRanError(
                f"{resolved.text} is a built {str(resolved.precision).upper()} engine; it cannot "
                f"become {want.upper()}.",
                hint="Convert the ONNX file it was built from (or the model name) instead.",
            )
    elif not resolved.is_model and job.export.model_specific():
        raise DeployRanError(
            f"{', '.join(job.export.model_specific())} cannot change {resolved.text}: an ONNX "
            "file already fixes its weights, size and model options.",
            hint="Pass a model name to export it with those, or drop them.",
        )
    return want


def _fp32_step(job: _Job, want: str) -> ConversionResult:
    """The FP32 starting point: the ONNX file given, a matching existing export, or a new one."""
    resolved = job.target
    result = ConversionResult(resolved, resolved.path or Path(), "fp32")
    if not resolved.is_model:
        result.path, result.precision = resolved.path, resolved.precision or "fp32"
        result.steps.append(f"using {resolved.path} ({result.precision.upper()})")
        return result
    if want == "fp32":
        fp32_path = job.output or default_output(resolved.text, "fp32", job.workdir)
        reusable = job.reuse_matching
    else:
        final = job.output or default_output(resolved.text, want, job.workdir)
        fp32_path = default_output(final, "fp32")
        refuse_output_over_inputs({"FP32 file": fp32_path}, job.inputs(want))
        reusable = not job.overwrite_intermediate
    if reusable and fp32_path.exists() and _matching_export(job, fp32_path, want):
        result.path = fp32_path
        result.steps.append(f"using {fp32_path} (FP32; its metadata matches the request)")
        return result
    check_writable(fp32_path)
    job.say(f"exporting {resolved.text} to FP32 ONNX")
    cfg = job.export
    from exporters.onnx import export_onnx

    result.export = export_onnx(
        resolved.text,
        fp32_path,
        checkpoint=cfg.checkpoint,
        image_size=cfg.image_size,
        num_classes=cfg.num_classes,
        batch=cfg.batch,
        static_batch=cfg.static_batch,
        opset=cfg.opset,
        simplify_graph=cfg.simplify,
        check=job.checks.check_export if job.checks is not None else None,
        progress=job.say,
        **cfg.options,
    )
    result.path = fp32_path
    result.steps.append(f"exported {fp32_path} (FP32)")
    return result


def export_differences(model: str, path: Path, export: ExportConfig) -> list[Difference]:
    """How the existing FP32 file ``path`` differs from exporting ``model`` with ``export``
    (empty: it is that export, and can be used instead of writing it again)."""
    requested = requested_fields(
        model,
        checkpoint=export.checkpoint,
        image_size=export.image_size,
        num_classes=export.num_classes,
        options=export.options,
        batch=export.batch,
        static_batch=export.static_batch,
        opset=export.opset,
    )
    return differences(path, requested)


def _matching_export(job: _Job, path: Path, want: str) -> bool:
    """Whether the existing ``path`` is the export this request would write. One that differs
    is refused, field by field, where it was not named (a reduced precision's FP32 file); a
    named FP32 output that differs is simply exported again."""
    found = export_differences(job.target.text, path, job.export)
    if not found:
        return True
    if want == "fp32":
        return False
    raise DeployRanError(
        f"{path} exists and differs from the FP32 export {job.target.text} needs for "
        f"{want.upper()}: " + "; ".join(str(d) for d in found) + " (existing vs requested).",
        hint=f"Convert {path} itself (pass it as the target), write to another output folder, "
        "or allow replacing it (overwrite_intermediate=True).",
        param="overwrite_intermediate",
    )


def _reduce_step(job: _Job, result: ConversionResult, want: str) -> None:
    """FP32 → FP16 (exporters.fp16) or INT8 Q/DQ (calibration), judged by ``job.checks``."""
    if result.precision != "fp32":
        raise DeployRanError(
            f"{result.path} is already {result.precision.upper()}; it cannot become "
            f"{want.upper()}.",
            hint=f"Start from the FP32 ONNX file (or the model name) for {want.upper()}.",
        )
    source, checks = result.path, job.checks
    target_path = job.output or default_output(source, want)
    if want == "fp16":
        reference = result.export.eager if result.export is not None else source
        cfg = job.fp16
        result.fp16 = convert_to_fp16(
            source,
            target_path,
            keep_fp32=cfg.keep_fp32,
            default_keep_fp32=cfg.default_keep_fp32,
            keep_fp32_nodes=cfg.keep_fp32_nodes,
            check=(lambda f: checks.check_precision(reference, f)) if checks is not None else None,
            progress=job.say,
        )
        result.path, result.precision = Path(result.fp16.path), "fp16"
        result.steps.append(f"converted to {result.path} (FP16)")
        return
    job.say("calibrating INT8")
    # CalibrationConfig's fields are quantize_int8's parameters, one for one.
    settings = {f.name: getattr(job.calibration, f.name) for f in fields(job.calibration)}
    result.int8 = quantize_int8(
        source,
        target_path,
        **settings,
        run_model=_run_model_on(checks, job.calibration),
        progress=job.calibration_progress,
    )
    result.path, result.precision = Path(result.int8.path), "int8"
    result.steps.append(f"calibrated {result.path} (INT8 Q/DQ; {result.int8.ranges.cache_note})")


def _engine_step(
    result: ConversionResult,
    options: EngineBuildOptions,
    plan: str | os.PathLike[str] | None,
    log: Callable[[str, str], None] | None,
) -> None:
    """Build the precision ONNX into a plan; :class:`EngineUnavailable` keeps what was done."""
    plan_path = Path(plan) if plan is not None else default_plan_path(result.path)
    refuse_output_over_inputs({"plan": plan_path}, {"ONNX file": result.path})
    result.onnx_path = result.path
    try:
        result.engine = build_engine(result.path, plan_path, options, log=log)
    except TensorRTUnavailable as exc:
        raise EngineUnavailable(exc, result) from None
    result.path = result.engine.plan
    result.steps.append(f"built {result.path} ({result.precision.upper()} TensorRT engine)")


def _run_model_on(checks: Checks | None, calibration: CalibrationConfig) -> Any:
    """``checks.run_model`` bound to the calibration's device and arithmetic, so the comparison
    with FP32 and the sensitivity table are measured where the ranges were (a CUDA calibration
    judged on the CPU would hide what the GPU computes)."""
    if checks is None:
        return None
    if not Device.parse(calibration.device).is_cuda and not calibration.allow_tf32:
        return checks.run_model
    return functools.partial(
        checks.run_model, device=calibration.device, allow_tf32=calibration.allow_tf32
    )
