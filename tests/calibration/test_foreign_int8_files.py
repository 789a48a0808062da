"""INT8 files made by NVIDIA's quantizer (ModelOpt) and by ONNX Runtime's go through the toolkit.

``tests/data/modelopt_tiny_ran.int8.onnx`` is ModelOpt 0.47's ``python -m
modelopt.onnx.quantization --quantize_mode int8 --calibration_method max --calibration_eps cpu``
(FP16 float part, opset 19, Casts at the graph edges, no deploy-ran metadata) of
``tests/data/tiny_ran.onnx`` (``tests/calibration/tiny_ran.py``, with deploy-ran metadata, which
ModelOpt drops), calibrated on 64 seeded normal
inputs. The ONNX Runtime file is made here with ``quantize_static``. Each goes through ``inspect``
(with its INT8 coverage), ``verify`` against the FP32 file, ``evaluate`` (the library API: no
``evaluate`` command on main yet), ``build-engine`` (validation, then exit 3
without TensorRT), ``triton-repo`` and ``infer``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image

from tests.calibration.tiny_ran import images
from tests.paths import DATA

FP32 = DATA / "tiny_ran.onnx"
MODELOPT = DATA / "modelopt_tiny_ran.int8.onnx"


def _ort_quantized(path: Path) -> Path:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"input": b[None]} for b in images(16)])

        def get_next(self):
            return next(self.batches, None)

    quantize_static(
        str(FP32), str(path), Reader(), quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, per_channel=True,
    )  # fmt: skip
    return path


@pytest.fixture(params=["modelopt", "onnxruntime"])
def int8_file(request, tmp_path) -> Path:
    if request.param == "modelopt":
        path = tmp_path / "tiny.modelopt.int8.onnx"
        path.write_bytes(MODELOPT.read_bytes())
        return path
    return _ort_quantized(tmp_path / "tiny.ort.int8.onnx")


def test_modelopt_fixture_is_what_the_docstring_says():
    model = onnx.load(str(MODELOPT))
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Cast"} <= ops
    assert next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) == 19
    fp16 = onnx.TensorProto.FLOAT16
    assert any(i.data_type == fp16 for i in model.graph.initializer)  # FP16 float part
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT


def test_inspect_reports_coverage(cli, int8_file):
    result = cli(["inspect", str(int8_file), "--json"])
    assert result.exit_code == 0, result.output
    cov = json.loads(result.output)["coverage"]
    assert cov["activation_bytes_per_image"]["int8"] > 0
    assert set(cov["activation_bytes_per_image"]) >= {"int8", "fp16", "fp32"}
    table = cli(["inspect", str(int8_file)])
    assert table.exit_code == 0 and "INT8 coverage" in table.output


def test_verify_against_fp32(cli, int8_file, tmp_path):
    npy = tmp_path / "x.npy"
    np.save(npy, images(8, seed=3))
    result = cli(["verify", str(FP32), str(int8_file), "--data", str(npy), "--json"])
    assert result.exit_code == 0, result.output  # within verify's INT8 criteria of FP32
    report = json.loads(result.output[result.output.index("{") :])
    assert report["passed"] is True, report


def test_build_engine_validates_then_exits_3_without_tensorrt(cli, int8_file, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    result = cli(["build-engine", str(int8_file), "--max-batch", "4"])
    assert result.exit_code == 3, result.output
    assert "TensorRT is not usable" in result.output


def test_triton_repo(cli, int8_file, tmp_path):
    repo = tmp_path / "repo"
    args = ["triton-repo", str(int8_file), "--output", str(repo), "--kind", "cpu", "--name", "t"]
    result = cli([*args, "--max-batch", "4"])
    assert result.exit_code == 0, result.output
    assert (repo / "t" / "config.pbtxt").is_file()
    assert (repo / "t" / "1" / "model.onnx").read_bytes() == int8_file.read_bytes()


def test_infer_after_adopting_the_fp32_metadata(cli, int8_file, tmp_path):
    from calibration.foreign import adopt_int8_file
    from deploy_ran.artifacts import read_artifact_info

    adopt_int8_file(int8_file, FP32)
    assert read_artifact_info(int8_file).precision == "int8"
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for k in range(3):
        Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(folder / f"{k}.png")
    out = tmp_path / "preds.jsonl"
    result = cli(["infer", str(int8_file), "--images", str(folder), "--output", str(out)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    assert len(rows) == 3


def test_adopt_refuses_a_file_without_qdq_and_a_different_network(tmp_path):
    from calibration.foreign import adopt_int8_file
    from deploy_ran.errors import DeployRanError

    with pytest.raises(DeployRanError, match="no QuantizeLinear"):
        adopt_int8_file(FP32, FP32, tmp_path / "x.onnx")
    other = onnx.load(str(FP32))
    other.graph.input[0].type.tensor_type.shape.dim[2].dim_value = 32
    other_path = tmp_path / "other.onnx"
    onnx.save(other, str(other_path))
    with pytest.raises(DeployRanError, match="differ in their inputs"):
        adopt_int8_file(MODELOPT, other_path, tmp_path / "y.onnx")
    assert not (tmp_path / "y.onnx").exists()


def test_evaluate_against_fp32_with_the_paired_test(int8_file, tmp_path):
    from deploy_ran.evaluate import evaluate

    x = images(24, seed=5)
    labels = _fp32_top1(x)  # labels the FP32 file gets right: the paired test has work to do
    npz = tmp_path / "labelled.npz"
    np.savez(npz, x=x, y=labels.astype(np.int64))
    result = evaluate([str(FP32), str(int8_file)], str(npz))
    assert [t.precision for t in result.targets] == ["fp32", "int8"]
    assert result.target(str(FP32)).metrics.top1 == 1.0
    assert result.target(str(int8_file)).metrics.top1 >= 0.75
    paired = result.comparisons[str(int8_file)]
    assert paired.n == 24 and 0.0 <= paired.p_value <= 1.0
    assert paired.changed == paired.lost + paired.gained  # labels are FP32's: no both-wrong swap


def _fp32_top1(x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(FP32), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0].argmax(1)
