"""The calibration group: every INT8 calibration flag, shared by ``calibrate`` and ``build-engine``.

Builds :class:`deploy_ran.convert.CalibrationConfig` with its defaults (written once, there).
Settings that do not apply to the chosen method are refused, not silently ignored.
"""

from __future__ import annotations

from typing import Any

import cli_args as o
from cli_options.group import Field, Group, GroupValues
from deploy_ran.convert import CalibrationConfig


def _check(values: GroupValues, given: dict[str, Any]) -> None:
    method = given.get("method", CalibrationConfig.method)
    values.refuse_unless(method == "percentile", "--method percentile", ["percentile"])
    values.refuse_unless(method != "minmax", "--method entropy or percentile", ["bins"])
    auto = "auto" in ",".join(given.get("exclude", ()))
    values.refuse_unless(auto, "--exclude auto", ["target_agreement"])


CALIBRATION = Group(
    "Calibration (INT8)",
    CalibrationConfig,
    Field("calib_data", o.CalibDataOpt, "data"),
    Field("method", o.MethodOpt),
    Field("percentile", o.PercentileOpt),
    Field("bins", o.BinsOpt),
    Field("calib_images", o.CalibImagesOpt, "num_images"),
    Field("calib_batch", o.Batch("Images per ONNX Runtime calibration run"), "batch"),
    Field("seed", o.SeedOpt),
    Field("exclude", o.ExcludeOpt),
    Field("target_agreement", o.TargetAgreementOpt),
    Field("include_attention", o.IncludeAttentionOpt),
    Field("sensitivity", o.SensitivityOpt),
    Field("eval_images", o.EvalImagesOpt),
    Field("no_cache", o.NoCacheOpt, "use_cache", invert=True),
    Field("calib_device", o.CalibDeviceOpt, "device"),
    Field("calib_allow_tf32", o.CalibTf32Opt, "allow_tf32"),
    Field("float_precision", o.FloatPrecisionOpt),
    Field("placement", o.PlacementOpt),
    Field("allow_failing", o.AllowFailingOpt, "require_pass", invert=True),
    defaults_from=CalibrationConfig,
    check=_check,
)

#: ``calibrate``'s spellings before the flags were shared with ``build-engine`` (hidden, one release).
CALIBRATE_OLD_NAMES = {
    "calib_data": "--data",
    "calib_batch": "--batch",
    "calib_device": "--device",
    "calib_images": "--num-images",
    "calib_allow_tf32": "--allow-tf32",  # the engine build's spelling, for calibrate alone
}
#: ``build-engine``'s spelling of ``--calib-images`` before (hidden, one release).
BUILD_ENGINE_OLD_NAMES = {"calib_images": "--num-images"}
