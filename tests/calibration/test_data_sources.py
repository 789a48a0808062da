"""Calibration data sources: folders, arrays, synthetic, the built-in sample, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from calibration.data import (
    BUILTIN_NOTE,
    RECOMMENDED_MIN_IMAGES,
    SYNTHETIC_NOTE,
    CalibrationDataError,
    plan_calibration_data,
)
from deploy_ran.models import get_spec

SHAPE = (3, 32, 32)
PRE = get_spec("ran56_cifar").preprocessing(32)


def plan(source, num_images=8, seed=0, preprocessing=PRE):
    return plan_calibration_data(
        source, input_shape=SHAPE, preprocessing=preprocessing, num_images=num_images, seed=seed
    )


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "sub").mkdir()
    for k in range(6):
        Image.fromarray(rng.integers(0, 255, (40 + k, 50, 3), dtype=np.uint8)).save(
            tmp_path / f"rgb{k}.jpg"
        )
    Image.fromarray(rng.integers(0, 255, (36, 36), dtype=np.uint8), "L").save(
        tmp_path / "sub" / "gray.png"
    )
    Image.fromarray(rng.integers(0, 255, (30, 30, 4), dtype=np.uint8), "RGBA").save(
        tmp_path / "alpha.png"
    )
    Image.new("CMYK", (40, 33), (10, 20, 30, 0)).save(tmp_path / "sub" / "cmyk.jpg")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    (tmp_path / "notes.txt").write_text("not an image")
    return tmp_path


def test_folder_is_preprocessed_and_unreadable_files_are_listed(folder):
    data = plan(folder, num_images=100).load()
    assert data.images.shape == (9, *SHAPE) and data.images.dtype == np.float32
    assert [f for f, _why in data.skipped] == [str(folder / "broken.png")]
    assert len(data.files) == 9 and str(folder / "sub" / "cmyk.jpg") in data.files
    assert any("Skipped 1 unreadable" in w for w in data.warnings)
    assert any("has 9 readable" in w for w in data.warnings)
    assert any(f"at least {RECOMMENDED_MIN_IMAGES}" in w for w in data.warnings)
    # Normalised with the spec's mean/std: a [0, 1] image maps into this band.
    lo = (0 - np.array(PRE["mean"])) / np.array(PRE["std"])
    hi = (1 - np.array(PRE["mean"])) / np.array(PRE["std"])
    assert (data.images.min(axis=(0, 2, 3)) >= lo - 1e-5).all()
    assert (data.images.max(axis=(0, 2, 3)) <= hi + 1e-5).all()


def test_subset_is_seeded(folder):
    a = plan(folder, num_images=4, seed=1).load()
    b = plan(folder, num_images=4, seed=1).load()
    c = plan(folder, num_images=4, seed=2).load()
    assert a.files == b.files and np.array_equal(a.images, b.images)
    assert a.files != c.files
    assert plan(folder, num_images=4, seed=1).fingerprint != plan(folder, 4, seed=2).fingerprint


def test_fingerprint_follows_files_and_preprocessing(folder):
    before = plan(folder).fingerprint
    assert plan(folder).fingerprint == before
    other = dict(PRE, mean=[0.5, 0.5, 0.5])
    assert plan(folder, preprocessing=other).fingerprint != before
    Image.new("RGB", (40, 40)).save(folder / "new.png")
    assert plan(folder).fingerprint != before


def _missing(p):
    return p / "missing"


def _empty(p):
    (p / "empty").mkdir()
    return p / "empty"


def _text_only(p):
    (p / "t").mkdir()
    (p / "t" / "a.txt").write_text("x")
    return p / "t"


@pytest.mark.parametrize(
    "make, message",
    [(_missing, "does not exist"), (_empty, "holds no images"), (_text_only, "holds no images")],
    ids=["missing", "empty", "no-image-files"],
)
def test_bad_folders(tmp_path, make, message):
    with pytest.raises(CalibrationDataError, match=message) as err:
        plan(make(tmp_path))
    assert err.value.hint


def test_folder_of_fake_images_is_an_error(tmp_path):
    for k in range(3):
        (tmp_path / f"x{k}.jpg").write_bytes(b"not a jpeg at all")
    with pytest.raises(CalibrationDataError, match="None of the 3 image file"):
        plan(tmp_path).load()


def test_num_images_must_be_positive(folder):
    with pytest.raises(CalibrationDataError, match="at least 1"):
        plan(folder, num_images=0)


def test_npy_and_npz(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((20, *SHAPE)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    data = plan(tmp_path / "x.npy", num_images=8).load()
    assert data.images.shape == (8, *SHAPE) and data.kind == "array"
    rows = {tuple(r.ravel()[:4]) for r in x}
    assert all(tuple(r.ravel()[:4]) in rows for r in data.images)

    np.savez(tmp_path / "d.npz", x_train=x, x_test=x[:3], y_train=np.zeros(20))
    assert plan(tmp_path / "d.npz").array_key == "x_train"
    assert plan(f"{tmp_path / 'd.npz'}:x_test", num_images=8).load().images.shape[0] == 3
    with pytest.raises(CalibrationDataError, match="no array 'nope'"):
        plan(f"{tmp_path / 'd.npz'}:nope")


@pytest.mark.parametrize(
    "array, message, hint",
    [
        (np.zeros((4, 32, 32, 3), np.float32), "shape", "NHWC"),
        (np.zeros((4, 3, 16, 16), np.float32), "expected \\(N, 3, 32, 32\\)", "preprocessed"),
        (np.zeros((4, 3, 32, 32), np.uint8), "uint8", "raw pixels"),
        (np.zeros((4, 3, 32, 32), np.int32), "int32", "float32"),
        (np.zeros((0, 3, 32, 32), np.float32), "holds no images", None),
    ],
    ids=["nhwc", "size", "uint8", "int", "empty"],
)
def test_bad_arrays(tmp_path, array, message, hint):
    np.save(tmp_path / "bad.npy", array)
    with pytest.raises(CalibrationDataError, match=message) as err:
        plan(tmp_path / "bad.npy")
    if hint:
        assert hint in err.value.hint


def test_nan_array_is_refused(tmp_path):
    x = np.zeros((4, *SHAPE), np.float32)
    x[1, 0, 0, 0] = np.nan
    np.save(tmp_path / "nan.npy", x)
    with pytest.raises(CalibrationDataError, match="NaN"):
        plan(tmp_path / "nan.npy").load()


def test_synthetic_warns():
    data = plan("synthetic", num_images=5).load()
    assert data.images.shape == (5, *SHAPE) and SYNTHETIC_NOTE in data.warnings


def test_builtin_sample_is_real_photos_cropped_and_seeded():
    a = plan(None, num_images=6).load()
    b = plan("builtin", num_images=6).load()
    assert a.kind == "builtin" and BUILTIN_NOTE in a.warnings
    assert np.array_equal(a.images, b.images)
    assert a.images.shape == (6, *SHAPE)
    # Crops of photos differ from each other (not one image repeated).
    assert len({a.images[k].tobytes() for k in range(6)}) == 6
    assert plan(None, num_images=6, seed=1).load().images.tobytes() != a.images.tobytes()
