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
from deploy_ran.images import ImageError, display_path, find_images, load_and_preprocess

MAP_PREFIX = "attention_"
#: Output suffix → the format matplotlib writes (the file's bytes match its name).
FIGURE_FORMATS = {
    ".png": "png",
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".webp": "webp",
    ".pdf": "pdf",
    ".svg": "svg",
}
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
    paths: Sequence[Path], preprocessing: dict[str, Any], skipped: list[str] | None = None
) -> tuple[np.ndarray, list[Image.Image], list[Path]]:
    """Decode and preprocess every image: the NCHW batch, the RGB crops, the paths used.

    An unreadable image (corrupt, a decompression bomb, ...) is left out and its error appended
    to ``skipped``; only when none is readable does this raise.
    """
    mean = np.asarray(preprocessing["mean"], dtype=np.float32)[:, None, None]
    std = np.asarray(preprocessing["std"], dtype=np.float32)[:, None, None]
    arrays, crops, used = [], [], []
    errors: list[str] = []
    for path in paths:
        try:
            array = load_and_preprocess(path, preprocessing)
        except ImageError as exc:
            errors.append(exc.message)
            continue
        arrays.append(array)
        used.append(path)
        rgb = np.clip((array * std + mean) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        crops.append(Image.fromarray(rgb.transpose(1, 2, 0), "RGB"))
    if skipped is not None:
        skipped.extend(f"skipped {e}" for e in errors)
    if not arrays:
        if len(errors) == 1:
            raise ImageError(errors[0], hint="Pass a readable jpg/png/bmp/webp image.")
        raise ImageError(
            f"None of the {len(paths)} images could be read (first: {errors[0]}).",
            hint="Pass readable jpg/png/bmp/webp images.",
        )
    return np.stack(arrays), crops, used


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
    from deploy_ran.models import get_spec
    from deploy_ran.runners.torch_runner import TorchRunner

    spec = get_spec(name)
    paths = collect_images(images)
    size = image_size or spec.image_size
    notes: list[str] = []
    batch, crops, paths = prepare_images(paths, spec.preprocessing(size), notes)
    with TorchRunner(
        name,
        checkpoint=checkpoint,
        image_size=size,
        num_classes=num_classes,
        return_attention=True,
        **options,
    ) as runner:
        names = runner.output_names
        result = runner.run_many(batch, CHUNK)
    outputs = [np.asarray(result[n], dtype=np.float32) for n in names]
    maps = _split_maps(names, outputs, len(paths))
    items = [ImageAttention(p, c, m) for p, c, m in zip(paths, crops, maps)]
    if checkpoint is None:
        notes.append("random weights (no checkpoint given): the maps show no learned attention")
    return AttentionResult(name, "pytorch", size, items, notes)


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
    from deploy_ran.onnx_graph import graph_inputs

    proto = load_onnx(path, load_weights=False)
    info = ArtifactInfo.from_props(get_metadata(proto))
    inputs = graph_inputs(proto)
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


def attention_from_onnx(path: str | Path, images: Sequence[str | Path]) -> AttentionResult:
    """Attention maps of an ONNX file exported with ``--attention-maps``, via one ``OrtRunner``.

    The runner's batching policy applies: chunks of :data:`CHUNK` images on a dynamic batch, the
    file's own batch on a static one (a remainder is padded and the padding dropped).
    """
    from deploy_ran.runners.ort_runner import OrtRunner

    desc = describe_onnx_for_attention(path)
    paths = collect_images(images)
    batch, crops, paths = prepare_images(paths, desc.preprocessing, desc.notes)
    with OrtRunner(path) as runner:
        result = runner.run_many(batch, runner.batch_for(CHUNK))
    outputs = [np.asarray(result[name], dtype=np.float32) for name in desc.map_outputs]
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
    from deploy_ran.target import Target

    target = Target.parse(source)
    if target.kind == "model":
        return attention_from_model(
            target.text, images, checkpoint=checkpoint, image_size=image_size
        )
    if target.kind != "onnx":
        raise DeployRanError(
            f"{source} is a TensorRT engine; attention maps are drawn from a model name or an "
            "ONNX file.",
            hint="Pass the model name or the ONNX file exported with --attention-maps.",
        )
    if checkpoint is not None or image_size is not None:
        raise DeployRanError(
            "checkpoint and image_size apply to a model name, not to an ONNX file.",
            hint="An ONNX file holds its weights and input size; drop those options.",
        )
    return attention_from_onnx(target.path, images)


# --------------------------------------------------------------------------------------------
# rendering


def upsample(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a 2-D map to ``size`` = (width, height)."""
    return np.asarray(
        Image.fromarray(np.ascontiguousarray(values, dtype=np.float32), "F").resize(
            size, Image.Resampling.BILINEAR
        )
    )


#: A map whose values vary by less than this fraction of its largest value is "flat" (a
#: random-weight sigmoid mask sits at 0.489–0.5, a random softmax map near 1/HW everywhere):
#: stretching it to the full colour range would invent structure, so it is drawn unstretched and
#: the report says so. Relative, so a trained softmax map (small values, large spread) is not flat.
FLAT_RANGE = 0.1


def is_flat(values: np.ndarray) -> bool:
    """Whether a map in [0, 1] is nearly uniform (drawn unstretched)."""
    lo, hi = float(values.min()), float(values.max())
    return lo >= 0.0 and hi <= 1.0 and hi - lo <= FLAT_RANGE * hi


def _normalise(values: np.ndarray) -> np.ndarray:
    """Stretch a map to [0, 1] for display, except a flat one (see :data:`FLAT_RANGE`)."""
    if is_flat(values):
        return values
    lo, hi = float(values.min()), float(values.max())
    return np.zeros_like(values) if hi - lo < 1e-12 else (values - lo) / (hi - lo)


def figure_format(output: str | Path) -> str:
    """The image format ``output``'s suffix names; an unknown suffix is refused (before work)."""
    suffix = Path(output).suffix.lower()
    fmt = FIGURE_FORMATS.get(suffix)
    if fmt is None:
        raise DeployRanError(
            f"Cannot tell which image format to write for {output} (suffix {suffix or 'none'!r}).",
            hint="Name the output " + ", ".join(f"*{s}" for s in FIGURE_FORMATS) + ".",
        )
    return fmt


def render_grid(
    result: AttentionResult,
    output: str | Path,
    *,
    cmap: str = "jet",
    alpha: float = 0.5,
    panel_inches: float = 2.2,
) -> Path:
    """Write the grid: per image, the crop then every map channel overlaid on it (atomically).

    The format follows the suffix (:data:`FIGURE_FORMATS`): ``grid.jpg`` holds JPEG bytes.

    Drawn on a bare Agg ``Figure`` (no pyplot), so the caller's matplotlib backend is untouched.
    """
    from matplotlib.figure import Figure

    fmt = figure_format(output)
    output = check_writable(output)
    if not result.items:
        raise DeployRanError("No images to draw.", hint="Pass one or more images.")
    panels_per_image = 1 + sum(m.values.shape[0] for m in result.items[0].maps)
    columns = min(panels_per_image, MAX_COLUMNS)
    rows_per_image = math.ceil(panels_per_image / columns)
    rows = rows_per_image * len(result.items)
    # constrained layout reserves room for every title, so a row's titles never cover the row above
    fig = Figure(figsize=(panel_inches * columns, panel_inches * rows + 0.4), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False)
    _draw(fig, axes, result, rows_per_image, cmap, alpha)
    with atomic_path(output, suffix=Path(output).suffix.lower()) as tmp:
        fig.savefig(tmp, format=fmt, dpi=100)
    return output


def _draw(fig, axes, result: AttentionResult, rows_per_image: int, cmap: str, alpha: float) -> None:
    for ax in axes.flat:
        ax.axis("off")
    for index, item in enumerate(result.items):
        flat = axes[index * rows_per_image : (index + 1) * rows_per_image].flat
        crop = np.asarray(item.crop)
        first = next(flat)
        first.imshow(crop)
        first.set_title(display_path(item.path.name), fontsize=8)
        for amap in item.maps:
            channels, h, w = amap.values.shape
            for c in range(channels):
                ax = next(flat)
                heat = _normalise(upsample(amap.values[c], (crop.shape[1], crop.shape[0])))
                ax.imshow(crop)
                ax.imshow(heat, cmap=cmap, alpha=alpha, vmin=0.0, vmax=1.0)
                head = f" head {c + 1}" if channels > 1 else ""
                marker = " · flat" if is_flat(amap.values[c]) else ""
                ax.set_title(f"{amap.title}{head}\n{h}×{w}{marker}", fontsize=7)
    fig.suptitle(f"{result.source} — attention ({result.backend})", fontsize=10)


def visualize(
    source: str | Path,
    images: Sequence[str | Path],
    output: str | Path = "attention.png",
    *,
    checkpoint: str | Path | None = None,
    image_size: int | None = None,
) -> AttentionResult:
    """Compute the attention maps of ``source`` on ``images`` and draw them into ``output``."""
    figure_format(output)  # before any slow work
    source_file = Path(source) if Path(source).exists() else None
    refuse_output_over_inputs(
        {"output": output},
        {"source": source_file, "checkpoint": checkpoint, "image": find_images(images)},
    )
    check_writable(output)
    result = compute_attention(source, images, checkpoint=checkpoint, image_size=image_size)
    flat = sorted({m.name for i in result.items for m in i.maps if is_flat(m.values)})
    if flat:
        result.notes.append(
            f"{len(flat)} map(s) nearly uniform (values vary by ≤ {FLAT_RANGE:.0%} of their largest; "
            "marked 'flat'): drawn unstretched, not stretched to look meaningful"
        )
    render_grid(result, output)
    return result
