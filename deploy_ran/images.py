"""Finding, decoding and preprocessing images the way a model's spec says.

One implementation serves calibration, ``verify``, ``infer`` and ``visualize``, so an image is
turned into the same tensor everywhere. Preprocessing follows the spec (or an ONNX file's
metadata): resize the shorter side (bilinear), centre-crop, scale to [0, 1], subtract the mean,
divide by the std, CHW float32. Any PIL mode (L, LA, P, RGBA, CMYK, 16-bit) is converted to RGB;
EXIF orientation is applied. PIL + numpy only: no torchvision.
"""

from __future__ import annotations

import glob
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from deploy_ran.errors import DeployRanError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


class ImageError(DeployRanError):
    """An image that cannot be found, decoded or converted."""


def find_images(source: str | Path | Iterable[str | Path], recursive: bool = True) -> list[Path]:
    """Image paths from a folder (recursive), a glob pattern, a ``.txt`` list or a list of paths.

    Sorted for folders and globs so that runs are reproducible; a ``.txt`` list keeps its order.
    Raises :class:`ImageError` when the source does not exist or holds no images.
    """
    if not isinstance(source, (str, Path)):
        paths = [Path(p) for p in source]
    else:
        text = str(source)
        path = Path(text)
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            paths = sorted(
                p
                for p in path.glob(pattern)
                if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
            )
            if not paths:
                raise ImageError(
                    f"Folder {path} holds no images ({', '.join(IMAGE_EXTENSIONS)}).",
                    hint="Point to a folder of jpg/png/bmp/webp files (sub-folders are searched).",
                )
            return paths
        if path.is_file() and path.suffix.lower() == ".txt":
            base = path.parent
            lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
            paths = [
                Path(ln) if Path(ln).is_absolute() else base / ln
                for ln in lines
                if ln and not ln.startswith("#")
            ]
        elif path.is_file():
            paths = [path]
        elif any(ch in text for ch in "*?["):
            paths = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
        else:
            raise ImageError(
                f"{text} does not exist.",
                hint="Give a folder of images, a glob such as 'imgs/*.jpg', or a .txt list of paths.",
            )
    if not paths:
        raise ImageError(f"No images found for {source!r}.", hint="Check the folder, glob or list.")
    return paths


def load_rgb(path: str | Path) -> Image.Image:
    """Decode an image file and convert it to 8-bit RGB (EXIF orientation applied)."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img)
            img.load()
            return to_rgb(img)
    except FileNotFoundError:
        raise ImageError(f"Image {path} does not exist.") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{path} is not a readable image ({type(exc).__name__}: {exc}).") from None


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode to RGB: alpha is composited on white, 16-bit and float are rescaled."""
    if img.mode == "RGB":
        return img
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scaled = np.zeros_like(arr) if hi == lo else (arr - lo) / (hi - lo) * 255.0
        return Image.fromarray(scaled.astype(np.uint8), "L").convert("RGB")
    return img.convert("RGB")  # L, 1, P, CMYK, YCbCr, LAB, HSV


def preprocess(img: Image.Image, preprocessing: Mapping[str, Any]) -> np.ndarray:
    """RGB image → normalised CHW float32 array, as ``preprocessing`` (a spec's dict) says."""
    resize = int(preprocessing["resize_size"])
    crop = int(preprocessing["crop_size"])
    w, h = img.size
    scale = resize / min(w, h)
    new_w, new_h = max(crop, round(w * scale)), max(crop, round(h * scale))
    img = img.resize((new_w, new_h), Image.Resampling.BILINEAR)
    left, top = (new_w - crop) // 2, (new_h - crop) // 2
    img = img.crop((left, top, left + crop, top + crop))
    arr = np.asarray(img, dtype=np.float32) / 255.0
    mean = np.asarray(preprocessing["mean"], dtype=np.float32)
    std = np.asarray(preprocessing["std"], dtype=np.float32)
    return np.ascontiguousarray(((arr - mean) / std).transpose(2, 0, 1))


def load_and_preprocess(path: str | Path, preprocessing: Mapping[str, Any]) -> np.ndarray:
    """Decode, convert and preprocess one file (raises :class:`ImageError` when unreadable)."""
    return preprocess(load_rgb(path), preprocessing)
