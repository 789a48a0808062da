"""The Triton repository group: every ``triton-repo`` flag → :class:`exporters.triton.RepoOptions`.

Defaults are the library's (``RepoOptions``); the checks that need no artifact run in
``RepoOptions.check`` before any export, those that need one (a plan's profile) when its config
is built.
"""

from __future__ import annotations

from typing import Any

import cli_args as o
from cli_options.group import Field, Group, GroupValues
from exporters.triton import RepoOptions


def _check(values: GroupValues, given: dict[str, Any]) -> None:
    values.refuse_unless(
        bool(given.get("tensorrt_accelerator")),
        "--tensorrt-accelerator",
        ["trt_cache_path", "trt_workspace"],
    )


TRITON_REPO = Group(
    "Triton model repository",
    RepoOptions,
    Field("name", o.RepoNameOpt),
    Field("max_batch", o.RepoMaxBatchOpt),
    Field("instances", o.InstancesOpt),
    Field("kind", o.KindOpt),
    Field("threads", o.RepoThreadsOpt),
    Field("max_queue_delay_us", o.QueueDelayOpt),
    Field("max_queue_size", o.MaxQueueSizeOpt),
    Field("labels", o.LabelsOpt),
    Field("preprocess", o.PreprocessOpt),
    Field("tensorrt_accelerator", o.TrtAcceleratorOpt),
    Field("trt_cache_path", o.TrtCachePathOpt),
    Field("trt_workspace", o.TrtWorkspaceOpt, "trt_workspace_mb"),
    Field("force", o.ForceOpt),
    defaults_from=RepoOptions,
    check=_check,
)
