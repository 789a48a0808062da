"""Options that do not apply to the chosen path are refused (exit 2) with the reason, before any
work, instead of being silently ignored; library hints reach the user in flags."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from cli import app, command
from cli_options import GroupValues, groups
from cli_options.calibration import CALIBRATION
from deploy_ran.errors import DeployRanError

WIDE = {"COLUMNS": "200"}


@pytest.mark.parametrize(
    "args, reason",
    [
        (
            ["build-engine", "ran56_cifar", "--fp16", "--calib-data", "d", "--method", "entropy"],
            "--calib-data, --method apply to --int8 only",
        ),
        (["build-engine", "ran56_cifar", "--calib-images", "8"], "--calib-images applies to --int8 only"),
        (["build-engine", "ran56_cifar", "--num-images", "8"], "--num-images applies to --int8 only"),
        (
            ["calibrate", "m.onnx", "--method", "entropy", "--percentile", "99.9"],
            "--percentile applies to --method percentile only",
        ),
        (["calibrate", "m.onnx", "--method", "minmax", "--bins", "4096"], "--bins applies to --method entropy or percentile only"),
        (["calibrate", "m.onnx", "--target-agreement", "0.9"], "--target-agreement applies to --exclude auto only"),
        (["export", "ran56_cifar", "--keep-fp32", "Sigmoid"], "apply to --precision fp16 only"),
        (["infer", "ran56_cifar", "--images", "x", "--address", "auto"], "apply to --ray"),
    ],
)
def test_a_flag_that_does_not_apply_is_refused_with_the_reason(tmp_path, args, reason):
    args = [str(tmp_path / a) if a == "m.onnx" else a for a in args]
    result = CliRunner().invoke(app, args, env=WIDE)
    assert result.exit_code == 2, result.output
    assert reason in result.output
    assert "Hint:" in result.output
    assert not list(tmp_path.iterdir())  # refused before any work: nothing written


def test_a_flag_that_applies_is_accepted():
    """The same flags with --int8 get past the refusal (the target then fails: no such file)."""
    result = CliRunner().invoke(
        app, ["build-engine", "no_such.onnx", "--int8", "--calib-data", "d", "--method", "entropy"], env=WIDE
    )
    assert "apply to --int8 only" not in result.output
    assert result.exit_code == 2 and "no_such.onnx" in result.output


def test_library_hints_reach_the_cli_in_flags():
    """A hint written with library parameters (``require_pass=False``, ``(num_images)``) is
    rendered with this command's flags, through the group's one mapping."""
    probe = typer.Typer()

    @command("probe", on=probe)
    @groups(calib=CALIBRATION)
    def probe_cmd(calib: GroupValues, resume: bool = False) -> None:
        raise DeployRanError(
            "Too few images (num_images).",
            hint="Pass require_pass=False to write it anyway, resume=True to continue, or "
            "set method='entropy'; keep other=1.",
            param="num_images",
        )

    @probe.command("other")
    def other() -> None:  # a second command, so typer keeps sub-command names
        pass

    result = CliRunner().invoke(probe, ["probe"], env=WIDE)
    assert result.exit_code == 2, result.output
    out = result.output
    assert "Error (--calib-images): Too few images (--calib-images)." in out
    assert "Pass --allow-failing to write it anyway, --resume to continue" in out
    assert "set --method entropy" in out
    assert "other=1" in out  # not a parameter of this command: left as written
    assert "require_pass" not in out and "num_images" not in out
