"""An engine runs only on a GPU: `--device cpu` with an engine is refused at the door, by name,
before anything is loaded (it used to become "cuda" silently)."""

from __future__ import annotations

from typer.testing import CliRunner

from cli import app


def test_verify_an_engine_on_the_cpu_is_refused_naming_the_flag(cifar_onnx, tmp_path):
    plan = tmp_path / "m.plan"
    plan.write_bytes(b"never read: the device is checked first")
    result = CliRunner().invoke(app, ["verify", str(cifar_onnx), str(plan), "--device", "cpu"])
    text = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert "Error (--device)" in text and "runs only on an NVIDIA GPU" in text


def test_a_device_typo_is_refused_with_the_likely_meaning(cifar_onnx):
    result = CliRunner().invoke(app, ["verify", "ran56_cifar", str(cifar_onnx), "--device", "gpu"])
    text = " ".join(result.output.split())
    assert result.exit_code == 2 and 'Did you mean "cuda"' in text, result.output
