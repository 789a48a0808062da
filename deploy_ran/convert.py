"""One conversion entry point: target → precision → artifact.

``convert(target, precision)`` is what ``export`` (FP32 and ``--precision fp16``), ``calibrate``
and ``build-engine`` call, and what a Python user calls. It is the one place that

* decides whether a target is a model name, an ONNX file or an engine (:func:`resolve_target`),
  reading a file's precision once;
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
from typing import Any, Protocol

import numpy as np
import onnx

from calibration.quantize import QuantizeResult, quantize_int8
from deploy_ran.artifacts import load_onnx, precision_of
from deploy_ran.errors import DeployRanError, UnknownModelError
from deploy_ran.fileio import check_writable, refuse_output_over_inputs
from deploy_ran.models import closest_models, is_model_name
from deploy_ran.trt_compat import ENGINE_SUFFIXES, TensorRTUnavailable, read_sidecar
from exporters.fp16 import Fp16Result, convert_to_fp16
from exporters.onnx import DEFAULT_OPSET, ExportResult, export_onnx
from exporters.tensorrt import (
    EngineBuildOptions,
    EngineBuildResult,
    build_engine,
    default_plan_path,
)

PRECISIONS = ("fp32", "fp16", "int8")
TARGET_KINDS = ("model", "onnx", "engine", "served")
#: URL schemes of a model served by Triton (``triton://HOST:8000/MODEL``; the runner parses them).
SERVED_SCHEMES = ("triton", "triton+http", "triton+grpc")


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


@dataclass(frozen=True)
class Target:
    """What the user named, resolved once."""

    kind: str  # "model" | "onnx" | "engine" | "served" (a triton:// URL)
    text: str
    path: Path | None = None
    precision: str | None = None  # ONNX: read from the file; engine: from its sidecar; model: None

    @property
    def is_model(self) -> bool:
        return self.kind == "model"


def resolve_target(target: str | os.PathLike[str]) -> Target:
    """A model name, an existing ``.onnx`` file or an existing ``.plan``/``.engine`` file.

    An unknown name suggests the nearest model names; a file of another kind says what was expected.
    """
    text = os.fspath(target)
    if "://" in text and text.split("://", 1)[0].lower() in SERVED_SCHEMES:
        return Target("served", text)
    path = Path(text)
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        model = load_onnx(path, load_weights=False)  # clear errors: missing, empty, corrupt
        return Target("onnx", text, path, precision_of(model))
    if suffix in ENGINE_SUFFIXES:
        if not path.is_file():
            raise DeployRanError(
                f"Engine file {text} does not exist.",
                hint="Check the path; build one with `python cli.py build-engine MODEL.onnx`.",
            )
        sidecar = read_sidecar(path) or {}
        return Target("engine", text, path, sidecar.get("precision"))
    if is_model_name(text):
        return Target("model", text)
    if path.exists():
        raise DeployRanError(
            f"Cannot tell what {text} is: expected a model name, a .onnx file or a .plan/.engine "
            "file.",
            hint="Rename the file with its real extension, or pass a model name.",
        )
    suggestions = closest_models(text)
    raise UnknownModelError(
        f"{text!r} is neither a model name nor an existing .onnx/.plan/.engine file.",
        hint=(f"Did you mean: {', '.join(suggestions)}? " if suggestions else "")
        + "Run `python cli.py models` for model names; a served model is "
        "triton://HOST:8000/MODEL (or triton+grpc://HOST:8001/MODEL).",
    )


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

    data: str | None = None  # images / glob / list / .npy / .npz[:key] / "synthetic"; None: built-in
    method: str = "percentile"
    percentile: float = 99.99
    bins: int | None = None
    num_images: int = 512
    batch: int = 8
    seed: int = 0
    exclude: tuple[str, ...] = ()
    include_attention: bool = False
    sensitivity: bool = False
    target_agreement: float | None = None
    eval_images: int = 200
    use_cache: bool = True
    cache_path: Path | None = None
    device: str = "cpu"  # where ONNX Runtime collects the ranges: cpu | cuda | cuda:N
    #: FP32 convolutions in TF32 on CUDA (ONNX Runtime's use_tf32); off: FP32 ranges are FP32.
    allow_tf32: bool = False
    #: The non-quantized part in "fp32" or "fp16" (TensorRT's strongly typed INT8 engines run it
    #: in the file's precision; "fp16" is what NVIDIA's tooling writes).
    float_precision: str = "fp32"
    #: Refuse (AccuracyError, exit 1) a file that fails verify's INT8 criteria on its comparison set.
    require_pass: bool = True

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
    output); that file was not named by the caller, so an existing one is refused unless
    ``overwrite_intermediate``. With ``engine`` (build options) the precision ONNX is then built
    into a TensorRT plan (``plan``, default beside it): :class:`EngineUnavailable` says when the
    ONNX is written but TensorRT or a GPU is missing.
    """
    if engine is not None:
        onnx_output = output
        result = convert(
            target, precision, output=onnx_output, export=export, fp16=fp16,
            calibration=calibration, checks=checks, workdir=workdir,
            overwrite_intermediate=overwrite_intermediate, progress=progress,
            calibration_progress=calibration_progress,
        )  # fmt: skip
        if result.target.kind == "engine":
            raise DeployRanError(
                f"{result.target.text} is already an engine.",
                hint="Build from the model name or its ONNX file.",
            )
        plan_path = Path(plan) if plan is not None else default_plan_path(result.path)
        refuse_output_over_inputs({"plan": plan_path}, {"ONNX file": result.path})
        result.onnx_path = result.path
        try:
            result.engine = build_engine(result.path, plan_path, engine, log=engine_log)
        except TensorRTUnavailable as exc:
            raise EngineUnavailable(exc, result) from None
        result.path = result.engine.plan
        result.steps.append(f"built {result.path} ({result.precision.upper()} TensorRT engine)")
        return result
    say = progress or (lambda _msg: None)
    export = export or ExportConfig()
    fp16 = fp16 or Fp16Config()
    calibration = calibration or CalibrationConfig()
    resolved = target if isinstance(target, Target) else resolve_target(target)
    want = resolved.precision if precision is None and not resolved.is_model else precision
    want = want or "fp32"
    if want not in PRECISIONS:
        raise DeployRanError(
            f"Unknown precision {want!r}.", hint=f"Choose one of: {', '.join(PRECISIONS)}."
        )
    if want == "int8":
        calibration.check_source()
    folder = Path(workdir) if workdir is not None else None
    out = Path(output) if output is not None else None
    inputs = {
        "checkpoint": export.checkpoint,
        "calibration data": calibration.data_file() if want == "int8" else None,
        "target": resolved.path,
    }
    refuse_output_over_inputs({"output": out}, inputs)
    if want == "int8" and calibration.cache_path is not None:
        refuse_output_over_inputs({"cache_path": calibration.cache_path}, inputs)

    if resolved.kind == "served":
        raise DeployRanError(
            f"{resolved.text} is a served model; it cannot be converted.",
            hint="Convert the model name or the ONNX file, then serve the result (triton-repo).",
        )
    if resolved.kind == "engine":
        if want != resolved.precision:
            raise DeployRanError(
                f"{resolved.text} is a built {str(resolved.precision).upper()} engine; it cannot "
                f"become {want.upper()}.",
                hint="Convert the ONNX file it was built from (or the model name) instead.",
            )
        return ConversionResult(resolved, resolved.path, want, [f"using {resolved.text}"])

    result = ConversionResult(resolved, resolved.path or Path(), "fp32")
    if resolved.is_model:
        if want == "fp32":
            fp32_path = out or default_output(resolved.text, "fp32", folder)
        else:
            final = out or default_output(resolved.text, want, folder)
            fp32_path = default_output(final, "fp32")
            refuse_output_over_inputs({"FP32 file": fp32_path}, inputs)
            if fp32_path.exists() and not overwrite_intermediate:
                raise DeployRanError(
                    f"{fp32_path} exists and was not named as an output; converting {resolved.text} "
                    f"to {want.upper()} would replace it with a new FP32 export.",
                    hint=f"Convert that file instead (pass {fp32_path} as the target), move it "
                    "away, or choose another output folder.",
                )
        check_writable(fp32_path)
        say(f"exporting {resolved.text} to FP32 ONNX")
        result.export = export_onnx(
            resolved.text,
            fp32_path,
            checkpoint=export.checkpoint,
            image_size=export.image_size,
            num_classes=export.num_classes,
            batch=export.batch,
            static_batch=export.static_batch,
            opset=export.opset,
            simplify_graph=export.simplify,
            check=checks.check_export if checks is not None else None,
            progress=say,
            **export.options,
        )
        result.path, result.precision = fp32_path, "fp32"
        result.steps.append(f"exported {fp32_path} (FP32)")
    else:
        given = export.model_specific()
        if given:
            raise DeployRanError(
                f"{', '.join(given)} cannot change {resolved.text}: an ONNX file already fixes "
                "its weights, size and model options.",
                hint="Pass a model name to export it with those, or drop them.",
            )
        result.path, result.precision = resolved.path, resolved.precision or "fp32"
        result.steps.append(f"using {resolved.path} ({result.precision.upper()})")

    if result.precision == want:
        return result
    if result.precision != "fp32":
        raise DeployRanError(
            f"{result.path} is already {result.precision.upper()}; it cannot become "
            f"{want.upper()}.",
            hint=f"Start from the FP32 ONNX file (or the model name) for {want.upper()}.",
        )
    source = result.path
    target_path = out or default_output(source, want)
    if want == "fp16":
        reference = result.export.eager if result.export is not None else source
        result.fp16 = convert_to_fp16(
            source,
            target_path,
            keep_fp32=fp16.keep_fp32,
            default_keep_fp32=fp16.default_keep_fp32,
            keep_fp32_nodes=fp16.keep_fp32_nodes,
            check=(lambda f: checks.check_precision(reference, f)) if checks is not None else None,
            progress=say,
        )
        result.path, result.precision = Path(result.fp16.path), "fp16"
        result.steps.append(f"converted to {result.path} (FP16)")
        return result
    say("calibrating INT8")
    # CalibrationConfig's fields are quantize_int8's parameters, one for one.
    settings = {f.name: getattr(calibration, f.name) for f in fields(calibration)}
    result.int8 = quantize_int8(
        source,
        target_path,
        **settings,
        run_model=_run_model_on(checks, calibration),
        progress=calibration_progress,
    )
    result.path, result.precision = Path(result.int8.path), "int8"
    result.steps.append(
        f"calibrated {result.path} (INT8 Q/DQ; {result.int8.ranges.cache_note})"
    )
    return result


def _run_model_on(checks: Checks | None, calibration: CalibrationConfig) -> Any:
    """``checks.run_model`` bound to the calibration's device and arithmetic, so the comparison
    with FP32 and the sensitivity table are measured where the ranges were (a CUDA calibration
    judged on the CPU would hide what the GPU computes)."""
    if checks is None:
        return None
    if calibration.device == "cpu" and not calibration.allow_tf32:
        return checks.run_model
    return functools.partial(
        checks.run_model, device=calibration.device, allow_tf32=calibration.allow_tf32
    )
