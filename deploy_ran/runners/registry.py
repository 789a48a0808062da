"""The backend registry: which runner takes which target, decided once, at the door.

As with timm's model registry (``deploy_ran.models.registry``), each backend module registers
itself with one line at its bottom::

    register_backend("ort", lambda t: t.kind == "onnx", _from_target, options=("providers", ...))

and ``deploy_ran/runners/__init__.py`` imports every backend module, so that importing the package
registers them all. This module imports no backend: adding a backend is one module plus one line
in that import list, and the lists other modules used to copy (``bench``'s backend choices, the
Triton URL schemes) are read from here.

:func:`load_runner` is the front door: it parses the target (:class:`deploy_ran.target.Target`)
and the device (:class:`deploy_ran.device.Device`) once, picks the backend whose ``matches`` takes
the target, refuses options the backend cannot honour (naming them), and calls its factory with
the parsed values, so no runner re-parses a path, a URL or a device string.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploy_ran.device import Device
from deploy_ran.runners.base import BaseRunner, RunnerError
from deploy_ran.target import Target

#: Options ``load_runner`` knows by name; each backend says which of them it honours. An option
#: left at ``None`` (or ``cuda_graph=False``) is "not given" and never refused.
RUNNER_OPTIONS = (
    "precision",
    "checkpoint",
    "image_size",
    "num_classes",
    "options",
    "providers",
    "threads",
    "cuda_graph",
    "channels_last",
)

#: Settings of the host process rather than of the artifact: a backend without a CPU thread pool
#: (an engine, a server) has nothing to apply them to, and nothing about the result changes, so
#: they go to the backends that honour them and are never refused (``infer X.plan --threads 1``).
HOST_SETTINGS = ("threads",)

#: ``factory(target, device, **options) -> BaseRunner``
Factory = Callable[..., BaseRunner]


@dataclass(frozen=True)
class Backend:
    """One registered backend.

    ``kind`` is the short name users see (``ort``); ``matches(target)`` says whether it runs a
    target; ``options`` are the :data:`RUNNER_OPTIONS` it honours, ``fixed_by`` why it ignores the
    others (for the refusal message); ``default_device`` is used when the caller gives none (an
    engine runs on ``cuda``); ``schemes`` are the URL schemes of a served backend.
    """

    kind: str
    matches: Callable[[Target], bool]
    factory: Factory
    options: frozenset[str]
    fixed_by: str
    default_device: str = "cpu"
    schemes: tuple[str, ...] = ()


_BACKENDS: dict[str, Backend] = {}


def register_backend(
    kind: str,
    matches: Callable[[Target], bool],
    factory: Factory,
    *,
    options: tuple[str, ...] = (),
    fixed_by: str = "the artifact fixes them",
    default_device: str = "cpu",
    schemes: tuple[str, ...] = (),
) -> Backend:
    """Register a backend under ``kind`` (see :class:`Backend`); registering a kind twice is a
    programming error, not an override, so two modules cannot silently fight over a name."""
    unknown = sorted(set(options) - set(RUNNER_OPTIONS))
    if unknown:
        raise ValueError(f"Backend {kind!r} names unknown runner options {unknown}")
    if kind in _BACKENDS:
        raise ValueError(f"Backend {kind!r} is registered twice")
    backend = Backend(
        kind,
        matches,
        factory,
        frozenset(options),
        fixed_by,
        default_device,
        tuple(s.lower() for s in schemes),
    )
    _BACKENDS[kind] = backend
    return backend


def list_backends() -> tuple[str, ...]:
    """Every registered backend kind, in registration order (``torch``, ``ort``, ...)."""
    return tuple(_BACKENDS)


def get_backend(kind: str) -> Backend:
    """The backend registered as ``kind``; a clear error naming the registered ones otherwise."""
    try:
        return _BACKENDS[kind]
    except KeyError:
        raise RunnerError(
            f"Unknown backend {kind!r}.",
            hint=f"Choose one of: {', '.join(_BACKENDS)}.",
            param="backend",
        ) from None


def served_schemes() -> tuple[str, ...]:
    """URL schemes some registered backend serves (``triton``, ``triton+grpc``, ...)."""
    return tuple(s for b in _BACKENDS.values() for s in b.schemes)


def backend_of(target: str | os.PathLike[str] | Target) -> Backend:
    """The backend that runs ``target``; the first registered one whose ``matches`` takes it."""
    target = Target.parse(target)
    for backend in _BACKENDS.values():
        if backend.matches(target):
            return backend
    if target.kind == "served":
        schemes = served_schemes()
        raise RunnerError(
            f"No backend serves {target.scheme}:// URLs ({target.text}).",
            hint=f"Served models are {', '.join(s + '://HOST:PORT/MODEL' for s in schemes)}."
            if schemes
            else "No server backend is registered.",
            param="target",
        )
    raise RunnerError(  # a registered kind without a backend: a packaging error, said plainly
        f"No registered backend runs {target.kind} targets ({target.text}).",
        hint=f"Registered backends: {', '.join(_BACKENDS) or 'none'}.",
        param="target",
    )


def backend_for(target: str | os.PathLike[str] | Target) -> str:
    """Which backend kind runs ``target`` (``torch``, ``ort``, ``trt``, ``triton``)."""
    return backend_of(target).kind


def honoured_options(target: str | os.PathLike[str] | Target, **settings: Any) -> dict[str, Any]:
    """The ``settings`` that the backend of ``target`` honours: for commands whose one setting
    serves several targets (``verify --threads`` with an ONNX file against an engine), so that
    each runner gets what applies to it while :func:`load_runner` still refuses a lone
    misplaced option."""
    options = backend_of(target).options
    return {k: v for k, v in settings.items() if k in options}


def load_runner(
    target: str | Path | Target,
    device: str | Device | None = None,
    *,
    precision: str | None = None,
    checkpoint: str | Path | None = None,
    image_size: int | None = None,
    num_classes: int | None = None,
    options: dict[str, Any] | None = None,
    providers: str | list[str] | None = None,
    threads: int | None = None,
    cuda_graph: bool = False,
    channels_last: bool | None = None,
    **backend_kwargs: Any,
) -> BaseRunner:
    """Build the runner for ``target`` on ``device`` (``None``: the backend's default, ``cpu``
    except for engines, which run only on ``cuda``).

    ``precision`` applies to PyTorch (``fp32``/``fp16``/``autocast``); ONNX files and engines
    carry their precision in the artifact (read once, by the :class:`Target`). ``options`` are
    model options (``attention``, ...). Options a backend cannot honour are refused with their
    names; ``backend_kwargs`` go to the backend's constructor as they are.
    """
    target = Target.parse(target)
    backend = backend_of(target)
    given = {
        "precision": precision,
        "checkpoint": checkpoint,
        "image_size": image_size,
        "num_classes": num_classes,
        "options": options or None,
        "providers": providers,
        "threads": threads,
        "cuda_graph": cuda_graph or None,
        "channels_last": channels_last,
    }
    given = {k: v for k, v in given.items() if v is not None}
    refused = [k for k in given if k not in backend.options and k not in HOST_SETTINGS]
    if refused:
        raise RunnerError(
            f"{', '.join(refused)} cannot apply to {target.text}: {backend.fixed_by}.",
            hint="Drop "
            + ("it" if len(refused) == 1 else "them")
            + (
                ", or pass a model name to export with those."
                if target.is_file and set(refused) & {"checkpoint", "image_size", "num_classes"}
                else "."
            ),
            param=refused[0],
        )
    parsed = Device.parse(device, default=backend.default_device)
    taken = {k: v for k, v in given.items() if k in backend.options}
    return backend.factory(target, parsed, **taken, **backend_kwargs)
