"""Refuse a bad request before any work: settings, output path, labels, the lock and the runner.

Shared by the local loop (:mod:`deploy_ran.infer.run`) and the Ray driver
(:mod:`deploy_ran.infer.ray`), so both refuse alike. Errors name library parameters
(``batch_size``, ``resume``) and carry them in ``param``; the CLI maps them to flags.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from deploy_ran.errors import DeployRanError
from deploy_ran.fileio import (
    check_writable,
    clean_stale_temps,
    exclusive_lock,
    refuse_output_over_inputs,
)
from deploy_ran.infer.producer import producer_path
from deploy_ran.infer.records import output_format
from deploy_ran.reading import read_utf8_lines
from deploy_ran.runners import BaseRunner


def check_request(
    output: str | Path,
    *,
    batch_size: int,
    topk: int,
    resume: bool,
    overwrite: bool,
    inputs: Mapping[str, Any] | None = None,
) -> tuple[Path, str]:
    """Refuse bad settings before any work; returns the output path and its format.

    ``inputs`` (``{"labels": ..., "images": ..., "target": ..., "checkpoint": ...}``) are the
    files the run reads: an output that resolves to one of them is refused.
    """
    if batch_size < 1:
        raise DeployRanError(
            f"batch_size must be ≥ 1, got {batch_size}.",
            hint="Use e.g. batch_size=32.",
            param="batch_size",
        )
    if topk < 1:
        raise DeployRanError(
            f"topk must be ≥ 1, got {topk}.", hint="Use e.g. topk=5.", param="topk"
        )
    if resume and overwrite:
        raise DeployRanError(
            "resume and overwrite exclude each other.", hint="Pick one.", param="overwrite"
        )
    output = Path(output)
    given = {k: v for k, v in (inputs or {}).items() if isinstance(v, (str, os.PathLike))}
    refuse_output_over_inputs({"output": output}, given)
    fmt = output_format(output)
    check_writable(output)
    _refuse_existing(output, resume, overwrite)
    return output, fmt


def request_inputs(target: Any, images: Any, labels: Any, checkpoint: Any) -> dict[str, Any]:
    """The files an infer run reads (for :func:`check_request`): a target that is a file, an
    image list or folder given as one path, the labels and the checkpoint."""
    target_file = target if isinstance(target, (str, Path)) and Path(target).exists() else None
    return {"target": target_file, "images": images, "labels": labels, "checkpoint": checkpoint}


def _refuse_existing(output: Path, resume: bool, overwrite: bool) -> None:
    if output.exists() and output.stat().st_size > 0 and not (resume or overwrite):
        raise DeployRanError(
            f"{output} already exists.",
            hint="Set resume=True to continue it, overwrite=True to start again, or choose "
            "another output.",
            param="output",
        )


@contextlib.contextmanager
def output_lock(output: Path, *, resume: bool, overwrite: bool) -> Iterator[None]:
    """Be the one writer of ``output`` for the block (``.NAME.lock``), after clearing what dead
    runs left (their temporary files) and checking again that the output may be written: another
    run may have finished it while this one was starting."""
    with exclusive_lock(output, "infer run"):
        clean_stale_temps(output)
        clean_stale_temps(producer_path(output))
        _refuse_existing(output, resume, overwrite)
        yield


def read_labels(path: str | Path) -> list[str]:
    """One class name per line (blank trailing lines ignored), UTF-8 (a BOM is dropped).

    A file in another encoding (latin-1, cp1252, UTF-16) is refused with the line that failed
    rather than guessed: a wrongly decoded label would be written into every record.
    """
    lines = read_utf8_lines(path, "labels file", param="labels")
    if not lines:
        raise DeployRanError(
            f"Labels file {path} is empty.", hint="One class name per line.", param="labels"
        )
    return [ln.strip() for ln in lines]


def check_runner(
    runner: BaseRunner,
    *,
    output_name: str | None,
    topk: int,
    label_names: list[str] | None,
    labels: str | Path | None,
) -> str:
    """Refuse a runner ``infer`` cannot use; returns the name of the output holding the logits."""
    name = output_name or ("logits" if "logits" in runner.output_names else runner.output_names[0])
    if name not in runner.output_names:
        raise DeployRanError(
            f"{runner.name} has no output {name!r}.",
            hint=f"Outputs: {', '.join(runner.output_names)}.",
            param="output_name",
        )
    if len(runner.input_spec) != 1:
        raise DeployRanError("infer runs single-input image models.", hint="Check the model.")
    if runner.preprocessing is None:
        raise DeployRanError(
            f"{runner.name} does not say how to preprocess images.",
            hint="Use an ONNX file exported by deploy-ran (it carries the preprocessing) or a "
            "model name.",
        )
    classes = runner.num_classes
    if label_names is not None and classes is not None and len(label_names) != classes:
        raise DeployRanError(
            f"{labels} has {len(label_names)} labels but the model has {classes} classes.",
            hint="One label per class, in class-index order.",
            param="labels",
        )
    if classes is not None and topk > classes:
        raise DeployRanError(
            f"topk={topk} is more than the model's {classes} classes.",
            hint=f"Use topk={classes} or less.",
            param="topk",
        )
    return name
