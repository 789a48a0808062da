"""What cli_render prints for a finished run: infer's NaN/inf verdict, doctor's verdict."""

from __future__ import annotations

import io
from types import SimpleNamespace

from rich.console import Console

import cli_render


def _capture(monkeypatch) -> tuple[io.StringIO, io.StringIO]:
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr(cli_render, "console", Console(file=out, width=200))
    monkeypatch.setattr(cli_render, "err_console", Console(file=err, width=200))
    return out, err


def test_infer_result_fails_a_run_whose_logits_were_not_finite(monkeypatch):
    out, err = _capture(monkeypatch)
    assert cli_render.infer_result("14 images", SimpleNamespace(ok=False, model_errors=7)) is False
    assert "14 images" in out.getvalue() and "7 image(s) gave NaN/inf logits" in err.getvalue()


def test_infer_result_passes_a_clean_run(monkeypatch):
    out, err = _capture(monkeypatch)
    assert cli_render.infer_result("14 images", SimpleNamespace(ok=True, model_errors=0)) is True
    assert err.getvalue() == ""


def test_doctor_prints_the_verdict_after_the_table(monkeypatch):
    out, _ = _capture(monkeypatch)
    diagnosis = {"verdict": "Ready.", "works": ["CPU path"], "next_steps": ["install X"]}
    cli_render.doctor("TABLE", diagnosis)
    text = out.getvalue()
    assert text.index("TABLE") < text.index("Ready.") < text.index("next: install X")


def test_an_error_names_only_flags_and_arguments_the_command_has(cli, tmp_path):
    """A library error about a parameter the command has no flag for names no invented flag
    (verify has REFERENCE/CANDIDATE, not --target); one about a positional argument names it."""
    missing = tmp_path / "x.plan"
    result = cli(["verify", str(missing), "ran56_cifar"])
    assert result.exit_code == 2
    assert "Error:" in result.output and "--target" not in result.output
    assert "x.plan does not exist" in " ".join(result.output.split())
