"""The command line as a user meets it: exit codes, messages, files."""

from __future__ import annotations

import json

import onnx
from typer.testing import CliRunner

from cli import app

runner = CliRunner()


def test_models_table_lists_every_model():
    result = runner.invoke(app, ["models"])
    assert result.exit_code == 0, result.output
    for name in ("ran56", "ran92", "ran56_next", "ran452_cifar"):
        assert name in result.output
    assert "52.47" in result.output  # ran92's parameters in millions


def test_models_json_is_machine_readable():
    result = runner.invoke(app, ["models", "ran92*", "--json"])
    rows = json.loads(result.output)
    assert [r["name"] for r in rows] == ["ran92", "ran92_cifar"]
    assert rows[0]["params"] == 52_466_344 and rows[0]["paper_params_m"] == 51.3


def test_unknown_model_suggests_and_exits_2():
    result = runner.invoke(app, ["export", "ran29"])
    assert result.exit_code == 2
    assert "Unknown model 'ran29'" in result.output
    assert "ran92" in result.output


def test_export_then_inspect(tmp_path):
    out = tmp_path / "m.onnx"
    result = runner.invoke(
        app, ["export", "ran56_cifar", "--static-batch", "--batch", "2", "--output", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "relative L2" in result.output and "pass" in result.output
    assert onnx.load(out).graph.input[0].type.tensor_type.shape.dim[0].dim_value == 2

    shown = runner.invoke(app, ["inspect", str(out)])
    assert shown.exit_code == 0, shown.output
    assert "[2, 3, 32, 32]" in shown.output
    assert "align_corners" in shown.output
    assert "static-graph checks pass" in shown.output

    as_json = json.loads(runner.invoke(app, ["inspect", str(out), "--json"]).output)
    assert as_json["metadata"]["model"] == "ran56_cifar"
    assert as_json["graph"]["ok"] is True
    assert all(r["output_hw"] for r in as_json["graph"]["resizes"])


def test_inspect_corrupt_and_missing_files(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00\x01garbage")
    result = runner.invoke(app, ["inspect", str(bad)])
    assert result.exit_code == 2
    assert "not a valid ONNX file" in result.output
    missing = runner.invoke(app, ["inspect", str(tmp_path / "none.onnx")])
    assert missing.exit_code == 2 and "does not exist" in missing.output
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    assert "is empty" in runner.invoke(app, ["inspect", str(empty)]).output


def test_export_to_missing_folder(tmp_path):
    result = runner.invoke(app, ["export", "ran56_cifar", "-o", str(tmp_path / "no" / "x.onnx")])
    assert result.exit_code == 2
    assert "does not exist" in result.output


def test_export_bad_option_value():
    result = runner.invoke(app, ["export", "ran56_cifar", "--attention", "softmax"])
    assert result.exit_code == 2
    assert "'mixed'" in result.output


def test_export_corrupt_checkpoint(tmp_path):
    ckpt = tmp_path / "w.pt"
    ckpt.write_bytes(b"not a checkpoint")
    result = runner.invoke(
        app, ["export", "ran56_cifar", "--checkpoint", str(ckpt), "-o", str(tmp_path / "m.onnx")]
    )
    assert result.exit_code == 2
    assert "not a readable PyTorch checkpoint" in result.output
    assert not (tmp_path / "m.onnx").exists()


def test_doctor_reports_the_stack():
    result = runner.invoke(app, ["doctor", "--json"])
    env = json.loads(result.output)
    assert env["torch"].startswith("2.")
    assert "CPUExecutionProvider" in env["onnxruntime_providers"]
    assert "tensorrt" in env
