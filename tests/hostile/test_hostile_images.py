"""Hostile images (issue 11, class 3): bombs, extreme shapes, huge JPEGs, odd names and lists.

Every image is decoded with a pixel limit and resized in bounded memory; a bad one is an
:class:`ImageError` for that image (a recorded per-image error in calibrate/verify/infer/visualize).
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deploy_ran.errors import DeployRanError
from deploy_ran.images import (
    MAX_PIXELS,
    ImageError,
    display_path,
    find_images,
    load_and_preprocess,
    load_rgb,
    preprocess,
)
from tests.paths import ROOT

PRE = {"resize_size": 36, "crop_size": 32, "mean": [0.5] * 3, "std": [0.25] * 3}


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims ``width``×``height`` (a decompression bomb as PIL first sees it)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )
    return path


@pytest.mark.parametrize(
    ("width", "height", "words"),
    [
        (100_000, 100_000, "decompression bomb"),  # past PIL's hard limit: refused by PIL at open
        (10_000, 10_000, "more than the limit"),  # between PIL's warning and error: ours refuses
    ],
)
def test_decompression_bombs_are_image_errors_from_the_header(tmp_path, width, height, words):
    bomb = png_header_only(tmp_path / "bomb.png", width, height)
    with pytest.raises(ImageError, match=words) as info:
        load_and_preprocess(bomb, PRE)
    assert "bomb.png" in str(info.value) and info.value.hint


def test_pixel_limit_is_a_parameter(tmp_path):
    Image.new("RGB", (50, 40)).save(tmp_path / "a.png")
    assert load_rgb(tmp_path / "a.png", max_pixels=2000).size == (50, 40)
    with pytest.raises(ImageError, match="50×40 = 2,000 pixels, more than the limit of 1,999"):
        load_rgb(tmp_path / "a.png", max_pixels=1999)
    assert MAX_PIXELS < Image.MAX_IMAGE_PIXELS * 2  # never looser than PIL's own hard limit


@pytest.mark.parametrize("shape", [(1, 400_000), (400_000, 1), (3, 250_000)])
def test_extreme_aspect_ratios_preprocess_in_bounded_memory(tmp_path, shape):
    """The old resize-then-crop made a 1×400,000 strip a 26-gigapixel image; 1.5 GB must do."""
    path = tmp_path / "strip.png"
    Image.new("RGB", shape, (10, 200, 30)).save(path)
    code = textwrap.dedent(
        f"""
        import resource, sys
        sys.path.insert(0, {str(ROOT)!r})
        from deploy_ran.images import load_and_preprocess
        limit = 1536 * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        pre = {{"resize_size": 256, "crop_size": 224, "mean": [0, 0, 0], "std": [1, 1, 1]}}
        x = load_and_preprocess({str(path)!r}, pre)
        print(x.shape, *[round(float(v) * 255) for v in x[:, 100, 100]])
        """
    )
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["(3,", "224,", "224)", "10", "200", "30"]


def test_cropped_resize_matches_resize_then_crop():
    """The bounded path samples the same positions as the plain one (up to uint8 rounding)."""
    from deploy_ran import images

    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (90, 70, 3), dtype=np.uint8))
    plain = preprocess(img, PRE)
    old = images.RESIZE_BUDGET
    try:
        images.RESIZE_BUDGET = 0  # force the cropped path
        bounded = preprocess(img, PRE)
    finally:
        images.RESIZE_BUDGET = old
    assert np.abs(plain - bounded).max() <= 1.0 / 255 / 0.25 + 1e-5
    assert np.abs(plain - bounded).mean() < 0.01


def _photo(size: tuple[int, int]) -> Image.Image:
    """A photograph-like image (a real photo, upscaled) to compare decodes on."""
    from sklearn.datasets import load_sample_image

    return Image.fromarray(load_sample_image("china.jpg")).resize(size, Image.Resampling.BICUBIC)


def test_large_jpegs_decode_at_reduced_size_and_stay_close_to_a_full_decode(tmp_path):
    path = tmp_path / "big.jpg"
    _photo((2400, 1800)).save(path, quality=92)
    pre = {
        "resize_size": 256,
        "crop_size": 224,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
    }
    assert load_rgb(path, min_size=256).size == (1200, 900)  # 1/2: shorter side ≥ 2 × 256 kept
    assert load_rgb(path, min_size=100).size == (300, 225)  # 1/8: 225 ≥ 2 × 100 kept
    assert load_rgb(path).size == (2400, 1800)  # no target: full decode
    fast = load_and_preprocess(path, pre)
    full = preprocess(load_rgb(path), pre)
    diff = np.abs(fast - full)
    assert diff.mean() < 0.02 and diff.max() < 0.3, (diff.mean(), diff.max())
    assert np.corrcoef(fast.ravel(), full.ravel())[0, 1] > 0.999


def test_small_jpegs_are_decoded_in_full(tmp_path):
    path = tmp_path / "small.jpg"
    _photo((600, 400)).save(path)
    pre = {"resize_size": 256, "crop_size": 224, "mean": [0.5] * 3, "std": [0.25] * 3}
    assert np.array_equal(load_and_preprocess(path, pre), preprocess(load_rgb(path), pre))


def test_names_that_are_not_utf8_are_found_decoded_and_printable(tmp_path):
    raw = os.fsencode(tmp_path) + b"/caf\xe9.png"
    Image.new("RGB", (40, 40), (1, 2, 3)).save(os.fsdecode(raw))
    (found,) = find_images(tmp_path)
    assert os.fsencode(found) == raw
    assert load_and_preprocess(found, PRE).shape == (3, 32, 32)
    shown = display_path(found)
    assert shown.endswith("caf\\xe9.png")
    shown.encode("utf-8")  # printable: no lone surrogates
    broken = Path(os.fsdecode(os.fsencode(tmp_path) + b"/bad\xff.jpg"))
    broken.write_bytes(b"nope")
    with pytest.raises(ImageError) as info:
        load_rgb(broken)
    str(info.value).encode("utf-8")  # the message can be printed and written to JSON
    assert "bad\\xff.jpg" in str(info.value)


def test_latin1_and_bom_lists_name_their_files(tmp_path):
    Image.new("RGB", (40, 40)).save(os.fsdecode(os.fsencode(tmp_path) + b"/caf\xe9.png"))
    Image.new("RGB", (40, 40)).save(tmp_path / "plain.png")
    listing = tmp_path / "list.txt"
    listing.write_bytes("café.png\nplain.png\n".encode("latin-1"))  # written on a latin-1 system
    names = [os.fsencode(p.name) for p in find_images(listing)]
    assert names == [b"caf\xe9.png", b"plain.png"]
    assert all(load_and_preprocess(p, PRE).shape == (3, 32, 32) for p in find_images(listing))
    listing.write_bytes(b"\xef\xbb\xbfplain.png\r\n# comment\n")
    assert [p.name for p in find_images(listing)] == ["plain.png"]


def test_latin1_labels_are_refused_with_the_line(tmp_path):
    from deploy_ran.infer import read_labels

    labels = tmp_path / "labels.txt"
    labels.write_bytes("cat\ndog\ncaf\xe9 au lait\n".encode("latin-1"))
    with pytest.raises(DeployRanError, match="not UTF-8 text .*line 3") as info:
        read_labels(labels)
    assert "iconv" in info.value.hint
    labels.write_bytes("\ufeffcat\ncafé\n".encode())
    assert read_labels(labels) == ["cat", "café"]


def test_calibration_records_bombs_and_keeps_going(tmp_path):
    from calibration.data import plan_calibration_data

    folder = tmp_path / "calib"
    folder.mkdir()
    for i in range(3):
        Image.new("RGB", (40, 40), (i * 50, 0, 0)).save(folder / f"ok{i}.png")
    png_header_only(folder / "bomb.png", 100_000, 100_000)
    png_header_only(folder / "big.png", 10_000, 10_000)
    Image.new("RGB", (1, 400_000)).save(folder / "strip.png")
    plan = plan_calibration_data(
        str(folder), input_shape=(3, 32, 32), preprocessing=PRE, num_images=6
    )
    data = plan.load()
    assert len(data) == 4  # the three plain images and the strip
    assert {Path(p).name for p, _ in data.skipped} == {"bomb.png", "big.png"}
    assert all("bomb" in e or "limit" in e for _, e in data.skipped)


def test_verify_inputs_skip_bombs(tmp_path):
    from deploy_ran.verify import load_inputs

    folder = tmp_path / "v"
    folder.mkdir()
    Image.new("RGB", (40, 40), (9, 9, 9)).save(folder / "a.png")
    png_header_only(folder / "b.png", 100_000, 100_000)
    inputs = load_inputs(str(folder), (3, 32, 32), preprocessing=PRE)
    assert inputs.names == [str(folder / "a.png")]
    assert len(inputs.skipped) == 1 and "bomb" in inputs.skipped[0]["error"]
