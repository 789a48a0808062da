"""Image discovery, mode conversion and spec preprocessing."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from deploy_ran.images import ImageError, find_images, load_and_preprocess, load_rgb, preprocess
from deploy_ran.models import get_spec


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "sub").mkdir()
    Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(tmp_path / "a.jpg")
    Image.fromarray(rng.integers(0, 255, (50, 50), dtype=np.uint8), "L").save(
        tmp_path / "sub" / "b.png"
    )
    Image.fromarray(rng.integers(0, 255, (30, 30, 4), dtype=np.uint8), "RGBA").save(
        tmp_path / "c.png"
    )
    Image.new("CMYK", (33, 20), (10, 20, 30, 0)).save(tmp_path / "d.jpg")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    return tmp_path


def test_find_images_recursive_sorted(folder):
    names = [p.relative_to(folder).as_posix() for p in find_images(folder)]
    assert names == ["a.jpg", "broken.png", "c.png", "d.jpg", "sub/b.png"]


def test_find_images_glob_and_list(folder):
    assert [p.name for p in find_images(str(folder / "*.jpg"))] == ["a.jpg", "d.jpg"]
    listing = folder / "list.txt"
    listing.write_text("sub/b.png\n# comment\na.jpg\n")
    assert [p.name for p in find_images(listing)] == ["b.png", "a.jpg"]


def test_find_images_errors(tmp_path):
    with pytest.raises(ImageError, match="does not exist"):
        find_images(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageError, match="holds no images"):
        find_images(tmp_path / "empty")


@pytest.mark.parametrize("name", ["a.jpg", "sub/b.png", "c.png", "d.jpg"])
def test_every_mode_becomes_rgb(folder, name):
    img = load_rgb(folder / name)
    assert img.mode == "RGB"


def test_unreadable_image_is_a_clear_error(folder):
    with pytest.raises(ImageError, match="not a readable image"):
        load_rgb(folder / "broken.png")
    with pytest.raises(ImageError, match="not a readable image"):
        load_rgb(folder / "notes.txt")


def test_preprocess_resizes_crops_and_normalises():
    pre = get_spec("ran92").preprocessing()
    white = Image.new("RGB", (300, 500), (255, 255, 255))
    arr = preprocess(white, pre)
    assert arr.shape == (3, 224, 224) and arr.dtype == np.float32
    expected = (1.0 - np.array(pre["mean"])) / np.array(pre["std"])
    np.testing.assert_allclose(arr[:, 0, 0], expected, rtol=1e-5)


def test_preprocess_keeps_the_centre(tmp_path):
    """A wide image keeps its centre column band: left half black, right half white."""
    arr = np.zeros((32, 96, 3), np.uint8)
    arr[:, 48:] = 255
    Image.fromarray(arr).save(tmp_path / "wide.png")
    pre = {"resize_size": 32, "crop_size": 32, "mean": [0, 0, 0], "std": [1, 1, 1]}
    out = load_and_preprocess(tmp_path / "wide.png", pre)
    assert out[0, :, 0].max() < 0.1 and out[0, :, -1].min() > 0.9
