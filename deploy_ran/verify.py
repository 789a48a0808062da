"""Is the deployed model the same model? Run two runners on the same inputs and compare.

``verify(reference, candidate)`` builds both sides (model name, ONNX file or engine), feeds them the
same inputs (images preprocessed as the artifact says, ``.npy``/``.npz`` arrays, or a seeded random
set), and hands both runners to the comparator (:func:`deploy_ran.compare.run.compare`), which
judges the candidate against the criteria of its precision (:mod:`deploy_ran.compare.criteria` holds the
table of limits). Every criterion can be overridden or added to (``max_abs``, ``min_psnr``,
``min_top5``, and ``atol``/``rtol`` for an element-wise ``|c - r| ≤ atol + rtol·|r|`` check).
The inputs that match worst are named (file names for images, ``file.npy[i]`` or ``random[i]``
otherwise) so a failure can be looked at.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deploy_ran.compare.criteria import criteria_for, precision_family  # noqa: F401 - re-exported
from deploy_ran.compare.results import VerifyResult
from deploy_ran.compare.run import compare
from deploy_ran.device import Device
from deploy_ran.errors import DeployRanError
from deploy_ran.reading import require_regular_file
from deploy_ran.runners import BaseRunner, backend_for, honoured_options, load_runner
from deploy_ran.target import Target

# ------------------------------------------------------------------------------------ inputs


@dataclass
class VerifyInputs:
    """The samples both runners see, with a human name for each."""

    data: np.ndarray  # (N, C, H, W) float32
    names: list[str]
    source: str
    skipped: list[dict[str, str]] = field(default_factory=list)  # unreadable images


def load_inputs(
    data: str | Path | None,
    shape: tuple[int, int, int],
    *,
    preprocessing: dict[str, Any] | None = None,
    num: int | None = None,
    seed: int = 0,
    input_name: str = "input",
) -> VerifyInputs:
    """Images (folder/glob/.txt list), a ``.npy``/``.npz`` file, or ``num`` seeded random samples."""
    if data is None:
        n = num or 16
        rng = np.random.default_rng(seed)
        arr = rng.standard_normal((n, *shape), dtype=np.float32)
        return VerifyInputs(arr, [f"random[{i}]" for i in range(n)], f"random normal (seed {seed})")
    path = Path(data)
    suffix = path.suffix.lower()
    if suffix in (".npy", ".npz"):
        arr = _load_array(path, input_name)
        if arr.ndim == len(shape):
            arr = arr[None]
        if arr.ndim != len(shape) + 1 or tuple(arr.shape[1:]) != tuple(shape):
            raise DeployRanError(
                f"{path} holds an array of shape {list(arr.shape)}; the models expect "
                f"[N, {', '.join(map(str, shape))}].",
                hint="Save preprocessed NCHW samples at the model's input size.",
            )
        if not np.issubdtype(arr.dtype, np.floating):
            raise DeployRanError(
                f"{path} holds {arr.dtype} data; the models expect preprocessed float samples.",
                hint="Save the normalised float32 tensors, or pass the images themselves.",
            )
        if num:
            arr = arr[:num]
        names = [f"{path.name}[{i}]" for i in range(len(arr))]
        return VerifyInputs(np.ascontiguousarray(arr, dtype=np.float32), names, str(path))

    from deploy_ran.images import ImageError, find_images, load_and_preprocess

    if preprocessing is None:
        raise DeployRanError(
            "Neither side says how to preprocess images (no model spec, no ONNX metadata).",
            hint="Pass preprocessed arrays with --data FILE.npy, or use an artifact exported by "
            "deploy-ran.",
        )
    if int(preprocessing["crop_size"]) != shape[-1]:
        raise DeployRanError(
            f"The preprocessing crops {preprocessing['crop_size']} px but the models take "
            f"{shape[-1]} px.",
            hint="The artifact's metadata and its input disagree; re-export it.",
        )
    paths = find_images(data)
    if num:
        paths = paths[:num]
    arrays, names, skipped = [], [], []
    for p in paths:
        try:
            arrays.append(load_and_preprocess(p, preprocessing))
            names.append(str(p))
        except ImageError as exc:
            skipped.append({"path": str(p), "error": exc.message})
    if not arrays:
        raise DeployRanError(
            f"None of the {len(paths)} image(s) in {data} could be read.",
            hint="First error: " + (skipped[0]["error"] if skipped else "none"),
        )
    return VerifyInputs(np.stack(arrays), names, str(data), skipped)


def _load_array(path: Path, input_name: str) -> np.ndarray:
    require_regular_file(path, "data file", param="data")  # a FIFO would block np.load
    try:
        loaded = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise DeployRanError(
            f"{path} is not a readable numpy file ({type(exc).__name__}: {exc}).",
            hint="Save with np.save / np.savez (object arrays are refused).",
        ) from None
    if isinstance(loaded, np.ndarray):
        return loaded
    with loaded:
        keys = list(loaded.keys())
        key = input_name if input_name in keys else keys[0] if len(keys) == 1 else None
        if key is None:
            raise DeployRanError(
                f"{path} holds arrays {keys}; cannot tell which one is the input.",
                hint=f"Store the input under the key {input_name!r}, or save a single array.",
            )
        try:  # arrays inside an .npz are read only now (object arrays are refused here)
            return loaded[key]
        except Exception as exc:
            raise DeployRanError(
                f"{path}: array {key!r} cannot be read ({type(exc).__name__}: {exc}).",
                hint="Save plain numeric arrays with np.savez (object arrays are refused).",
            ) from None


# ------------------------------------------------------------------------------------ verify


def _build_sides(
    reference: str | Path | BaseRunner,
    candidate: str | Path | BaseRunner,
    *,
    device: str | Device | None,
    checkpoint: str | Path | None,
    candidate_checkpoint: str | Path | None,
    reference_precision: str | None,
    candidate_precision: str | None,
    providers: str | None,
    threads: int | None,
    image_size: int | None,
    options: dict[str, Any] | None,
    seed: int,
    allow_tf32: bool = False,
) -> tuple[BaseRunner, BaseRunner, list[str]]:
    """Build both runners; a PyTorch side takes size/options/classes from the other side's file."""
    import torch

    notes: list[str] = []
    # Each side is parsed once (kind and precision); the runners take the parsed Target.
    sides: dict[str, Any] = {
        k: v if isinstance(v, BaseRunner) else Target.parse(v)
        for k, v in (("reference", reference), ("candidate", candidate))
    }
    kinds = {k: "runner" if isinstance(v, BaseRunner) else backend_for(v) for k, v in sides.items()}
    settings = {
        "reference": (checkpoint, reference_precision),
        "candidate": (candidate_checkpoint or checkpoint, candidate_precision),
    }
    built: dict[str, BaseRunner] = {}
    # TF32 only when asked (--allow-tf32): ONNX Runtime's CUDA provider and cuDNN take it;
    # engines fix their arithmetic at build time and Triton in its config.
    tf32 = {"allow_tf32": True} if allow_tf32 else {}
    try:
        for key in ("reference", "candidate"):  # files first: they tell the PyTorch side its shape
            if kinds[key] in ("ort", "trt", "triton"):
                shared = honoured_options(sides[key], providers=providers, threads=threads)
                built[key] = load_runner(
                    sides[key], device=device, **shared, **(tf32 if kinds[key] == "ort" else {})
                )
            elif kinds[key] == "runner":
                built[key] = sides[key]
        hint_from = next((r for r in built.values() if getattr(r, "info", None) is not None), None)
        for key in ("reference", "candidate"):
            if kinds[key] != "torch":
                continue
            ckpt, precision = settings[key]
            size, opts, classes = image_size, dict(options or {}), None
            info = getattr(hint_from, "info", None)
            if info is not None and info.model == str(sides[key]):
                size = size or info.image_size
                opts = {**info.options, **opts}
                classes = info.num_classes
                if ckpt is None and info.checkpoint_sha256 is None:
                    from deploy_ran.models import INIT_SEED  # this side builds a torch model anyway

                    if info.init_seed != INIT_SEED:
                        raise DeployRanError(
                            f"{hint_from.name} was exported from random weights this version "
                            f"cannot rebuild, and {sides[key]} without --checkpoint gets other "
                            "ones: the comparison would mean nothing.",
                            hint="Export with --checkpoint W.pt and verify with the same --checkpoint.",
                        )
                    notes.append(
                        f"no checkpoint: {sides[key]} uses the seeded random weights "
                        f"{hint_from.name} was exported from"
                    )
                elif ckpt is None:
                    raise DeployRanError(
                        f"{hint_from.name} was exported from a checkpoint (sha256 "
                        f"{info.checkpoint_sha256[:12]}…), but {sides[key]} was given none.",
                        hint="Pass the same weights with --checkpoint W.pt.",
                    )
                if ckpt is not None and info.checkpoint_sha256 is not None:
                    from deploy_ran.fileio import sha256_file

                    if sha256_file(ckpt) != info.checkpoint_sha256:
                        notes.append(
                            f"{ckpt} is not the checkpoint {hint_from.name} was exported from "
                            "(sha256 differs)."
                        )
            elif hint_from is not None:
                size = size or (hint_from.input_spec[0].shape[-1] if hint_from.input_spec else None)
            # Two PyTorch sides without a checkpoint must start from the same random weights.
            with torch.random.fork_rng():
                torch.manual_seed(seed)
                built[key] = load_runner(
                    sides[key],
                    device=device,
                    precision=precision,
                    checkpoint=ckpt,
                    image_size=size,
                    num_classes=classes if ckpt is None else None,
                    threads=threads,
                    options=opts,
                    **tf32,
                )
        if all(k == "torch" for k in kinds.values()) and checkpoint is None:
            notes.append("both sides are PyTorch with the same seeded random weights")
    except BaseException:
        for k, r in built.items():
            if kinds[k] != "runner":
                r.close()
        raise
    return built["reference"], built["candidate"], notes


def verify(
    reference: str | Path | BaseRunner,
    candidate: str | Path | BaseRunner,
    *,
    data: str | Path | None = None,
    num_inputs: int | None = None,
    batch_size: int = 8,
    seed: int = 0,
    criteria: dict[str, float | None] | None = None,
    device: str | Device | None = None,
    checkpoint: str | Path | None = None,
    candidate_checkpoint: str | Path | None = None,
    reference_precision: str | None = None,
    candidate_precision: str | None = None,
    providers: str | None = None,
    threads: int | None = None,
    image_size: int | None = None,
    options: dict[str, Any] | None = None,
    show_worst: int = 5,
    progress: Callable[[str, int, int], None] | None = None,
    allow_tf32: bool = False,
) -> VerifyResult:
    """Compare ``candidate`` with ``reference`` on the same inputs; see the module docstring.

    ``progress(side, done, total)`` is called after each batch. Runners passed in are used as
    they are and left open; runners built here are closed. ``device`` ``None`` runs each side on
    its backend's default device (the CPU; an engine on ``cuda``).
    """
    started = time.perf_counter()
    if batch_size < 1:
        raise DeployRanError(f"batch_size must be ≥ 1, got {batch_size}.", hint="E.g. 8.")
    ref, cand, notes = _build_sides(
        reference,
        candidate,
        device=device,
        checkpoint=checkpoint,
        candidate_checkpoint=candidate_checkpoint,
        reference_precision=reference_precision,
        candidate_precision=candidate_precision,
        providers=providers,
        threads=threads,
        image_size=image_size,
        options=options,
        seed=seed,
        allow_tf32=allow_tf32,
    )
    owned = [r for r, given in ((ref, reference), (cand, candidate)) if r is not given]
    try:
        if len(ref.input_spec) != 1 or len(cand.input_spec) != 1:
            raise DeployRanError(
                "verify compares single-input image models.",
                hint="Both sides must have exactly one input.",
            )
        shapes = [tuple(r.input_spec[0].shape[1:]) for r in (ref, cand)]
        if shapes[0] != shapes[1]:
            raise DeployRanError(
                f"The inputs differ: reference {ref.input_spec[0]}, candidate {cand.input_spec[0]}.",
                hint="Compare artifacts built at the same --image-size.",
            )
        inputs = load_inputs(
            data,
            shapes[0],  # type: ignore[arg-type]
            preprocessing=ref.preprocessing or cand.preprocessing,
            num=num_inputs,
            seed=seed,
            input_name=ref.input_spec[0].name,
        )
        if inputs.skipped:
            notes.append(f"{len(inputs.skipped)} unreadable image(s) skipped")
        result = compare(
            ref,
            cand,
            inputs.data,
            criteria,
            sample_names=inputs.names,
            batch_size=batch_size,
            input_source=inputs.source,
            notes=notes,
            show_worst=show_worst,
            progress=progress,
        )
        result.inputs.update({"seed": seed if data is None else None, "skipped": inputs.skipped})
        result.seconds = time.perf_counter() - started
        return result
    finally:
        for r in owned:
            r.close()
