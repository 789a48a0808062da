"""Model registry in timm's style: one front door, a spec that travels with every model.

``create_model(name, ...)`` builds any registered network, ``list_models(pattern)`` lists the names
and ``get_spec(name)`` returns the :class:`ModelSpec` (input size, preprocessing, classes, outputs,
paper figures, reference) that the exporters, calibration and runners read instead of guessing.

As in timm, this module imports no model: each model module (``ran.py``, ``abn.py``,
``attend_rectify.py``) calls :func:`register_model` for its own names when it is imported, and the
package ``deploy_ran.models`` imports those modules, so the registry is full before anyone can ask
it. Model modules import this one, never the other way round: no import circle.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deploy_ran.errors import DeployRanError, UnknownModelError

#: Seed of the random initialisation of models built without a checkpoint (see create_model).
#: Exporters record it in an artifact's metadata, so a later stage can rebuild the same weights.
INIT_SEED = 0

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


@dataclass(frozen=True)
class ModelSpec:
    """Everything the toolkit needs to know about a model besides its weights.

    ``params`` and ``macs`` are this implementation's exact figures at the default input size and
    class count (tests rebuild the model and compare); ``paper_params``/``paper_macs`` are what the
    paper reports, for the reader's comparison. Preprocessing: resize the shorter side to
    ``resize_size``, centre-crop ``image_size``, scale to [0, 1], then ``(x - mean) / std``.
    """

    name: str
    family: str
    builder: Callable[..., nn.Module]
    image_size: int
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize_size: int
    params: int
    macs: int
    reference: str  # short citation, e.g. "Wang et al., CVPR 2017"
    description: str
    reference_url: str = ""
    outputs: tuple[str, ...] = ("logits",)
    min_image_size: int = 32
    paper_params: float | None = None  # millions
    paper_macs: float | None = None  # billions of multiply-adds
    options: dict[str, Any] = field(default_factory=dict)  # option name -> default
    option_choices: dict[str, tuple] = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (3, self.image_size, self.image_size)

    def preprocessing(self, image_size: int | None = None) -> dict[str, Any]:
        """Preprocessing for ``image_size`` (the crop keeps the spec's resize/crop ratio)."""
        size = image_size or self.image_size
        resize = round(size * self.resize_size / self.image_size)
        return {
            "resize_size": resize,
            "crop_size": size,
            "mean": list(self.mean),
            "std": list(self.std),
            "interpolation": "bilinear",
            "channel_order": "RGB",
            "layout": "NCHW",
            "scale": "1/255",
        }


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(spec: ModelSpec) -> ModelSpec:
    """Add a spec to the registry; names are unique."""
    if spec.name in _REGISTRY:
        raise ValueError(f"model {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style ``pattern``, sorted.

    A pattern without wildcards is a substring, as a person searching means it: ``resnet`` finds
    every ``abn_resnet*`` model (timm's ``list_models('*resnet*')``), ``ran56`` also finds
    ``ran56_cifar``.
    """
    if not any(ch in pattern for ch in "*?["):
        pattern = f"*{pattern}*"
    return sorted((n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern)), key=_natural_key)


def _natural_key(name: str) -> list:
    """Sort 'ran56' before 'ran128' (numbers compared as numbers), as timm does."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name.lower())]


def closest_models(name: str, n: int = 5) -> list[str]:
    """Names closest to ``name``: fuzzy matches first, then names sharing its prefix."""
    names = list(_REGISTRY)
    close = difflib.get_close_matches(name.lower(), names, n=n, cutoff=0.5)
    prefix = [m for m in sorted(names) if m.startswith(name.lower()[:3]) and m not in close]
    return (close + prefix)[:n]


def get_spec(name: str) -> ModelSpec:
    """The spec of a registered model; an unknown name lists the closest ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        suggestions = closest_models(name)
        hint = (
            f"Did you mean: {', '.join(suggestions)}?"
            if suggestions
            else "Run `python cli.py models` to see every model."
        )
        raise UnknownModelError(f"Unknown model {name!r}.", hint=hint) from None


def is_model_name(name: str) -> bool:
    """True when ``name`` is a registered model (and not, say, a file path)."""
    return name in _REGISTRY


def _check_options(spec: ModelSpec, options: dict[str, Any]) -> None:
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        raise DeployRanError(
            f"{spec.name} does not take option(s) {', '.join(unknown)}.",
            hint=f"Options for {spec.name}: {', '.join(sorted(spec.options)) or 'none'}.",
        )
    for key, value in options.items():
        choices = spec.option_choices.get(key)
        if choices is not None and value not in choices:
            raise DeployRanError(
                f"{spec.name}: {key}={value!r} is not valid.",
                hint=f"Choose one of: {', '.join(map(repr, choices))}.",
            )


def create_model(
    name: str,
    *,
    num_classes: int | None = None,
    image_size: int | None = None,
    checkpoint: str | Path | None = None,
    **options: Any,
) -> nn.Module:
    """Build a registered model, optionally load a checkpoint, and return it in eval mode.

    ``image_size`` fixes every upsampling size of the network (default: the spec's). With a
    checkpoint and no ``num_classes``, the class count is read from the checkpoint's classifier so
    that, e.g., a 10-class fine-tune loads without extra flags. Without a checkpoint the weights
    are random but seeded (:data:`INIT_SEED`), hence the same in every process.
    """
    spec = get_spec(name)
    _check_options(spec, options)
    size = image_size or spec.image_size
    if size < spec.min_image_size:
        raise DeployRanError(
            f"{name} needs an input of at least {spec.min_image_size}×{spec.min_image_size}, "
            f"got {size}.",
            hint=f"Use --image-size {spec.min_image_size} or larger (default {spec.image_size}).",
        )
    state = None
    if checkpoint is not None:
        from deploy_ran.models.checkpoint import classifier_classes, read_state_dict

        state = read_state_dict(checkpoint)
        if num_classes is None:
            num_classes = classifier_classes(state)
    kwargs = {**spec.options, **options}
    # Weights without a checkpoint are seeded, so the same name and options give the same
    # network in every process: an export and a later `verify NAME NAME.onnx` agree.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(INIT_SEED)
        model = spec.builder(num_classes=num_classes or spec.num_classes, image_size=size, **kwargs)
    model.spec = spec  # travels with the model, like timm's pretrained_cfg
    if state is not None:
        from deploy_ran.models.checkpoint import load_state_dict

        load_state_dict(model, state, source=str(checkpoint))
    model.eval()
    return model
