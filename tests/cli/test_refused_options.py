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
        (
            ["build-engine", "ran56_cifar", "--calib-images", "8"],
            "--calib-images applies to --int8 only",
        ),
        (
            ["build-engine", "ran56_cifar", "--num-images", "8"],
            "--num-images applies to --int8 only",
        ),
        (
            ["calibrate", "m.onnx", "--method", "entropy", "--percentile", "99.9"],
            "--percentile applies to --method percentile only",
        ),
        (
            ["calibrate", "m.onnx", "--method", "minmax", "--bins", "4096"],
            "--bins applies to --method entropy or percentile only",
        ),
        (
            ["calibrate", "m.onnx", "--target-agreement", "0.9"],
            "--target-agreement applies to --exclude auto only",
        ),
        (["export", "ran56_cifar", "--keep-fp32", "Sigmoid"], "apply to --precision fp16 only"),
        (
            ["infer", "ran56_cifar", "--images", "x", "--address", "auto"],
            "--address applies to --ray only",
        ),
        (
            [
                "infer",
                "ran56_cifar",
                "--images",
                "x",
                "--address",
                "auto",
                "--gpus-per-worker",
                "1",
            ],
            "--address, --gpus-per-worker apply to --ray only",
        ),
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
        app,
        ["build-engine", "no_such.onnx", "--int8", "--calib-data", "d", "--method", "entropy"],
        env=WIDE,
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


def test_infer_hint_about_an_existing_output_names_the_flags(tmp_path):
    """The library says ``resume=True`` / ``overwrite=True``; the user reads ``--resume``."""
    images = tmp_path / "imgs"
    images.mkdir()
    output = tmp_path / "p.jsonl"
    output.write_text('{"path": "a.jpg"}\n')
    result = CliRunner().invoke(
        app, ["infer", "ran56_cifar", "--images", str(images), "-o", str(output)], env=WIDE
    )
    assert result.exit_code == 2, result.output
    assert "--resume" in result.output and "--overwrite" in result.output
    assert "resume=True" not in result.output and "overwrite=True" not in result.output


def test_a_switch_turned_off_in_a_hint_reads_leave_out():
    from cli_options.hints import Spelling, render

    names = {"cuda_graphs": Spelling("--cuda-graphs", switch=True), "device": Spelling("--device")}
    text = render("Set device='cuda', or cuda_graphs=False.", names)
    assert text == "Set --device cuda, or leave out --cuda-graphs."


def _identity_onnx(path):
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["b", 3, 32, 32])
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, ["b", 3, 32, 32])
    graph = helper.make_graph([helper.make_node("Identity", ["input"], ["out"])], "g", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)


def test_a_differing_export_beside_the_output_is_refused_with_the_force_flag(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _identity_onnx(tmp_path / "ran56_cifar.onnx")  # not a deploy-ran export: it differs
    before = (tmp_path / "ran56_cifar.onnx").read_bytes()
    args = ["build-engine", "ran56_cifar", "--int8", "--calib-data", "synthetic"]
    result = CliRunner().invoke(app, [*args, "--image-size", "32"], env=WIDE)
    assert result.exit_code == 2, result.output
    assert "differs" in result.output and "(--force)" in result.output
    assert "overwrite_intermediate" not in result.output
    assert (tmp_path / "ran56_cifar.onnx").read_bytes() == before  # untouched


def test_force_asks_the_library_to_replace_the_differing_export(tmp_path, monkeypatch):
    import deploy_ran.convert

    seen = {}

    def fake_convert(*args, **kwargs):
        seen.update(kwargs)
        raise DeployRanError("stopped by the test")

    monkeypatch.setattr(deploy_ran.convert, "convert", fake_convert)
    CliRunner().invoke(app, ["build-engine", "ran56_cifar", "--fp16", "--force"])
    assert seen["overwrite_intermediate"] is True
    CliRunner().invoke(app, ["build-engine", "ran56_cifar", "--fp16"])
    assert seen["overwrite_intermediate"] is False
    CliRunner().invoke(app, ["export", "ran56_cifar", "--precision", "fp16", "--force"])
    assert seen["overwrite_intermediate"] is True  # the same setting, the same flag
