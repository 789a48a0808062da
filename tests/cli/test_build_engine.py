"""`build-engine` from a user's point of view: precision ONNX first, then the engine (stand-in)."""

from __future__ import annotations

import json
import shutil
import sys

import onnx
import pytest

from deploy_ran.artifacts import read_artifact_info
from deploy_ran.trt_compat import read_sidecar
from tests.trt_standin import install


def test_model_name_to_int8_engine(cli, image_folder, tmp_path, monkeypatch):
    install(monkeypatch, "11.4.0.106")
    plan = tmp_path / "ran56_cifar.int8.plan"
    result = cli(
        [
            "build-engine",
            "ran56_cifar",
            "--int8",
            "--calib-data",
            str(image_folder),
            "--num-images",
            "8",
            "--max-batch",
            "8",
            "--output",
            str(plan),
        ],
    )
    assert result.exit_code == 0, result.output
    int8_onnx = tmp_path / "ran56_cifar.int8.onnx"
    assert (tmp_path / "ran56_cifar.onnx").exists() and int8_onnx.exists()
    assert read_artifact_info(int8_onnx).precision == "int8"
    assert "QuantizeLinear" in {n.op_type for n in onnx.load(int8_onnx).graph.node}
    side = read_sidecar(plan)
    assert side["precision"] == "int8" and side["source_onnx"]["path"] == str(int8_onnx)
    assert side["input"]["profile"]["max"] == [8, 3, 32, 32]
    assert "exported" in result.output and "calibrated" in result.output


def test_without_tensorrt_writes_the_fp16_onnx_and_exits_3(cli, cifar_onnx, tmp_path, monkeypatch):
    source = tmp_path / "m.onnx"
    shutil.copy(cifar_onnx, source)
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    result = cli(["build-engine", str(source), "--fp16", "--max-batch", "16"])
    assert result.exit_code == 3, result.output
    fp16 = tmp_path / "m.fp16.onnx"
    assert fp16.exists() and read_artifact_info(fp16).precision == "fp16"
    assert "TensorRT is not usable" in result.output
    assert (
        f"python cli.py build-engine {fp16} --max-batch 16 --output {tmp_path / 'm.fp16.plan'}"
        in result.output
    )
    assert not list(tmp_path.glob("*.plan*"))


def test_missing_calibration_folder_fails_before_any_work(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli(["build-engine", "ran56_cifar", "--int8", "--calib-data", "no_such_dir"])
    assert result.exit_code == 2
    assert "Calibration data no_such_dir does not exist" in result.output
    assert list(tmp_path.iterdir()) == []


def test_precision_cannot_go_backwards(cli, cifar_onnx, tmp_path, monkeypatch):
    install(monkeypatch, "10.16.1.11")
    fp16 = cli(
        ["export", str(cifar_onnx), "--precision", "fp16", "-o", str(tmp_path / "m.fp16.onnx")]
    )
    assert fp16.exit_code == 0, fp16.output
    result = cli(["build-engine", str(tmp_path / "m.fp16.onnx"), "--int8"])
    assert result.exit_code == 2 and "already FP16" in result.output
    both = cli(["build-engine", str(cifar_onnx), "--fp16", "--int8"])
    assert both.exit_code == 2 and "exclude each other" in both.output


def test_onnx_keeps_its_precision_and_layer_info_is_printed(cli, cifar_onnx, tmp_path, monkeypatch):
    install(monkeypatch, "10.3.0")
    plan = tmp_path / "m.plan"
    result = cli(["build-engine", str(cifar_onnx), "--layer-info", "--output", str(plan)])
    assert result.exit_code == 0, result.output
    assert read_sidecar(plan)["precision"] == "fp32"
    assert "Layer precisions" in result.output
    assert json.loads((tmp_path / "m.plan.layers.json").read_text())["Layers"]


@pytest.mark.parametrize("flag", ["--checkpoint", "--image-size"])
def test_model_options_do_not_apply_to_onnx_files(cli, cifar_onnx, flag, tmp_path):
    value = str(tmp_path / "w.pt") if flag == "--checkpoint" else "64"
    result = cli(["build-engine", str(cifar_onnx), flag, value])
    assert result.exit_code == 2 and "cannot change" in result.output
