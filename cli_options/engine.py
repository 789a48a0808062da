"""The engine group: TensorRT build flags → :class:`exporters.tensorrt.EngineBuildOptions`."""

from __future__ import annotations

from typing import Any

import cli_args as o
from cli_options.group import Field, Group, GroupValues
from exporters.tensorrt import EngineBuildOptions


def _check(values: GroupValues, given: dict[str, Any]) -> None:
    o.check_profile(**{k: given.get(k) for k in ("min_batch", "opt_batch", "max_batch")})


def _options(timing_cache: Any = None, **kwargs: Any) -> EngineBuildOptions:
    return EngineBuildOptions(timing_cache=str(timing_cache) if timing_cache else None, **kwargs)


ENGINE = Group(
    "TensorRT engine",
    _options,
    Field("min_batch", o.MinBatchOpt),
    Field("opt_batch", o.OptBatchOpt),
    Field("max_batch", o.MaxBatchOpt),
    Field("workspace", o.WorkspaceOpt, "workspace_mib"),
    Field("opt_level", o.OptLevelOpt, "optimization_level"),
    Field("timing_cache", o.TimingCacheOpt),
    Field("allow_tf32", o.Tf32Opt),
    Field("version_compatible", o.VersionCompatibleOpt),
    Field("hardware_compatibility", o.HardwareOpt),
    Field("layer_info", o.LayerInfoOpt),
    Field("verbose", o.VerboseOpt),
    defaults_from=EngineBuildOptions,
    check=_check,
)


def finish_flags(options: EngineBuildOptions) -> str:
    """The build options as this group's flags (the 'finish on a GPU host' command)."""
    defaults = ENGINE.defaults
    parts = []
    for fld in ENGINE.fields:
        value = getattr(options, fld.config_name or "")
        if value == defaults.get(fld.config_name) or value is None or fld.name == "verbose":
            continue
        parts.append(fld.flag() if value is True else f"{fld.flag()} {value}")
    return "".join(f"{p} " for p in parts)
