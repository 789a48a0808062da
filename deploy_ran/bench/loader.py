"""How fast can one loader worker turn photos into model inputs? Decoding, not the model, is what
starves a GPU server: a 12-megapixel JPEG takes longer to decode in full than a large batch takes
on the GPU per image.

:func:`loader_benchmark` times one worker (one process, images one after another, as each
``infer`` DataLoader worker does) on generated photo-sized JPEGs at a model's input size, three
ways:

- ``full``: decode every pixel, then :func:`deploy_ran.images.preprocess` (resize, crop,
  normalise).
- ``reduced``: ``PIL.Image.draft`` first, so the JPEG decoder itself scales by 1/2, 1/4 or 1/8
  (DCT scaling) to the smallest size still at least the resize target, then the same
  ``preprocess``. Pixels that are thrown away by the resize are never decoded.
- ``infer``: :func:`deploy_ran.images.load_and_preprocess`, whichever of the two the ``infer``
  loader runs today; :func:`infer_decoding` says which.

Images/s per worker, beside a backend's images/s, says how many workers keep that backend fed.
"""

from __future__ import annotations

import inspect
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deploy_ran.errors import DeployRanError

PHOTO_SIZE = (4000, 3000)  # 12 megapixels, a phone camera's photo
LOADER_MODES = ("full", "reduced", "infer")


def make_photos(
    folder: str | Path, count: int = 6, size: tuple[int, int] = PHOTO_SIZE, seed: int = 0
) -> list[Path]:
    """``count`` JPEGs of ``size`` (quality 90) that compress and decode like photos: smooth
    structure (a small random image scaled up) plus sensor-like noise, not flat colour (which
    decodes unrealistically fast) nor white noise (unrealistically slow)."""
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    w, h = size
    paths = []
    for i in range(count):
        small = rng.integers(0, 256, size=(max(1, h // 100), max(1, w // 100), 3), dtype=np.uint8)
        base = np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC))
        noise = rng.normal(0.0, 4.0, size=(h, w, 1)).astype(np.float32)
        pixels = np.clip(base.astype(np.float32) + noise, 0, 255).astype(np.uint8)
        path = folder / f"photo_{i:03d}_{w}x{h}.jpg"
        Image.fromarray(pixels).save(path, quality=90)
        paths.append(path)
    return paths


def decode_full(path: str | Path, preprocessing: Mapping[str, Any]) -> np.ndarray:
    """Every pixel decoded, then resized (the slow path on a photo much larger than the model)."""
    from PIL import Image, ImageOps

    from deploy_ran.images import preprocess, to_rgb

    with Image.open(path) as img:
        img = ImageOps.exif_transpose(img)
        img.load()
        return preprocess(to_rgb(img), preprocessing)


def decode_reduced(path: str | Path, preprocessing: Mapping[str, Any]) -> np.ndarray:
    """JPEG DCT-domain downscaling (``Image.draft``) to at least the resize target, then the same
    resize: the decoder skips what the resize would throw away. ``draft`` is a no-op for formats
    other than JPEG, so other files decode in full."""
    from PIL import Image, ImageOps

    from deploy_ran.images import preprocess, to_rgb

    target = int(preprocessing["resize_size"])
    with Image.open(path) as img:
        # Both sides at least `target`, so the shorter side still is after DCT scaling; EXIF
        # rotation swaps sides but not the shorter one's length.
        img.draft("RGB", (target, target))
        img = ImageOps.exif_transpose(img)
        img.load()
        return preprocess(to_rgb(img), preprocessing)


def decode_infer(path: str | Path, preprocessing: Mapping[str, Any]) -> np.ndarray:
    """What ``infer``'s loader workers run for one image."""
    from deploy_ran.images import load_and_preprocess

    return load_and_preprocess(path, preprocessing)


DECODERS: dict[str, Callable[[str | Path, Mapping[str, Any]], np.ndarray]] = {
    "full": decode_full,
    "reduced": decode_reduced,
    "infer": decode_infer,
}


def infer_decoding() -> str:
    """``reduced`` when ``deploy_ran.images`` (``infer``'s decoder) uses ``Image.draft``, else
    ``full``: read from its source, so the answer follows the code rather than a flag that could
    go stale."""
    import deploy_ran.images as images

    return "reduced" if ".draft(" in inspect.getsource(images) else "full"


@dataclass
class LoaderResult:
    """Images/s of one loader worker per decoding mode, on photos of one size."""

    photo_size: tuple[int, int]
    photos: int
    repeats: int
    preprocessing: dict[str, Any]
    images_per_s: dict[str, float]  # mode → images/s of one worker
    ms_per_image: dict[str, float]  # mode → median ms per image
    decoded_size: dict[str, tuple[int, int]]  # mode → the size the decoder produced
    infer_decoding: str  # "full" | "reduced": what infer runs today
    seconds: float
    notes: list[str] = field(default_factory=list)

    @property
    def reduced_speedup(self) -> float | None:
        """Images/s with reduced-size decoding / images/s with full decoding."""
        full, reduced = self.images_per_s.get("full"), self.images_per_s.get("reduced")
        return reduced / full if full and reduced else None

    def workers_to_feed(self, backend_images_per_s: float, mode: str = "infer") -> float:
        """Loader workers needed to keep up with a backend that runs ``backend_images_per_s``."""
        per_worker = self.images_per_s[mode]
        return backend_images_per_s / per_worker if per_worker > 0 else float("inf")

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["reduced_speedup"] = self.reduced_speedup
        d["method"] = (
            "one worker (this process), each photo decoded and preprocessed in turn, "
            f"{self.repeats} passes over {self.photos} generated JPEGs; images/s = images / "
            "total seconds of the mode; modes interleaved photo by photo"
        )
        return d


def _decoded_size(path: Path, mode: str, preprocessing: Mapping[str, Any]) -> tuple[int, int]:
    from PIL import Image

    from deploy_ran.images import draft_size

    target = int(preprocessing["resize_size"])
    with Image.open(path) as img:
        if mode == "reduced":
            img.draft("RGB", (target, target))
        elif mode == "infer":  # infer's own rule (a margin above the target, JPEGs only)
            draft = draft_size(img.size, target) if img.format == "JPEG" else None
            if draft is not None:
                img.draft(None, draft)
        return img.size  # after draft, the size the decoder will produce


def loader_benchmark(
    preprocessing: Mapping[str, Any],
    *,
    photos: Sequence[str | Path] | None = None,
    count: int = 6,
    photo_size: tuple[int, int] = PHOTO_SIZE,
    repeats: int = 2,
    modes: Sequence[str] = LOADER_MODES,
    workdir: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> LoaderResult:
    """Images/s of one loader worker per mode (see the module docstring) at ``preprocessing``
    (a model spec's dict, e.g. ``get_spec("ran92").preprocessing(224)``).

    ``photos`` are used as given; otherwise ``count`` JPEGs of ``photo_size`` are generated in
    ``workdir`` (a temporary folder when ``None``). The modes take turns photo by photo, so that
    a shared machine's changing load hits them alike.
    """
    unknown = sorted(set(modes) - set(DECODERS))
    if unknown or not modes:
        raise DeployRanError(
            f"Unknown loader mode(s) {', '.join(unknown) or '(none given)'}.",
            hint=f"Choose from: {', '.join(LOADER_MODES)}.",
            param="modes",
        )
    if repeats < 1:
        raise DeployRanError(
            f"repeats must be ≥ 1, got {repeats}.", hint="Use e.g. repeats=2.", param="repeats"
        )
    say = progress or (lambda _m: None)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="deploy-ran-loader-") as tmp:
        if photos is None:
            say(f"generating {count} JPEGs of {photo_size[0]}×{photo_size[1]}")
            paths = make_photos(Path(workdir) if workdir else Path(tmp), count, photo_size)
        else:
            paths = [Path(p) for p in photos]
        if not paths:
            raise DeployRanError("No photos to decode.", hint="Give photos or count ≥ 1.")
        for mode in modes:  # one untimed pass: file cache, lazy imports
            DECODERS[mode](paths[0], preprocessing)
        samples: dict[str, list[float]] = {m: [] for m in modes}
        for r in range(repeats):
            say(f"decoding, pass {r + 1} of {repeats}")
            for path in paths:
                for mode in modes:
                    t0 = time.perf_counter()
                    DECODERS[mode](path, preprocessing)
                    samples[mode].append(time.perf_counter() - t0)
        decoded = {m: _decoded_size(paths[0], m, preprocessing) for m in modes}
        size = _decoded_size(paths[0], "full", preprocessing)
    return LoaderResult(
        photo_size=size,
        photos=len(paths),
        repeats=repeats,
        preprocessing=dict(preprocessing),
        images_per_s={m: len(s) / sum(s) for m, s in samples.items()},
        ms_per_image={m: float(np.median(s)) * 1e3 for m, s in samples.items()},
        decoded_size=decoded,
        infer_decoding=infer_decoding(),
        seconds=time.perf_counter() - started,
        notes=[f"load average at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())}"],
    )
