"""Attention maps of a model on real images, and a PNG grid that overlays them.

Maps come from one of two places, which give the same numbers:

* a **PyTorch model** from the registry, built with ``return_attention=True`` (plus a checkpoint);
* an **ONNX file** exported with attention maps (``export --attention-maps``), run in ONNX Runtime.

Either way an image goes through :mod:`deploy_ran.images` (any PIL mode → RGB, the model's
resize/crop/normalisation), and every 4-D output ``[batch, C, h, w]`` is an attention map: RAN's
channel-averaged soft masks (C = 1), ABN's map M (C = 1), A&R's head masks (C = heads). The grid
shows, for each image, the crop the network saw, then each map channel upsampled bilinearly to the
crop and overlaid with a colour map; each panel is scaled to its own min–max so that softmax masks
(which sum to 1 over the positions) are as visible as sigmoid ones. Titles carry the output names.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from deploy_ran.errors import DeployRanError, OnnxFileError
from deploy_ran.fileio import atomic_path, check_writable, refuse_output_over_inputs
from deploy_ran.images import find_images, load_rgb, preprocess

MAP_PREFIX = "attention_"
MAX_COLUMNS = 8  # panels per grid row; an image with more maps wraps onto further rows
CHUNK = 16  # images per forward pass


@dataclass
class AttentionMap:
    """One attention output for one image: ``values`` is ``[C, h, w]`` float32."""

    name: str  # the graph output's name, e.g. "attention_stage1_module1" or "attention"
    values: np.ndarray

    @property
    def title(self) -> str:
        """The module name: the output name without the ``attention_`` prefix."""
        return self.name[len(MAP_PREFIX) :] if self.name.startswith(MAP_PREFIX) else self.name


@dataclass
class ImageAttention:
    """An input image (the crop the network saw, as RGB) and its attention maps."""

    path: Path
    crop: Image.Image
    maps: list[AttentionMap]


@dataclass
class AttentionResult:
    """Attention maps of one model or ONNX file on a set of images."""

    source: str
    backend: str  # "pytorch" or "onnxruntime"
    image_size: int
    items: list[ImageAttention]
    notes: list[str] = field(default_factory=list)

    @property
    def map_names(self) -> list[str]:
        return [m.name for m in self.items[0].maps] if self.items else []


# --------------------------------------------------------------------------------------------
# images


def collect_images(sources: Iterable[str | Path]) -> list[Path]:
    """Image paths from files, folders, globs or ``.txt`` lists, in the order given."""
    paths: list[Path] = []
    for source in sources:
        paths.extend(find_images(source))
    if not paths:
        raise DeployRanError("No images given.", hint="Pass one or more image files or folders.")
    return paths


def prepare_images(
    paths: Sequence[Path], preprocessing: dict[str, Any]
) -> tuple[np.ndarray, list[Image.Image]]:
    """Decode and preprocess every image; return the NCHW batch and the RGB crops it came from."""
    mean = np.asarray(preprocessing["mean"], dtype=np.float32)[:, None, None]
    std = np.asarray(preprocessing["std"], dtype=np.float32)[:, None, None]
    arrays, crops = [], []
    for path in paths:
        array = preprocess(load_rgb(path), preprocessing)  # ImageError names a bad file
        arrays.append(array)
        rgb = np.clip((array * std + mean) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        crops.append(Image.fromarray(rgb.transpose(1, 2, 0), "RGB"))
    return np.stack(arrays), crops


def _split_maps(names: Sequence[str], outputs: Sequence[np.ndarray], count: int) -> list[list]:
    """Per image, the 4-D outputs as :class:`AttentionMap` (other outputs are not maps)."""
    per_image: list[list[AttentionMap]] = [[] for _ in range(count)]
    for name, value in zip(names, outputs):
        if value.ndim != 4:
            continue
        for i in range(count):
            per_image[i].append(AttentionMap(name, np.asarray(value[i], dtype=np.float32)))
    return per_image


# --------------------------------------------------------------------------------------------
# PyTorch


def attention_from_model(
    name: str,
    images: Sequence[str | Path],
    *,
    checkpoint: str | Path | None = None,
    image_size: int | None = None,
    num_classes: int | None = None,
    **options: Any,
) -> AttentionResult:
    """Attention maps of registered model ``name`` (built with ``return_attention=True``)."""
    import torch

    from deploy_ran.models import create_model, get_spec

    spec = get_spec(name)
    paths = collect_images(images)
    size = image_size or spec.image_size
    batch, crops = prepare_images(paths, spec.preprocessing(size))
    model = create_model(
        name,
        checkpoint=checkpoint,
        image_size=size,
        num_classes=num_classes,
        return_attention=True,
        **options,
    )
    names = list(model.output_names)
    chunks: list[list[np.ndarray]] = []
    with torch.no_grad():
        for start in range(0, len(batch), CHUNK):
            out = model(torch.from_numpy(batch[start : start + CHUNK]))
            out = (out,) if isinstance(out, torch.Tensor) else out
            chunks.append([o.float().numpy() for o in out])
    outputs = [np.concatenate(parts) for parts in zip(*chunks)]
    maps = _split_maps(names, outputs, len(paths))
    items = [ImageAttention(p, c, m) for p, c, m in zip(paths, crops, maps)]
    return AttentionResult(name, "pytorch", size, items)


# --------------------------------------------------------------------------------------------
# ONNX


@dataclass
class OnnxAttentionInfo:
    """What the visualiser needs to know about an ONNX file before running it."""

    input_name: str
    input_dtype: str  # "float32" or "float16"
    batch: int | None  # fixed batch size, or None for a dynamic batch
    image_size: int
    preprocessing: dict[str, Any]
    map_outputs: list[str]
    model: str | None
    notes: list[str] = field(default_factory=list)


def describe_onnx_for_attention(path: str | Path) -> OnnxAttentionInfo:
    """Check that ``path`` takes one ``[batch, 3, H, H]`` image and outputs attention maps."""
    import onnx

    from deploy_ran.artifacts import ArtifactInfo, get_metadata, load_onnx
    from deploy_ran.models import get_spec, is_model_name

    proto = load_onnx(path, load_weights=False)
    info = ArtifactInfo.from_props(get_metadata(proto))
    initializers = {i.name for i in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise OnnxFileError(
            f"{path} has {len(inputs)} inputs; the visualiser needs one image input.",
            hint="Export the model with `python cli.py export NAME --attention-maps`.",
        )
    tensor = inputs[0].type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
    dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name
    if len(dims) != 4 or dims[1] != 3 or dims[2] is None or dims[2] != dims[3]:
        raise OnnxFileError(
            f"{path} takes input {inputs[0].name!r} of shape "
            f"[{', '.join('?' if d is None else str(d) for d in dims)}]; the visualiser needs a "
            "square RGB image input [batch, 3, H, H] with a fixed H.",
            hint="Use an ONNX file written by `python cli.py export NAME --attention-maps`.",
        )
    if dtype not in ("float32", "float16"):
        raise OnnxFileError(
            f"{path} takes {dtype} input; the visualiser feeds float32 or float16 images.",
            hint="Use the FP32 or FP16 ONNX file (an INT8 Q/DQ file still takes float input).",
        )
    size = int(dims[2])
    if info.image_size is not None and int(info.image_size) != size:
        raise OnnxFileError(
            f"{path} says in its metadata that it was built for {info.image_size}×"
            f"{info.image_size} images, but its input is {size}×{size}.",
            hint="The file was edited or its metadata is stale; re-export it.",
        )
    notes: list[str] = []
    if info.preprocessing:
        preprocessing = dict(info.preprocessing)
    elif info.model and is_model_name(info.model):
        preprocessing = get_spec(info.model).preprocessing(size)
    else:
        from deploy_ran.models.registry import IMAGENET_MEAN, IMAGENET_STD

        preprocessing = {
            "resize_size": round(size * 256 / 224),
            "crop_size": size,
            "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD),
        }
        notes.append(
            "the file has no deploy-ran preprocessing metadata: used ImageNet mean/std and a "
            "256/224 resize/crop ratio"
        )
    if int(preprocessing.get("crop_size", size)) != size:
        preprocessing["crop_size"] = size
    maps = [o.name for o in proto.graph.output if len(o.type.tensor_type.shape.dim) == 4]
    if not maps:
        outputs = ", ".join(o.name for o in proto.graph.output)
        model = info.model or "NAME"
        raise OnnxFileError(
            f"{path} has no attention-map outputs (its outputs: {outputs}).",
            hint=f"Re-export it with attention maps: python cli.py export {model} --attention-maps",
        )
    batch = dims[0]
    return OnnxAttentionInfo(
        input_name=inputs[0].name,
        input_dtype=dtype,
        batch=int(batch) if batch else None,
        image_size=size,
        preprocessing=preprocessing,
        map_outputs=maps,
        model=info.model,
        notes=notes,
    )


def run_onnx(path: str | Path, input_name: str, batch: np.ndarray, outputs: list[str]) -> list:
    """Run ``outputs`` of an ONNX file on ``batch`` with ONNX Runtime on the CPU.

    The only place this module touches ONNX Runtime, so it can move onto a shared runner.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise OnnxFileError(
            f"ONNX Runtime cannot load {path} ({type(exc).__name__}: {str(exc).splitlines()[0]}).",
            hint="Re-export it with `python cli.py export NAME --attention-maps`.",
        ) from None
    return session.run(outputs, {input_name: batch})


def attention_from_onnx(path: str | Path, images: Sequence[str | Path]) -> AttentionResult:
    """Attention maps of an ONNX file exported with ``--attention-maps``, via ONNX Runtime."""
    desc = describe_onnx_for_attention(path)
    paths = collect_images(images)
    batch, crops = prepare_images(paths, desc.preprocessing)
    batch = batch.astype(desc.input_dtype)
    step = desc.batch or CHUNK
    chunks = []
    for start in range(0, len(batch), step):
        part = batch[start : start + step]
        real = len(part)
        if desc.batch and real < desc.batch:  # a fixed-batch file: pad with the last image
            part = np.concatenate([part, np.repeat(part[-1:], desc.batch - real, axis=0)])
        outs = run_onnx(path, desc.input_name, part, desc.map_outputs)
        chunks.append([np.asarray(o[:real], dtype=np.float32) for o in outs])
    outputs = [np.concatenate(parts) for parts in zip(*chunks)]
    maps = _split_maps(desc.map_outputs, outputs, len(paths))
    items = [ImageAttention(p, c, m) for p, c, m in zip(paths, crops, maps)]
    return AttentionResult(str(path), "onnxruntime", desc.image_size, items, desc.notes)


def compute_attention(
    source: str | Path,
    images: Sequence[str | Path],
    *,
    checkpoint: str | Path | None = None,
    image_size: int | None = None,
) -> AttentionResult:
    """Attention maps from a registered model name or an ONNX file (``source``)."""
    from deploy_ran.models import is_model_name

    text = str(source)
    if is_model_name(text):
        return attention_from_model(text, images, checkpoint=checkpoint, image_size=image_size)
    path = Path(text)
    if path.suffix.lower() == ".onnx" or path.exists():
        if checkpoint is not None or image_size is not None:
            raise DeployRanError(
                "--checkpoint and --image-size apply to a model name, not to an ONNX file.",
                hint="An ONNX file holds its weights and input size; drop those options.",
            )
        return attention_from_onnx(path, images)
    from deploy_ran.models import get_spec

    get_spec(text)  # raises UnknownModelError with the closest names
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------------------------
# rendering


def upsample(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a 2-D map to ``size`` = (width, height)."""
    return np.asarray(
        Image.fromarray(np.ascontiguousarray(values, dtype=np.float32), "F").resize(
            size, Image.Resampling.BILINEAR
        )
    )


def _normalise(values: np.ndarray) -> np.ndarray:
    lo, hi = float(values.min()), float(values.max())
    return np.zeros_like(values) if hi - lo < 1e-12 else (values - lo) / (hi - lo)


def render_grid(
    result: AttentionResult,
    output: str | Path,
    *,
    cmap: str = "jet",
    alpha: float = 0.5,
    panel_inches: float = 2.2,
) -> Path:
    """Write a PNG: per image, the crop then every map channel overlaid on it (atomically).

    Drawn on a bare Agg ``Figure`` (no pyplot), so the caller's matplotlib backend is untouched.
    """
    from matplotlib.figure import Figure

    output = check_writable(output)
    if not result.items:
        raise DeployRanError("No images to draw.", hint="Pass one or more images.")
    panels_per_image = 1 + sum(m.values.shape[0] for m in result.items[0].maps)
    columns = min(panels_per_image, MAX_COLUMNS)
    rows_per_image = math.ceil(panels_per_image / columns)
    rows = rows_per_image * len(result.items)
    fig = Figure(figsize=(panel_inches * columns, panel_inches * rows + 0.4))
    axes = fig.subplots(rows, columns, squeeze=False)
    _draw(fig, axes, result, rows_per_image, cmap, alpha)
    with atomic_path(output, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return output


def _draw(fig, axes, result: AttentionResult, rows_per_image: int, cmap: str, alpha: float) -> None:
    for ax in axes.flat:
        ax.axis("off")
    for index, item in enumerate(result.items):
        flat = axes[index * rows_per_image : (index + 1) * rows_per_image].flat
        crop = np.asarray(item.crop)
        first = next(flat)
        first.imshow(crop)
        first.set_title(item.path.name, fontsize=8)
        for amap in item.maps:
            channels, h, w = amap.values.shape
            for c in range(channels):
                ax = next(flat)
                heat = _normalise(upsample(amap.values[c], (crop.shape[1], crop.shape[0])))
                ax.imshow(crop)
                ax.imshow(heat, cmap=cmap, alpha=alpha, vmin=0.0, vmax=1.0)
                head = f" head {c + 1}" if channels > 1 else ""
                ax.set_title(f"{amap.title}{head} ({h}×{w})", fontsize=8)
    fig.suptitle(f"{result.source} — attention ({result.backend})", fontsize=10)
    fig.tight_layout()


def visualize(
    source: str | Path,
    images: Sequence[str | Path],
    output: str | Path = "attention.png",
    *,
    checkpoint: str | Path | None = None,
    image_size: int | None = None,
) -> AttentionResult:
    """Compute the attention maps of ``source`` on ``images`` and draw them into ``output``."""
    source_file = Path(source) if Path(source).exists() else None
    refuse_output_over_inputs(
        {"output": output},
        {"source": source_file, "checkpoint": checkpoint, "image": find_images(images)},
    )
    check_writable(output)  # before any slow work
    result = compute_attention(source, images, checkpoint=checkpoint, image_size=image_size)
    render_grid(result, output)
    return result
