"""Finding, decoding and preprocessing images the way a model's spec says.

One implementation serves calibration, ``verify``, ``infer`` and ``visualize``, so an image is
turned into the same tensor everywhere. Preprocessing follows the spec (or an ONNX file's
metadata): resize the shorter side (bilinear), centre-crop, scale to [0, 1], subtract the mean,
divide by the std, CHW float32. Any PIL mode (L, LA, P, RGBA, CMYK, 16-bit) is converted to RGB;
EXIF orientation is applied. PIL + numpy only: no torchvision.

Hostile files cost a bounded amount of memory and end as an :class:`ImageError` for that image,
never as the end of a run:

* **Pixel limit**: an image that would decode to more than ``MAX_PIXELS`` pixels (PIL's own
  decompression-bomb threshold, about 89 million) is refused from its header, before decoding.
* **Large JPEGs** are decoded at a reduced size (``Image.draft``: libjpeg's DCT scaling by 1/2,
  1/4 or 1/8) when the shorter side stays at least ``DRAFT_MARGIN`` times the resize target, so a
  12,000 px photo costs what a 1,500 px one does; the final bilinear resize (antialiased) then
  makes the numbers close to a full decode's (tests bound the difference).
* **Crop before resize**: only the part of the image that survives the centre crop is resampled
  (``Image.resize(box=...)``) when the resized image would exceed ``RESIZE_BUDGET`` pixels, so a
  1×400,000 strip costs a crop-sized resize instead of a multi-gigapixel one; ordinary images
  take the plain resize-then-crop path, bit for bit as before.
* **File names** are handled as the OS gives them: a name that is not valid UTF-8 is a ``str``
  with surrogate escapes (:func:`os.fsdecode`), and a ``.txt`` list is read as bytes and decoded
  the same way, so a list written by ``ls`` on a latin-1 system names the files it lists.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from deploy_ran.errors import DeployRanError
from deploy_ran.reading import glob_files, read_regular_bytes, require_regular_file, walk_files

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
MAX_PIXELS = 89_478_485  # PIL's default Image.MAX_IMAGE_PIXELS (warning threshold): ~270 MB RGB
RESIZE_BUDGET = 4096 * 4096  # larger intermediate resizes are cropped first (see preprocess)
DRAFT_MARGIN = 2  # JPEG draft decoding keeps the shorter side >= DRAFT_MARGIN x the resize size


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
            found = walk_files(path) if recursive else (p for p in path.iterdir() if p.is_file())
            paths = sorted(p for p in found if p.suffix.lower() in IMAGE_EXTENSIONS)
            if not paths:
                raise ImageError(
                    f"Folder {display_path(path)} holds no images ({', '.join(IMAGE_EXTENSIONS)}).",
                    hint="Point to a folder of jpg/png/bmp/webp files (sub-folders are searched).",
                )
            return paths
        if path.is_file() and path.suffix.lower() == ".txt":
            base = path.parent
            lines = [ln.strip() for ln in read_path_list(path)]
            paths = [
                Path(ln) if Path(ln).is_absolute() else base / ln
                for ln in lines
                if ln and not ln.startswith("#")
            ]
        elif path.is_file():
            paths = [path]
        elif any(ch in text for ch in "*?["):
            paths = glob_files(text)
        else:
            raise ImageError(
                f"{display_path(text)} does not exist.",
                hint="Give a folder of images, a glob such as 'imgs/*.jpg', or a .txt list of paths.",
            )
    if not paths:
        raise ImageError(
            f"No images found for {display_path(str(source))!r}.",
            hint="Check the folder, glob or list.",
        )
    return paths


def read_path_list(path: str | Path) -> list[str]:
    """Lines of a ``.txt`` list of files, decoded as the OS decodes file names.

    File names are bytes; decoding the list with the file-system encoding and surrogate escapes
    (what :func:`os.fsdecode` does) gives back exactly the names ``ls`` wrote, whatever their
    encoding (UTF-8, latin-1, or neither). A UTF-8 byte-order mark is dropped.
    """
    try:
        data = read_regular_bytes(path, "list of images", max_bytes=256 << 20)
    except DeployRanError as exc:
        raise ImageError(exc.message, hint=exc.hint) from None
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    return os.fsdecode(data).splitlines()


def display_path(path: str | os.PathLike[str]) -> str:
    """A file name that can always be printed or written as UTF-8: undecodable bytes as ``\\xNN``."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def draft_size(size: tuple[int, int], min_size: int | None) -> tuple[int, int] | None:
    """The size to ask a JPEG decoder for (``Image.draft``) before resizing the shorter side to
    ``min_size``, or None when a full decode is cheap enough."""
    if not min_size:
        return None
    want = DRAFT_MARGIN * int(min_size)
    return (want, want) if min(size) >= 2 * want else None


def load_rgb(
    path: str | Path, *, min_size: int | None = None, max_pixels: int | None = MAX_PIXELS
) -> Image.Image:
    """Decode an image file and convert it to 8-bit RGB (EXIF orientation applied).

    ``min_size``: the shorter side the caller will resize to; a JPEG much larger than that is
    decoded at a reduced size (see the module docstring). ``max_pixels``: refuse images that
    would decode to more pixels (``None``: no limit).
    """
    shown = display_path(path)
    path = Path(path)
    try:  # a FIFO would block PIL's open, /dev/zero would never end
        require_regular_file(path, "image")
    except DeployRanError as exc:
        raise ImageError(exc.message, hint=exc.hint) from None
    try:
        with warnings.catch_warnings():
            # Our own limit below replaces PIL's warning; its hard limit (2x) still raises.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                if img.format == "JPEG":
                    draft = draft_size(img.size, min_size)
                    if draft is not None:
                        img.draft(None, draft)
                w, h = img.size
                if max_pixels is not None and w * h > max_pixels:
                    raise ImageError(
                        f"{shown} is {w}×{h} = {w * h:,} pixels, more than the limit of "
                        f"{max_pixels:,} (a decompression bomb, or a huge scan).",
                        hint="Downscale the image first; the limit keeps memory bounded.",
                    )
                img = ImageOps.exif_transpose(img)
                img.load()
                return to_rgb(img)
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(f"Image {shown} does not exist.") from None
    except Image.DecompressionBombError as exc:
        raise ImageError(
            f"{shown} was refused as a decompression bomb ({exc}).",
            hint="Downscale the image first; the limit keeps memory bounded.",
        ) from None
    except MemoryError:
        raise ImageError(f"{shown} needs more memory to decode than is available.") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(
            f"{shown} is not a readable image ({type(exc).__name__}: {exc})."
        ) from None


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
    left, top = (new_w - crop) // 2, (new_h - crop) // 2
    if new_w * new_h <= RESIZE_BUDGET:
        img = img.resize((new_w, new_h), Image.Resampling.BILINEAR)
        img = img.crop((left, top, left + crop, top + crop))
    else:
        # An extreme aspect ratio (a 1×400,000 strip would resize to 26 gigapixels): resample
        # only the source region the centre crop keeps. Same filter and sample positions as
        # resize-then-crop (pixels may differ by 1/255 from fixed-point rounding).
        sx, sy = w / new_w, h / new_h
        box = (left * sx, top * sy, (left + crop) * sx, (top + crop) * sy)
        img = img.resize((crop, crop), Image.Resampling.BILINEAR, box=box)
    arr = np.asarray(img, dtype=np.float32) / 255.0
    mean = np.asarray(preprocessing["mean"], dtype=np.float32)
    std = np.asarray(preprocessing["std"], dtype=np.float32)
    return np.ascontiguousarray(((arr - mean) / std).transpose(2, 0, 1))


def load_and_preprocess(path: str | Path, preprocessing: Mapping[str, Any]) -> np.ndarray:
    """Decode, convert and preprocess one file (raises :class:`ImageError` when unreadable)."""
    return preprocess(load_rgb(path, min_size=int(preprocessing["resize_size"])), preprocessing)
