"""One name per setting: a flag means the same setting in every command, and a setting has the
same flag in every command (calibrate and build-engine share their calibration flags)."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from cli import app

COMMANDS = typer.main.get_command(app).commands


def _visible(command) -> dict[str, tuple[str, ...]]:
    """Setting (the parameter's name) → its visible flags, for one command."""
    return {
        p.name: tuple(sorted(p.opts + p.secondary_opts))
        for p in command.params
        if getattr(p, "param_type_name", "") == "option" and not p.hidden and p.name != "help"
    }


def _everywhere() -> dict[str, dict[tuple[str, ...], list[str]]]:
    out: dict[str, dict[tuple[str, ...], list[str]]] = {}
    for name, command in COMMANDS.items():
        for setting, flags in _visible(command).items():
            out.setdefault(setting, {}).setdefault(flags, []).append(name)
    return out


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_each_setting_has_the_same_flags_in_every_command(command):
    everywhere = _everywhere()
    for setting, flags in _visible(COMMANDS[command]).items():
        spellings = everywhere[setting]
        assert len(spellings) == 1, f"{setting!r} is spelled differently: {spellings}"
        assert flags in spellings


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_each_flag_names_one_setting_in_every_command(command):
    owners: dict[str, set[str]] = {}
    for other in COMMANDS.values():
        for setting, flags in _visible(other).items():
            for flag in flags:
                owners.setdefault(flag, set()).add(setting)
    for flags in _visible(COMMANDS[command]).values():
        for flag in flags:
            assert len(owners[flag]) == 1, f"{flag} names several settings: {owners[flag]}"


def test_calibrate_and_build_engine_share_every_calibration_flag():
    from cli_options.calibration import CALIBRATION

    group_flags = {f.flag() for f in CALIBRATION.fields}
    for name in ("calibrate", "build-engine"):
        flags = {f for fs in _visible(COMMANDS[name]).values() for f in fs}
        assert group_flags <= flags, (name, group_flags - flags)


@pytest.mark.parametrize(
    "command, old, new",
    [
        ("calibrate", "--data", "--calib-data"),
        ("calibrate", "--batch", "--calib-batch"),
        ("calibrate", "--device", "--calib-device"),
        ("calibrate", "--num-images", "--calib-images"),
        ("build-engine", "--num-images", "--calib-images"),
        ("bench", "--batch-sizes", "--batch"),
        ("demo", "--calibration-images", "--calib-images"),
        ("demo", "--runs", "--iterations"),
    ],
)
def test_old_names_are_hidden_aliases(command, old, new):
    params = [p for p in COMMANDS[command].params if old in getattr(p, "opts", ())]
    assert len(params) == 1 and params[0].hidden, f"{old} should be a hidden alias on {command}"
    assert any(new in p.opts and not p.hidden for p in COMMANDS[command].params)
    help_text = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"}).output
    assert new in help_text and f"{old} " not in help_text


def test_an_old_name_and_its_new_name_together_are_refused(tmp_path):
    result = CliRunner().invoke(
        app, ["calibrate", str(tmp_path / "m.onnx"), "--data", "a", "--calib-data", "b"]
    )
    assert result.exit_code == 2
    assert "--data is the old name of --calib-data" in result.output


def test_an_old_name_still_reaches_the_library(tmp_path):
    """``bench --batch-sizes 0`` is checked exactly as ``--batch 0``."""
    wide = {"COLUMNS": "200"}
    old = CliRunner().invoke(app, ["bench", "ran56_cifar", "--batch-sizes", "0"], env=wide)
    new = CliRunner().invoke(app, ["bench", "ran56_cifar", "--batch", "0"], env=wide)
    assert old.exit_code == new.exit_code == 2
    assert "'--batch-sizes'" in old.output and "'--batch'" in new.output
    assert "from 1 to 4,096, got 0" in old.output and "from 1 to 4,096, got 0" in new.output


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_shared_options_sit_under_the_same_help_heading(command):
    """``--output``/``--json`` under Output, ``--device`` under Runner, ``--checkpoint`` under
    Model, wherever a command has them."""
    expected = {"--output": "Output", "--json": "Output", "--device": "Runner",
                "--checkpoint": "Model", "--image-size": "Model"}  # fmt: skip
    for p in COMMANDS[command].params:
        if getattr(p, "hidden", False):
            continue
        for flag in set(getattr(p, "opts", ())) & set(expected):
            panel = getattr(p, "rich_help_panel", None)
            # a group that builds the library config owns its fields (export's --checkpoint)
            assert panel == expected[flag] or (command, panel) == ("export", "Export"), (
                command,
                flag,
                panel,
            )
