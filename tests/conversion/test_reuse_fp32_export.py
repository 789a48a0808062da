"""`export NAME` then `build-engine NAME --int8` in the same folder: the FP32 file is reused when
its metadata matches the request, and refused, field by field, when it does not."""

from __future__ import annotations

import shutil
import sys


def _folder_with_export(tmp_path, cifar_onnx, monkeypatch):
    """A folder holding ``ran56_cifar.onnx`` as `export ran56_cifar --checkpoint W` writes it."""
    shutil.copy(cifar_onnx, tmp_path / "ran56_cifar.onnx")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # no TensorRT: exit 3 after the ONNX
    return (tmp_path / "ran56_cifar.onnx").read_bytes()


def test_build_engine_reuses_a_matching_export(
    cli, cifar_onnx, cifar_checkpoint, tmp_path, monkeypatch
):
    before = _folder_with_export(tmp_path, cifar_onnx, monkeypatch)
    args = ["build-engine", "ran56_cifar", "--checkpoint", str(cifar_checkpoint), "--fp16"]
    result = cli(args)
    assert result.exit_code == 3, result.output  # TensorRT missing, the FP16 ONNX written
    assert "using ran56_cifar.onnx (FP32; its metadata matches" in result.output
    assert (tmp_path / "ran56_cifar.fp16.onnx").exists()
    assert (tmp_path / "ran56_cifar.onnx").read_bytes() == before


def test_build_engine_refuses_an_export_that_differs_and_says_how(
    cli, cifar_onnx, cifar_checkpoint, tmp_path, monkeypatch
):
    before = _folder_with_export(tmp_path, cifar_onnx, monkeypatch)
    result = cli(["build-engine", "ran56_cifar", "--fp16", "--image-size", "64"])
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "Error (--force)" in text and "image_size: 32 vs 64" in text
    assert "weights: checkpoint sha256" in text  # exported from a checkpoint, none given now
    assert (tmp_path / "ran56_cifar.onnx").read_bytes() == before
    assert not (tmp_path / "ran56_cifar.fp16.onnx").exists()


def test_build_engine_int8_proceeds_from_a_matching_export(
    cli, cifar_onnx, cifar_checkpoint, tmp_path, monkeypatch
):
    """The issue's sequence: `export` then `build-engine NAME --int8 --calib-data DIR` in the same
    folder reuses the export, calibrates and stops at exit 3 where TensorRT is missing."""
    import numpy as np
    from PIL import Image

    before = _folder_with_export(tmp_path, cifar_onnx, monkeypatch)
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(imgs / f"{i}.png")
    args = ["build-engine", "ran56_cifar", "--checkpoint", str(cifar_checkpoint), "--int8"]
    args += ["--calib-data", str(imgs), "--calib-images", "8", "--calib-batch", "4"]
    args += ["--allow-failing"]  # 8 noise images say nothing of accuracy; the flow is the point
    result = cli(args)
    assert result.exit_code == 3, result.output
    assert "using ran56_cifar.onnx (FP32; its metadata matches" in result.output
    assert (tmp_path / "ran56_cifar.int8.onnx").exists()
    assert (tmp_path / "ran56_cifar.onnx").read_bytes() == before
