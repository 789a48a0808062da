"""``load_runner``: one front door from whatever the user typed to a runner.

A registered model name builds a :class:`TorchRunner`, a ``.onnx`` file an :class:`OrtRunner`, a
``.plan``/``.engine`` file a :class:`TrtRunner`, a ``triton://HOST:PORT/MODEL`` URL (HTTP;
``triton+grpc://`` for gRPC) a :class:`TritonRunner` for a model served by Triton. Options that do not apply to the chosen backend
are ignored when left at ``None`` and refused when set, so a typo'd combination fails loudly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deploy_ran.convert import resolve_target
from deploy_ran.runners.base import BaseRunner, RunnerError

BACKENDS = ("torch", "ort", "trt", "triton")
_BACKEND_OF_KIND = {"model": "torch", "onnx": "ort", "engine": "trt", "served": "triton"}


def backend_for(target: str | Path) -> str:
    """Which backend runs ``target`` (a model name, an ONNX file or an engine)."""
    return _BACKEND_OF_KIND[resolve_target(target).kind]


def load_runner(
    target: str | Path,
    *,
    device: str = "cpu",
    precision: str | None = None,
    checkpoint: str | Path | None = None,
    image_size: int | None = None,
    num_classes: int | None = None,
    providers: str | list[str] | None = None,
    threads: int | None = None,
    cuda_graph: bool = False,
    channels_last: bool | None = None,
    options: dict[str, Any] | None = None,
    **backend_kwargs: Any,
) -> BaseRunner:
    """Build the runner for ``target``; see the module docstring for the dispatch rules.

    ``precision`` applies to PyTorch (``fp32``/``fp16``/``autocast``); ONNX files and engines
    carry their precision in the artifact. ``channels_last=None`` lets PyTorch pick its layout per
    device and precision (``torch_runner.CHANNELS_LAST_DEFAULTS``). ``options`` are model options (``attention``, ...).
    """
    backend = backend_for(target)
    if backend == "torch":
        if providers is not None:
            raise RunnerError(
                f"providers apply to ONNX files, not to the PyTorch model {target}.",
                hint="Drop providers, or pass the exported .onnx file.",
            )
        from deploy_ran.runners.torch_runner import TorchRunner

        return TorchRunner(
            str(target),
            checkpoint=checkpoint,
            image_size=image_size,
            num_classes=num_classes,
            device=device,
            precision=precision or "fp32",
            channels_last=channels_last,
            threads=threads,
            cuda_graph=cuda_graph,
            **(options or {}),
            **backend_kwargs,
        )
    _refuse_model_options(target, precision, checkpoint, image_size, num_classes, options)
    if backend == "triton":
        refused = {
            "--provider": providers,
            "--threads": threads,
            "--cuda-graphs": cuda_graph or None,
            "--channels-last": channels_last or None,
        }
        refused = [k for k, v in refused.items() if v is not None]
        if refused:
            raise RunnerError(
                f"{', '.join(refused)} cannot apply to {target}: the Triton server runs the model "
                "as its config says.",
                hint="Drop them; change the served model's config.pbtxt instead.",
            )
        from deploy_ran.runners.triton_runner import TritonRunner

        return TritonRunner(
            str(target), device=None if device == "cpu" else device, **backend_kwargs
        )
    if backend == "ort":
        from deploy_ran.runners.ort_runner import OrtRunner

        return OrtRunner(
            target,
            device=device,
            providers=providers,
            threads=threads,
            cuda_graph=cuda_graph,
            **backend_kwargs,
        )
    from deploy_ran.runners.trt_runner import TrtRunner

    return TrtRunner(target, device=device, cuda_graph=cuda_graph, **backend_kwargs)


def _refuse_model_options(target, precision, checkpoint, image_size, num_classes, options) -> None:
    """A file already fixes its weights, size and precision: refuse options that would not apply."""
    given = {
        "precision": precision,
        "checkpoint": checkpoint,
        "image_size": image_size,
        "num_classes": num_classes,
    }
    given = {k: v for k, v in given.items() if v is not None}
    if options:
        given["model options"] = options
    if given:
        raise RunnerError(
            f"{', '.join(given)} cannot change {target}: an exported file already fixes its "
            "weights, input size and precision.",
            hint="Drop them, or export a new file with `python cli.py export` "
            "(FP16/INT8 files come from the precision commands).",
        )
