"""Whether an existing FP32 export is the one a request would write, and if not, how it differs.

``export ran56_cifar`` then ``build-engine ran56_cifar --int8`` in the same folder used to stop on
``ran56_cifar.onnx exists and was not named as an output``, and ``bench ran56_cifar`` re-exported
a file that was already there. The conversion layer now reuses an FP32 file whose metadata says
it is what the request would produce (model, weights, input size, classes, model options, batch,
opset) and refuses only a file that differs, listing each field as ``existing vs requested``.

A file without the toolkit's metadata (written by another tool) is never reused: nothing says
what it holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploy_ran.artifacts import ArtifactInfo, get_metadata, load_onnx
from deploy_ran.onnx_graph import graph_inputs


@dataclass(frozen=True)
class Difference:
    """One field where the existing file and the request disagree."""

    field: str
    existing: Any
    requested: Any

    def __str__(self) -> str:
        return f"{self.field}: {self.existing} vs {self.requested}"


def requested_fields(
    model: str,
    *,
    checkpoint: str | Path | None,
    image_size: int | None,
    num_classes: int | None,
    options: Mapping[str, Any],
    batch: int,
    static_batch: bool,
    opset: int,
) -> dict[str, Any]:
    """What an export of ``model`` with these settings records, field by field (the model's
    own defaults filled in, as the exporter fills them; classes only when asked for)."""
    from deploy_ran.fileio import sha256_file
    from deploy_ran.models import INIT_SEED, get_spec

    spec = get_spec(model)
    fields = {
        "model": model,
        "weights": f"checkpoint sha256 {sha256_file(checkpoint)[:12]}"
        if checkpoint is not None
        else f"seeded random weights (seed {INIT_SEED})",
        "image_size": image_size or spec.image_size,
        "num_classes": num_classes,
        "options": {**spec.options, **options},
        "batch": f"static {batch}" if static_batch else "dynamic",
        "opset": opset,
    }
    if num_classes is None:  # a checkpoint may fix the classes: compare only what was asked
        del fields["num_classes"]
    return fields


def existing_fields(path: Path) -> dict[str, Any] | None:
    """The same fields as recorded in the file ``path``; ``None`` for a file without the
    toolkit's metadata."""
    proto = load_onnx(path, load_weights=False)
    props = get_metadata(proto)
    info = ArtifactInfo.from_props(props)
    if not info.model:
        return None
    if info.checkpoint_sha256:
        weights = f"checkpoint sha256 {info.checkpoint_sha256[:12]}"
    elif info.init_seed is not None:
        weights = f"seeded random weights (seed {info.init_seed})"
    else:
        weights = "unknown weights"
    inputs = graph_inputs(proto)
    dims = inputs[0].type.tensor_type.shape.dim if inputs else []
    static = bool(dims) and dims[0].HasField("dim_value") and dims[0].dim_value > 0
    return {
        "model": info.model,
        "weights": weights,
        "image_size": info.image_size,
        "num_classes": info.num_classes,
        "options": info.options,
        "batch": f"static {dims[0].dim_value}" if static else "dynamic",
        "opset": int(info.extra["opset"]) if info.extra.get("opset", "").isdigit() else None,
    }


def differences(path: Path, requested: Mapping[str, Any]) -> list[Difference]:
    """Every field where the file at ``path`` differs from ``requested``; a file without the
    toolkit's metadata differs in ``metadata``."""
    existing = existing_fields(path)
    if existing is None:
        return [Difference("metadata", "none (not written by deploy-ran)", "a deploy-ran export")]
    return [
        Difference(name, existing.get(name), value)
        for name, value in requested.items()
        if existing.get(name) != value
    ]
