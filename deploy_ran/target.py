"""What the user named, resolved once: ``Target.parse("ran92.int8.onnx")``.

A target is one of four kinds, and every command decides which only here:

* ``model``: a registered model name (``ran56_cifar``);
* ``onnx``: an existing ``.onnx`` file (FP32, FP16 or INT8 Q/DQ);
* ``engine``: an existing TensorRT plan (``.plan``/``.engine``), its facts in the sidecar JSON;
* ``served``: a URL (``triton://HOST:8000/MODEL``) of a model a server runs. Which schemes a
  server backend speaks is the runner registry's business (``deploy_ran.runners.registry``), so
  this ground-floor module knows no scheme list: any ``SCHEME://`` text is a served target, and
  ``load_runner`` says when no backend takes its scheme.

A file's precision is read at most once (an ONNX file's from the graph ``parse`` loads anyway to
check the file; an engine's sidecar the first time someone asks for ``target.precision``), and
then carried: the verify path used to open the same file three times to learn it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from deploy_ran.errors import DeployRanError, UnknownModelError

TARGET_KINDS = ("model", "onnx", "engine", "served")
#: File suffixes of a serialized TensorRT engine (the one list).
ENGINE_SUFFIXES = (".plan", ".engine")
_URL = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]+)://")  # two letters at least: not a drive (C://)


def is_url(text: str | os.PathLike[str]) -> bool:
    """Whether ``text`` is a ``SCHEME://`` URL (a served target), not a path."""
    return isinstance(text, str) and _URL.match(text) is not None


@dataclass(frozen=True)
class Target:
    """A resolved target: ``kind``, the ``text`` the user typed, and the ``path`` of a file.

    ``declared_precision`` lets a caller that already knows the precision (a file it just wrote)
    say so; otherwise :attr:`precision` reads it from the file once.
    """

    kind: str
    text: str
    path: Path | None = None
    declared_precision: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in TARGET_KINDS:
            raise ValueError(f"Target kind must be one of {TARGET_KINDS}, got {self.kind!r}")

    # ------------------------------------------------------------------ the one front door

    @classmethod
    def parse(cls, target: str | os.PathLike[str] | Target) -> Target:
        """A model name, an existing ``.onnx`` file, an existing ``.plan``/``.engine`` file or a
        ``SCHEME://`` URL. An unknown name suggests the nearest model names; a file of another
        kind says what was expected; a missing or corrupt ONNX file says so now, not later."""
        if isinstance(target, Target):
            return target
        text = os.fspath(target)
        if is_url(text):
            return cls("served", text)
        path = Path(text)
        suffix = path.suffix.lower()
        if suffix == ".onnx":
            from deploy_ran.artifacts import load_onnx, precision_of

            # One read (graph only, no weights): clear errors for a missing, empty or corrupt
            # file now, and the precision from the same proto.
            model = load_onnx(path, load_weights=False)
            return cls("onnx", text, path, precision_of(model))
        if suffix in ENGINE_SUFFIXES:
            if not path.is_file():
                raise DeployRanError(
                    f"Engine file {text} does not exist.",
                    hint="Check the path; build one with `python cli.py build-engine MODEL.onnx`.",
                    param="target",
                )
            return cls("engine", text, path)
        from deploy_ran.models import closest_models, is_model_name

        if is_model_name(text):
            return cls("model", text)
        if path.exists():
            raise DeployRanError(
                f"Cannot tell what {text} is: expected a model name, a .onnx file or a "
                ".plan/.engine file.",
                hint="Rename the file with its real extension, or pass a model name.",
                param="target",
            )
        suggestions = closest_models(text)
        raise UnknownModelError(
            f"{text!r} is neither a model name nor an existing .onnx/.plan/.engine file.",
            hint=(f"Did you mean: {', '.join(suggestions)}? " if suggestions else "")
            + "Run `python cli.py models` for model names; a served model is "
            "triton://HOST:8000/MODEL (or triton+grpc://HOST:8001/MODEL).",
        )

    # ------------------------------------------------------------------ what it carries

    @property
    def is_model(self) -> bool:
        return self.kind == "model"

    @property
    def is_file(self) -> bool:
        return self.kind in ("onnx", "engine")

    @property
    def scheme(self) -> str | None:
        """The URL scheme of a served target, lower case (``triton+grpc``); ``None`` otherwise."""
        match = _URL.match(self.text) if self.kind == "served" else None
        return match.group(1).lower() if match else None

    @cached_property
    def precision(self) -> str | None:
        """``fp32``/``fp16``/``int8`` of a file, read once: an ONNX file's graph, an engine's
        sidecar (``None`` for an engine without one); ``None`` for a model name or a URL, whose
        precision is a choice (PyTorch) or the server's."""
        if self.declared_precision is not None:
            return self.declared_precision
        if self.kind == "onnx":
            from deploy_ran.artifacts import load_onnx, precision_of

            return precision_of(load_onnx(self.path, load_weights=False))
        if self.kind == "engine":
            from deploy_ran.trt_compat import read_sidecar

            return (read_sidecar(self.path) or {}).get("precision")
        return None

    def __str__(self) -> str:
        return self.text
