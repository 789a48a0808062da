"""The README's main job (`python cli.py demo`), end to end on a small model."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from cli import app
from deploy_ran.artifacts import read_artifact_info


def test_demo_runs_every_step(tmp_path):
    result = CliRunner().invoke(
        app,
        [
            "demo",
            "--model",
            "ran56_cifar",
            "--workdir",
            str(tmp_path),
            "--iterations",
            "2",
            "--calib-images",
            "8",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "demo_summary.json").read_text())
    assert {read_artifact_info(p).precision for p in summary["artifacts"].values()} == {
        "fp32",
        "fp16",
        "int8",
    }
    assert all(v["passed"] for v in summary["parity"].values()), summary["parity"]
    rows = summary["bench"]["rows"]
    assert {(r["backend"], r["precision"]) for r in rows if r["status"] == "ran"} == {
        ("torch", "fp32"),
        ("ort", "fp32"),
        ("ort", "fp16"),
        ("ort", "int8"),
    }
    assert any(p.endswith(".png") for p in summary["bench"]["files"].values())
    # No TensorRT here: the engine step names the command that finishes on a GPU host.
    assert summary["engine"] is None  # null, not an empty path
    assert "python cli.py build-engine" in result.output
