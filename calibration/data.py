"""Calibration data: where the images come from, which ones are used, and what they look like.

INT8 ranges are only as good as the images they were measured on, so this module is strict about
what it accepts and says what it did:

* an **image folder** (recursive; jpg/png/bmp/webp; any PIL mode converted to RGB), a glob or a
  ``.txt`` list, decoded and preprocessed exactly as the model's spec says
  (:mod:`deploy_ran.images`);
* a **.npy / .npz array** already preprocessed, ``(N, C, H, W)`` floating point (``file.npz:key``
  picks an array of an ``.npz``);
* **synthetic** noise, seeded (smoke tests only; ranges measured on noise are not the model's);
* the **built-in** default: the two photos scikit-learn ships (``china.jpg``, ``flower.jpg``),
  expanded by seeded random crops and flips. It makes the demo run anywhere; real deployments
  calibrate on their own images.

A seeded subset of ``num_images`` is taken (default 512). Below 500 images there is a warning
(NVIDIA's advice for INT8 calibration); when nothing usable is left there is an error. Unreadable
files are skipped, counted and listed, never fatal while something is left.

:func:`plan_calibration_data` is cheap (it lists files, it does not decode them) and yields a
``fingerprint`` for the calibration cache, so a cache hit skips decoding altogether;
:meth:`CalibrationPlan.load` decodes and preprocesses.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from calibration.defaults import DEFAULT_NUM_IMAGES
from deploy_ran.errors import DeployRanError
from deploy_ran.images import ImageError, find_images, load_and_preprocess, preprocess

RECOMMENDED_MIN_IMAGES = 500  # NVIDIA's advice for INT8 calibration sets
SYNTHETIC = "synthetic"
BUILTIN = "builtin"
NPZ_KEYS = ("calibration", "x_calib", "x_train", "x", "images", "data")

BUILTIN_NOTE = (
    "No --data given: calibrating on the built-in sample, the 2 photos scikit-learn ships "
    "(china.jpg, flower.jpg) expanded by random crops and flips. This makes the demo run anywhere; "
    "it is NOT a calibration set. Real deployments calibrate on a few hundred of their own images "
    "(--data FOLDER)."
)
SYNTHETIC_NOTE = (
    "Calibrating on synthetic noise: fine for smoke tests, meaningless for accuracy. "
    "Use --data FOLDER with real images."
)

Progress = Callable[[int, int], None]


class CalibrationDataError(DeployRanError):
    """Calibration data that is missing, unreadable or of the wrong shape or type."""


@dataclass
class CalibrationData:
    """Preprocessed calibration inputs and an account of where they came from."""

    images: np.ndarray  # (N, C, H, W) float32, preprocessed
    kind: str  # "images" | "array" | "synthetic" | "builtin"
    source: str  # human description
    fingerprint: str
    files: list[str] = field(default_factory=list)  # image files used, in order
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, why)
    warnings: list[str] = field(default_factory=list)
    available: int = 0  # how many candidates the source held

    def __len__(self) -> int:
        return len(self.images)

    def batches(self, batch: int):
        """Consecutive batches of at most ``batch`` images."""
        for start in range(0, len(self.images), batch):
            yield self.images[start : start + batch]

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "source": self.source,
            "num_images": len(self),
            "available": self.available,
            "fingerprint": self.fingerprint,
            "skipped": [{"file": f, "reason": r} for f, r in self.skipped],
            "warnings": self.warnings,
        }


@dataclass
class CalibrationPlan:
    """What :meth:`load` will read; ``fingerprint`` keys the calibration cache."""

    kind: str
    source: str
    input_shape: tuple[int, int, int]
    preprocessing: dict[str, Any]
    num_images: int
    seed: int
    fingerprint: str
    candidates: list[Path] = field(default_factory=list)  # images: all files, in seeded order
    array_path: Path | None = None
    array_key: str | None = None
    available: int = 0
    warnings: list[str] = field(default_factory=list)

    def load(self, progress: Progress | None = None) -> CalibrationData:
        """Decode/preprocess (or read) the planned images; see the module docstring."""
        loader = {
            "images": self._load_images,
            "array": self._load_array,
            SYNTHETIC: self._load_synthetic,
            BUILTIN: self._load_builtin,
        }[self.kind]
        data = loader(progress or (lambda _d, _t: None))
        data.warnings = list(self.warnings) + data.warnings
        if len(data) < RECOMMENDED_MIN_IMAGES:
            data.warnings.append(
                f"Calibrating on {len(data)} images; NVIDIA recommends at least "
                f"{RECOMMENDED_MIN_IMAGES} for INT8 (--num-images)."
            )
        return data

    # -- sources ---------------------------------------------------------------------------

    def _load_images(self, progress: Progress) -> CalibrationData:
        chosen: list[np.ndarray] = []
        used: list[str] = []
        skipped: list[tuple[str, str]] = []
        target = min(self.num_images, len(self.candidates))
        for path in self.candidates:
            if len(chosen) == target:
                break
            try:
                chosen.append(load_and_preprocess(path, self.preprocessing))
                used.append(str(path))
            except ImageError as exc:
                skipped.append((str(path), exc.message))
            progress(len(chosen), target)
        if not chosen:
            raise CalibrationDataError(
                f"None of the {len(self.candidates)} image file(s) in {self.source} could be read "
                f"({skipped[0][1] if skipped else 'no files'}).",
                hint="Point --data to a folder of jpg/png/bmp/webp images.",
            )
        warnings = []
        if skipped:
            warnings.append(f"Skipped {len(skipped)} unreadable file(s); listed in the report.")
        if len(chosen) < self.num_images:
            warnings.append(
                f"Asked for {self.num_images} images; {self.source} has {len(chosen)} readable."
            )
        return CalibrationData(
            images=np.stack(chosen).astype(np.float32, copy=False),
            kind="images",
            source=self.source,
            fingerprint=self.fingerprint,
            files=used,
            skipped=skipped,
            warnings=warnings,
            available=len(self.candidates),
        )

    def _load_array(self, progress: Progress) -> CalibrationData:
        array = _read_array(self.array_path, self.array_key)
        _check_array(array, self.input_shape, self.source)
        order = np.random.default_rng(self.seed).permutation(len(array))[: self.num_images]
        images = np.ascontiguousarray(array[np.sort(order)], dtype=np.float32)
        if not np.isfinite(images).all():
            raise CalibrationDataError(
                f"{self.source} holds NaN or infinite values.",
                hint="Fix the preprocessing that wrote the array.",
            )
        progress(len(images), len(images))
        warnings = []
        if len(images) < self.num_images:
            warnings.append(
                f"Asked for {self.num_images} images; {self.source} holds {len(images)}."
            )
        return CalibrationData(
            images=images,
            kind="array",
            source=self.source,
            fingerprint=self.fingerprint,
            warnings=warnings,
            available=len(array),
        )

    def _load_synthetic(self, progress: Progress) -> CalibrationData:
        rng = np.random.default_rng(self.seed)
        # Uniform pixels in [0, 1] pushed through the model's normalisation: the value range a
        # real preprocessed image has, without any of its structure.
        pixels = rng.random((self.num_images, *self.input_shape), dtype=np.float32)
        mean = np.asarray(self.preprocessing["mean"], np.float32).reshape(1, -1, 1, 1)
        std = np.asarray(self.preprocessing["std"], np.float32).reshape(1, -1, 1, 1)
        progress(self.num_images, self.num_images)
        return CalibrationData(
            images=((pixels - mean) / std).astype(np.float32),
            kind=SYNTHETIC,
            source=self.source,
            fingerprint=self.fingerprint,
            warnings=[SYNTHETIC_NOTE],
            available=self.num_images,
        )

    def _load_builtin(self, progress: Progress) -> CalibrationData:
        photos = _sample_photos()
        rng = np.random.default_rng(self.seed)
        images = []
        for i in range(self.num_images):
            photo = photos[int(rng.integers(len(photos)))]
            images.append(preprocess(_random_crop(photo, rng), self.preprocessing))
            progress(i + 1, self.num_images)
        return CalibrationData(
            images=np.stack(images).astype(np.float32, copy=False),
            kind=BUILTIN,
            source=self.source,
            fingerprint=self.fingerprint,
            warnings=[BUILTIN_NOTE],
            available=len(photos),
        )


# -- planning ----------------------------------------------------------------------------------


def _digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _split_npz_key(source: str) -> tuple[Path, str | None]:
    """``data.npz:x_train`` → (data.npz, "x_train"); a plain path has no key."""
    path = Path(source)
    if path.exists() or ":" not in source:
        return path, None
    head, _, key = source.rpartition(":")
    return Path(head), key or None


def plan_calibration_data(
    source: str | Path | None,
    *,
    input_shape: tuple[int, int, int],
    preprocessing: Mapping[str, Any],
    num_images: int = DEFAULT_NUM_IMAGES,
    seed: int = 0,
) -> CalibrationPlan:
    """Decide what calibration data ``source`` names, without decoding it.

    ``source``: a folder / glob / ``.txt`` list of images, a ``.npy``/``.npz`` file
    (``file.npz:key``), ``"synthetic"``, or ``None``/``"builtin"`` for the built-in sample.
    """
    if num_images < 1:
        raise CalibrationDataError(
            f"--num-images must be at least 1, got {num_images}.",
            hint=f"Use the default {DEFAULT_NUM_IMAGES}; NVIDIA recommends at least "
            f"{RECOMMENDED_MIN_IMAGES}.",
        )
    input_shape = tuple(int(d) for d in input_shape)
    pre = dict(preprocessing)
    common = dict(input_shape=input_shape, preprocessing=pre, num_images=num_images, seed=seed)
    text = "" if source is None else str(source)
    if text in ("", BUILTIN):
        import sklearn

        return CalibrationPlan(
            kind=BUILTIN,
            source="built-in sample (scikit-learn's china.jpg and flower.jpg, random crops/flips)",
            fingerprint=_digest(BUILTIN, sklearn.__version__, pre, num_images, seed),
            **common,
        )
    if text == SYNTHETIC:
        return CalibrationPlan(
            kind=SYNTHETIC,
            source=f"synthetic noise (seed {seed})",
            fingerprint=_digest(SYNTHETIC, input_shape, pre, num_images, seed),
            **common,
        )
    path, key = _split_npz_key(text)
    if path.suffix.lower() in (".npy", ".npz"):
        if not path.is_file():
            raise CalibrationDataError(
                f"Calibration array {path} does not exist.",
                hint="Check the path given to --data.",
            )
        from deploy_ran.fileio import sha256_file

        key = _pick_npz_key(path, key) if path.suffix.lower() == ".npz" else None
        shape, _dtype = _peek_array(path, key)
        _check_shape(shape, input_shape, f"{path}" + (f"[{key}]" if key else ""))
        label = f"{path}" + (f":{key}" if key else "")
        return CalibrationPlan(
            kind="array",
            source=f"preprocessed array {label}",
            array_path=path,
            array_key=key,
            available=int(shape[0]),
            fingerprint=_digest("array", sha256_file(path), key, num_images, seed),
            **common,
        )
    try:
        files = find_images(text)
    except ImageError as exc:
        raise CalibrationDataError(exc.message, hint=exc.hint) from None
    if Path(text).is_dir():
        if not files:  # find_images raises for an empty folder; kept for custom sources
            raise CalibrationDataError(f"Folder {text} holds no images.")
    order = np.random.default_rng(seed).permutation(len(files))
    candidates = [files[i] for i in order]
    listing = []
    for f in files:
        try:
            st = f.stat()
            listing.append((str(f), st.st_size, st.st_mtime_ns))
        except OSError:
            listing.append((str(f), None, None))
    return CalibrationPlan(
        kind="images",
        source=f"{text} ({len(files)} image file(s))",
        candidates=candidates,
        available=len(files),
        fingerprint=_digest("images", listing, pre, num_images, seed),
        **common,
    )


# -- arrays ------------------------------------------------------------------------------------


def _pick_npz_key(path: Path, key: str | None) -> str:
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = list(npz.keys())
    except Exception as exc:
        raise CalibrationDataError(
            f"{path} is not a readable .npz file ({type(exc).__name__}: {exc}).",
            hint="Write it with numpy.savez.",
        ) from None
    if key is not None:
        if key not in keys:
            raise CalibrationDataError(
                f"{path} has no array {key!r}; it holds {', '.join(keys) or 'nothing'}.",
                hint=f"Use --data {path}:KEY with one of those names.",
            )
        return key
    if len(keys) == 1:
        return keys[0]
    for candidate in NPZ_KEYS:
        if candidate in keys:
            return candidate
    raise CalibrationDataError(
        f"{path} holds several arrays ({', '.join(keys)}) and none is called "
        f"{' / '.join(NPZ_KEYS)}.",
        hint=f"Pick one with --data {path}:KEY.",
    )


def _peek_array(path: Path, key: str | None) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype without reading the data (mmap for .npy)."""
    try:
        if key is None:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        else:
            with np.load(path, allow_pickle=False) as npz:
                arr = npz[key]
    except Exception as exc:
        raise CalibrationDataError(
            f"{path} is not a readable numpy file ({type(exc).__name__}: {exc}).",
            hint="Write it with numpy.save / numpy.savez (no pickled objects).",
        ) from None
    if not np.issubdtype(arr.dtype, np.floating):
        hint = (
            "It looks like raw pixels: preprocess them (resize, crop, /255, mean/std) into float32, "
            "or pass the image folder instead."
            if arr.dtype == np.uint8
            else "Save the preprocessed images as float32."
        )
        raise CalibrationDataError(
            f"{path} holds {arr.dtype} values; calibration arrays must be floating point "
            "(preprocessed images).",
            hint=hint,
        )
    return tuple(arr.shape), arr.dtype


def _check_shape(shape: tuple[int, ...], input_shape: tuple[int, ...], label: str) -> None:
    expected = f"(N, {', '.join(map(str, input_shape))})"
    if len(shape) != 4 or tuple(shape[1:]) != tuple(input_shape):
        hint = f"The model takes {expected} preprocessed NCHW float images."
        if len(shape) == 4 and tuple(shape[1:]) == (*input_shape[1:], input_shape[0]):
            hint += " This array looks like NHWC: transpose it with x.transpose(0, 3, 1, 2)."
        raise CalibrationDataError(
            f"{label} has shape {tuple(shape)}, expected {expected}.", hint=hint
        )
    if shape[0] == 0:
        raise CalibrationDataError(f"{label} holds no images (shape {tuple(shape)}).")


def _read_array(path: Path | None, key: str | None) -> np.ndarray:
    assert path is not None
    if key is None:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    with np.load(path, allow_pickle=False) as npz:
        return npz[key]


def _check_array(array: np.ndarray, input_shape: tuple[int, ...], label: str) -> None:
    if not np.issubdtype(array.dtype, np.floating):
        raise CalibrationDataError(f"{label} holds {array.dtype} values, expected floats.")
    _check_shape(tuple(array.shape), input_shape, label)


# -- built-in sample ---------------------------------------------------------------------------


def _sample_photos() -> list:
    """scikit-learn's two bundled photos as PIL images (no download: they ship in the wheel)."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    return [Image.fromarray(np.asarray(img)) for img in load_sample_images().images]


def _random_crop(photo, rng: np.random.Generator):
    """A random crop (8–100 % of the area, aspect 3:4–4:3) of ``photo``, flipped half the time."""
    from PIL import Image

    w, h = photo.size
    area = w * h * rng.uniform(0.08, 1.0)
    aspect = float(np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3))))
    cw = int(min(w, max(16, round(np.sqrt(area * aspect)))))
    ch = int(min(h, max(16, round(np.sqrt(area / aspect)))))
    left = int(rng.integers(0, w - cw + 1))
    top = int(rng.integers(0, h - ch + 1))
    crop = photo.crop((left, top, left + cw, top + ch))
    if rng.random() < 0.5:
        crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return crop
