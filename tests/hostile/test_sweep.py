"""Every command × every hostile input class that applies, through the CLI (issue 21).

For each pair the sweep asserts what a user is promised: the documented exit code (2 for bad
input, 0 where a command records a bad image and carries on) with a message and a hint, no
traceback, every input unchanged (hashes before and after), nothing written outside the output
folder (the working folder, the inputs' folders and the system temp folder are compared too),
no temporary or staging file left, and an end within ``BOUND`` seconds (a FIFO or a symlink loop
used to hang forever). Runs in-process through the tests' one CLI invoker
(``tests/cli_invoker.py``); the bound is a ``SIGALRM``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import stat
import tempfile
from pathlib import Path

import pytest
from corpus import CASES, Case  # tests/hostile is on sys.path through conftest
from registry import COMMANDS, TARGETS, Command

import cli
from tests.cli_invoker import CliInvoker

CLI = CliInvoker()

BOUND = 90  # seconds; every case here ends in a few
SLOW_BOUND = 600  # demo and bench run whole pipelines (minutes on two busy cores)


class Hang(BaseException):
    """Raised by SIGALRM: the command did not end within BOUND."""


def _alarm(_signum, _frame):
    raise Hang()


def snapshot(*roots: Path, skip: Path | None = None) -> dict[str, str]:
    """``path → sha256 | kind`` of everything under ``roots``, without following links or
    opening anything but regular files (a FIFO must not be read)."""
    seen: dict[str, str] = {}
    for root in roots:
        for folder, dirs, files in os.walk(root, followlinks=False):
            if skip is not None and Path(folder) == skip:
                dirs[:] = []
                continue
            for name in dirs + files:
                full = os.path.join(folder, name)
                if skip is not None and Path(full) == skip:
                    continue
                mode = os.lstat(full).st_mode
                if stat.S_ISREG(mode):
                    seen[full] = hashlib.sha256(Path(full).read_bytes()).hexdigest()
                elif not stat.S_ISDIR(mode):
                    seen[full] = f"kind {stat.S_IFMT(mode)}"
    return seen


def system_temp() -> set[str]:
    """This process's temp folders (``deploy-ran-*-<pid>-<host>-*``); other engineers' runs on
    the same machine make theirs too."""
    tag = f"-{os.getpid()}-"
    return {n for n in os.listdir(tempfile.gettempdir()) if n.startswith("deploy-ran") and tag in n}


def build_argv(cmd: Command, values: dict[str, str], case: Case | None) -> list[str]:
    argv = list(cmd.argv)
    if case is not None and case.slot not in TARGETS and case.slot != "output":
        token = cmd.tokens.get(case.slot, "{" + case.slot + "}")
        if not any(token in a for a in argv):
            argv += list(cmd.extra[case.slot])
    if case is not None and case.slot == "output":
        argv = [values["output"] if a == cmd.output else a for a in argv]
        if values.get("output_over") == "checkpoint":
            argv += list(cmd.extra["checkpoint"])
    return [a.format(**values) if "{" in a else a for a in argv]


def run(cmd: Command, values: dict[str, str], case: Case | None, work: Path):
    argv = build_argv(cmd, values, case)
    bound = SLOW_BOUND if cmd.slow else BOUND
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(bound)
    cwd = os.getcwd()
    os.chdir(work)
    try:
        result = CLI(argv, catch_exceptions=True)
    except Hang:
        pytest.fail(f"{' '.join(argv)} did not end within {bound} s")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
        os.chdir(cwd)
    if isinstance(result.exception, Hang):
        pytest.fail(f"{' '.join(argv)} did not end within {bound} s")
    return argv, result


def check_run(cmd: Command, case: Case | None, valid: dict, tmp_path: Path) -> None:
    out, work, hostile = tmp_path / "out", tmp_path / "cwd", tmp_path / "hostile"
    for folder in (out, work, hostile):
        folder.mkdir()
    values = dict(valid, out=str(out))
    codes: tuple[int, ...] = (cmd.valid_code,)
    if case is not None:
        made = case.make(hostile)
        codes = case.codes + cmd.also + ((0,) if case.group in cmd.tolerant else ())
        if case.slot in TARGETS:
            values["target"] = made
        elif case.slot == "output":
            if made == "{input}" and any("{target}" in a or "{onnx}" in a for a in cmd.argv):
                copy = hostile / "in.onnx"  # outputs over inputs: a copy of the ONNX is both
                shutil.copy(valid["onnx"], copy)
                values["target"] = values["onnx"] = made = str(copy)
            elif made == "{input}":  # export: the checkpoint it reads is the output
                copy = hostile / "in.pt"
                shutil.copy(valid["checkpoint"], copy)
                values["checkpoint"] = made = str(copy)
                values["output_over"] = "checkpoint"
            elif made.endswith(".out"):
                made = made[: -len(".out")] + Path(cmd.output).suffix
            values["output"] = made.replace("{out}", str(out))
        else:
            values[cmd.tokens.get(case.slot, case.slot).strip("{}")] = made
    before = snapshot(tmp_path, valid["folder"], skip=out)
    temps = system_temp()
    argv, result = run(cmd, values, case, work)
    text = result.output
    shown = f"$ {' '.join(argv)}\nrc={result.exit_code}\n{text[-3000:]}"
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        import traceback

        tb = "".join(traceback.format_exception(result.exception))
        pytest.fail(f"uncaught exception\n{shown}\n{tb[-4000:]}")
    assert "Traceback" not in text, shown
    assert result.exit_code in codes, shown
    if result.exit_code == 2:
        assert "Error" in text and "Hint" in text, f"no message and hint\n{shown}"
    after = snapshot(tmp_path, valid["folder"], skip=out)
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    assert not changed, f"written or changed outside the output folder: {sorted(changed)}\n{shown}"
    assert system_temp() <= temps, f"left in the temp folder: {system_temp() - temps}\n{shown}"
    left = [
        p for p in snapshot(out) if Path(p).name.endswith((".tmp", ".lock")) or ".tmp" in p
    ]
    assert not left, f"temporary files left: {left}\n{shown}"


def pairs() -> list:
    params = []
    for cmd in COMMANDS.values():
        for case in CASES:
            if case.slot not in cmd.slots:
                continue
            marks = [pytest.mark.slow] if cmd.slow or case.slot in cmd.slow_slots else []
            params.append(pytest.param(cmd.name, case.name, id=f"{cmd.name}:{case.name}", marks=marks))
    return params


def test_every_command_is_registered():
    """A typer command missing from the registry is a command the sweep never attacks."""
    names = {c.name or c.callback.__name__ for c in cli.app.registered_commands}
    assert names == set(COMMANDS), f"unregistered: {names - set(COMMANDS)}; stale: {set(COMMANDS) - names}"


def test_every_slot_has_cases_and_commands():
    slots = {c.slot for c in CASES}
    used = set().union(*(c.slots for c in COMMANDS.values()))
    assert used <= slots, used - slots
    assert slots <= used, f"cases no command takes: {slots - used}"


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=[pytest.mark.slow] if c.slow else []) for n, c in COMMANDS.items()],
)
def test_minimal_valid_invocation(name, valid, tmp_path):
    """The registry's invocation works: a hostile case fails because of its input, not the rest."""
    check_run(COMMANDS[name], None, valid, tmp_path)


@pytest.mark.parametrize(("command", "case"), pairs())
def test_hostile_input(command, case, valid, tmp_path):
    check_run(COMMANDS[command], next(c for c in CASES if c.name == case), valid, tmp_path)
