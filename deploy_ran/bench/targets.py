"""What a benchmark measures: its target and artifacts, resolved once.

``bench`` takes every target its job allows: a model name (PyTorch rows, plus an FP32 ONNX export
for ONNX Runtime), an ``.onnx`` file, an engine, or a served ``triton://`` URL. A file or URL
target is benchmarked as it is (it joins the artifacts); its model name and input size come from
its own metadata, so ``bench ran56_cifar.onnx`` needs nothing else. Every artifact must be of the
benchmarked model and size, or its speedup would compare different things.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploy_ran.errors import DeployRanError
from deploy_ran.runners import backend_for
from deploy_ran.target import Target

#: The backends a model-name benchmark runs when none are named (engines when one is given).
DEFAULT_MODEL_BACKENDS = ("torch", "ort")


@dataclass
class BenchTargets:
    """The resolved plan: ``model`` (the name rows and reports carry), ``image_size``,
    each artifact's backend (``kinds``) and facts (``metas``), the ``backends`` to run, and
    whether an FP32 ONNX is to be exported when none is among the artifacts (model-name
    targets only: a file target is measured as given)."""

    model: str
    image_size: int
    kinds: dict[Target, str]
    metas: dict[Target, dict[str, Any]]
    backends: tuple[str, ...]
    export_reference: bool


def resolve_bench_targets(
    target: str | Path,
    artifacts: tuple[str | Path, ...],
    backends: tuple[str, ...] | None,
    image_size: int | None,
) -> BenchTargets:
    """Resolve what to measure; see the module docstring. Refuses an artifact of another model
    or size, a model-name artifact, and an artifact whose backend is left out of ``backends``."""
    from deploy_ran.models import get_spec, is_model_name

    main = Target.parse(target)
    given = [Target.parse(a) for a in artifacts]
    for t in given:
        if t.is_model:
            raise DeployRanError(
                f"artifacts take .onnx/.plan/.engine files or served URLs, got {t.text}.",
                hint="The PyTorch model is benchmarked from the model name itself.",
                param="artifacts",
            )
    listed = given if main.is_model else [main, *(t for t in given if t != main)]
    kinds = {t: backend_for(t) for t in listed}
    first = {} if main.is_model else _facts(main)
    model = main.text if main.is_model else first.get("model") or _stem(main)
    size = image_size or first.get("image_size")
    if size is None and is_model_name(model):
        size = get_spec(model).image_size
    if size is None:
        raise DeployRanError(
            f"Cannot tell the input size of {main.text} (it records none).",
            hint="Set image_size.",
            param="image_size",
        )
    if backends is None:
        found = tuple(dict.fromkeys(kinds.values()))
        backends = (
            DEFAULT_MODEL_BACKENDS + tuple(k for k in found if k not in DEFAULT_MODEL_BACKENDS)
            if main.is_model
            else found
        )
    for t, kind in kinds.items():
        if kind not in backends:
            raise DeployRanError(
                f"{t.text} runs on the {kind} backend, which is not in backends {list(backends)}.",
                hint=f"Add {kind} to backends.",
                param="backends",
            )
    if "torch" in backends and not is_model_name(model):
        raise DeployRanError(
            f"{main.text} records no model name, so there is no PyTorch model to run.",
            hint="Drop torch from backends, or benchmark the model name with this file among the "
            "artifacts.",
            param="backends",
        )
    metas = {t: _check_artifact(t, model, int(size)) for t in kinds}
    return BenchTargets(model, int(size), kinds, metas, tuple(backends), main.is_model)


def _stem(target: Target) -> str:
    """A name for a target that records no model: the file's stem, or a URL's last part."""
    if target.path is not None:
        return target.path.name.split(".")[0]
    return target.text.rstrip("/").rsplit("/", 1)[-1].split("?")[0]


def _facts(target: Target) -> dict[str, Any]:
    """Model, input size and precision as the artifact records them (nothing for a URL: the
    server is asked when its runner is built)."""
    from deploy_ran.artifacts import read_artifact_info
    from deploy_ran.trt_compat import read_sidecar

    if target.kind == "onnx":
        info = read_artifact_info(target.path)
        return {"model": info.model, "image_size": info.image_size, "precision": target.precision}
    if target.kind == "engine":
        side = read_sidecar(target.path) or {}
        return {
            "model": side.get("model"),
            "image_size": side.get("image_size"),
            "precision": target.precision or "?",
        }
    return {"model": None, "image_size": None, "precision": "-"}


def _check_artifact(target: Target, model: str, image_size: int) -> dict[str, Any]:
    """An artifact must be for the benchmarked model and size (else its speedup means nothing)."""
    meta = _facts(target)
    if meta["model"] and meta["model"] != model:
        raise DeployRanError(
            f"{target.text} is an artifact of {meta['model']}, not {model}.",
            hint=f"Benchmark it with model {meta['model']}, or pass {model}'s artifacts.",
            param="artifacts",
        )
    if meta["image_size"] and int(meta["image_size"]) != image_size:
        raise DeployRanError(
            f"{target.text} takes {meta['image_size']} px inputs; this benchmark is at "
            f"{image_size} px.",
            hint=f"Set image_size={meta['image_size']}.",
            param="image_size",
        )
    return meta
