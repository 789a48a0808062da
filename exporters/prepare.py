"""From what a user hands ``build-engine`` to the ONNX file TensorRT will build.

TensorRT 11 builds only strongly typed networks, so the precision of an engine is decided here, by
the file it is built from: a model name is exported to FP32 ONNX first; ``fp16`` converts an FP32
file to FP16 (``exporters.fp16``); ``int8`` calibrates an FP32 file into a Q/DQ file
(``calibration.quantize``, range cache reused). Files that already carry the requested precision
are used as they are. Every step writes its own artifact, so a host without TensorRT still ends
with the exact file a GPU host needs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploy_ran.artifacts import load_onnx, precision_of
from deploy_ran.errors import DeployRanError
from deploy_ran.fileio import check_writable
from deploy_ran.models import is_model_name

PRECISIONS = ("fp32", "fp16", "int8")


@dataclass
class PreparedOnnx:
    """The ONNX file to build, and what was done to get it."""

    path: Path
    precision: str
    steps: list[str] = field(default_factory=list)  # human-readable, in order
    results: dict[str, Any] = field(default_factory=dict)  # "export", "fp16", "int8" results


def precision_of_file(path: str | Path) -> str:
    """Precision of the ONNX file at ``path`` (fp32, fp16 or int8)."""
    return precision_of(load_onnx(path, load_weights=False))


def check_calibration_source(data: str | None) -> None:
    """Fail before any export when ``--calib-data`` names something that does not exist."""
    if data is None or data == "synthetic":
        return
    if any(ch in data for ch in "*?["):
        return  # a glob; the calibration module reports an empty match
    path = Path(data.split(".npz:", 1)[0] + ".npz" if ".npz:" in data else data)  # file.npz:key
    if not path.exists():
        raise DeployRanError(
            f"Calibration data {data} does not exist.",
            hint="Give --calib-data a folder of images, a glob, a .txt list or a preprocessed "
            ".npy/.npz; it must exist before the engine is built.",
        )


def prepare_onnx(
    target: str | Path,
    precision: str,
    *,
    workdir: Path,
    checkpoint: str | Path | None = None,
    image_size: int | None = None,
    num_classes: int | None = None,
    static_batch: bool = False,
    batch: int = 1,
    calibration: dict[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
    calibration_progress: Callable[[str, int, int], None] | None = None,
) -> PreparedOnnx:
    """Produce (or find) the ``precision`` ONNX file for ``target``; see the module docstring."""
    say = progress or (lambda _msg: None)
    if precision not in PRECISIONS:
        raise DeployRanError(
            f"Unknown precision {precision!r}.", hint="Use --fp16, --int8, or neither."
        )
    calibration = dict(calibration or {})
    if precision == "int8":
        check_calibration_source(calibration.get("data"))
    text = str(target)
    if is_model_name(text):
        from exporters.onnx import export_onnx

        fp32_path = workdir / f"{text}.onnx"
        check_writable(fp32_path)
        say(f"exporting {text} to FP32 ONNX")
        exported = export_onnx(
            text,
            fp32_path,
            checkpoint=checkpoint,
            image_size=image_size,
            num_classes=num_classes,
            static_batch=static_batch,
            batch=batch,
            progress=say,
        )
        prepared = PreparedOnnx(
            fp32_path, "fp32", [f"exported {fp32_path} (FP32)"], {"export": exported}
        )
    else:
        path = Path(text)
        if path.suffix.lower() != ".onnx":
            from deploy_ran.models import closest_models

            suggestions = closest_models(text)
            raise DeployRanError(
                f"{text!r} is neither a model name nor an .onnx file.",
                hint=(f"Did you mean: {', '.join(suggestions)}? " if suggestions else "")
                + "Run `python cli.py models` for model names.",
            )
        if checkpoint or image_size or num_classes:
            raise DeployRanError(
                f"--checkpoint/--image-size/--num-classes cannot change {path}: an ONNX file "
                "already fixes its weights and size.",
                hint="Pass a model name to export it with those, or drop them.",
            )
        have = precision_of_file(path)
        prepared = PreparedOnnx(path, have, [f"using {path} ({have.upper()})"])
    if prepared.precision == precision:
        return prepared
    if prepared.precision != "fp32":
        raise DeployRanError(
            f"{prepared.path} is already {prepared.precision.upper()}; it cannot become "
            f"{precision.upper()}.",
            hint=f"Start from the FP32 ONNX file (or the model name) to build a {precision.upper()} engine.",
        )
    if precision == "fp16":
        from exporters.fp16 import convert_to_fp16

        say("converting to FP16")
        result = convert_to_fp16(prepared.path, progress=say)
        prepared.results["fp16"] = result
        prepared.steps.append(f"converted to {result.path} (FP16)")
        prepared.path, prepared.precision = Path(result.path), "fp16"
        return prepared
    from calibration.quantize import quantize_int8

    say("calibrating INT8")
    result = quantize_int8(prepared.path, progress=calibration_progress, **calibration)
    prepared.results["int8"] = result
    prepared.steps.append(f"calibrated {result.path} (INT8 Q/DQ; {result.ranges.cache_note})")
    prepared.path, prepared.precision = Path(result.path), "int8"
    return prepared
