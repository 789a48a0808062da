"""The model group (weights, input size, classes) and the export group built on it.

Both build :class:`deploy_ran.convert.ExportConfig`; a file target ignores them (``convert``
refuses model-only settings for a file).
"""

from __future__ import annotations

from typing import Any

import cli_args as o
from cli_options.group import Field, Group
from deploy_ran.convert import ExportConfig

_MODEL_FIELDS = (
    Field("checkpoint", o.CheckpointOpt),
    Field("image_size", o.ImageSizeOpt),
    Field("num_classes", o.NumClassesOpt),
)
_MODEL_OPTIONS = ("attention", "attention_residual", "mask", "variant", "attention_maps", "outputs")


def _export_config(**kwargs: Any) -> ExportConfig:
    picked = {k: kwargs.pop(k, None) for k in _MODEL_OPTIONS}
    picked["arl"] = picked.pop("attention_residual")
    return ExportConfig(**kwargs, options=o.model_options(**picked))


MODEL = Group("Model", ExportConfig, *_MODEL_FIELDS, defaults_from=ExportConfig)

EXPORT = Group(
    "Export",
    _export_config,
    *_MODEL_FIELDS,
    Field("batch", o.Batch("Example batch; the fixed batch with --static-batch")),
    Field("static_batch", o.StaticBatchOpt),
    Field("opset", o.OpsetOpt),
    Field("no_simplify", o.NoSimplifyOpt, "simplify", invert=True),
    Field("attention", o.AttentionOpt),
    Field("attention_residual", o.ArlOpt),
    Field("mask", o.MaskOpt),
    Field("variant", o.VariantOpt),
    Field("attention_maps", o.AttentionMapsOpt),
    Field("outputs", o.OutputsOpt),
    defaults_from=ExportConfig,
)
