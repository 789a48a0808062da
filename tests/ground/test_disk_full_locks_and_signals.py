"""Faults (issue 11, class 5): full disks, SIGTERM, stale temporary files, one writer per output."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from deploy_ran.fileio import (
    DiskFullError,
    OutputLockedError,
    atomic_path,
    atomic_write_text,
    clean_stale_temp_dirs,
    clean_stale_temps,
    exclusive_lock,
    is_disk_full,
    owner_tag,
    temp_dir,
    temp_sibling,
)
from tests.paths import ROOT


def _dead_pid() -> int:
    """The PID of a process that has just exited (not reused within the test, in practice)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _host() -> str:
    return owner_tag().split("-", 1)[1]


def test_disk_full_is_a_clear_error_and_the_old_file_survives(tmp_path):
    out = tmp_path / "model.onnx"
    out.write_bytes(b"old model")
    with pytest.raises(DiskFullError) as info:
        with atomic_path(out) as tmp:
            tmp.write_bytes(b"half of the new")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert "No space left" in str(info.value) and "left as it was" in str(info.value)
    assert info.value.hint and "Free some space" in info.value.hint
    assert out.read_bytes() == b"old model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]  # no temp left behind


def test_disk_full_is_recognised_through_wrappers(tmp_path):
    inner = OSError(errno.EDQUOT, "Disk quota exceeded")
    try:
        try:
            raise inner
        except OSError as exc:
            raise RuntimeError("serializer failed") from exc
    except RuntimeError as wrapped:
        assert is_disk_full(wrapped)
    assert is_disk_full(OSError(errno.EFBIG, "File too large"))
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"))
    assert not is_disk_full(RuntimeError("file write failed"), tmp_path)  # space is left here


def test_other_errors_pass_through_atomic_path(tmp_path):
    with pytest.raises(PermissionError):
        with atomic_path(tmp_path / "a.json"):
            raise PermissionError(errno.EACCES, "denied")
    assert list(tmp_path.iterdir()) == []


def test_real_full_device_gives_disk_full_error(tmp_path):
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    out = tmp_path / "x.bin"
    with pytest.raises(DiskFullError):
        with atomic_path(out) as tmp:
            tmp.write_bytes(b"x")
            with open("/dev/full", "wb") as full:
                full.write(b"y" * 65536)
                full.flush()
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_temp_names_carry_the_owner_and_stale_ones_are_cleaned(tmp_path):
    out = tmp_path / "model.onnx"
    mine = temp_sibling(out)
    assert mine.name.startswith(f".model.onnx.{owner_tag()}.") and mine.name.endswith(".tmp")
    dead = tmp_path / f".model.onnx.{_dead_pid()}-{_host()}.abcd1234.tmp"
    dead.write_bytes(b"29 MB of a killed export")
    other_host = tmp_path / f".model.onnx.{_dead_pid()}-00000000.abcd1234.tmp"
    other_host.write_bytes(b"a run on another machine (shared folder)")
    other_name = tmp_path / f".other.onnx.{_dead_pid()}-{_host()}.abcd1234.tmp"
    other_name.write_bytes(b"not this output's")
    legacy = tmp_path / ".model.onnx.k2j3h4g5.tmp"  # no owner: cannot tell, never removed
    legacy.write_bytes(b"?")
    user_file = tmp_path / "model.onnx.1.tmp"
    user_file.write_bytes(b"the user's")

    removed = clean_stale_temps(out)
    assert removed == [dead] and not dead.exists()
    for kept in (mine, other_host, other_name, legacy, user_file):
        assert kept.exists(), kept.name


def test_next_atomic_write_cleans_leftovers_of_a_killed_run(tmp_path):
    out = tmp_path / "report.json"
    dead = tmp_path / f".report.json.{_dead_pid()}-{_host()}.zzzz.tmp"
    dead.write_text("{")
    atomic_write_text(out, "{}")
    assert not dead.exists() and out.read_text() == "{}"


def test_temp_dir_removes_dead_runs_folders_only(tmp_path, monkeypatch):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    dead = tmp_path / f"deploy-ran-calib-{_dead_pid()}-{_host()}-abc"
    dead.mkdir()
    (dead / "augmented.onnx").write_bytes(b"big")
    alive = tmp_path / f"deploy-ran-calib-{os.getppid()}-{_host()}-abc"
    alive.mkdir()
    foreign = tmp_path / "deploy-ran-calib-notours"
    foreign.mkdir()
    with temp_dir("deploy-ran-calib-") as tmp:
        assert tmp.name.startswith(f"deploy-ran-calib-{owner_tag()}-") and tmp.is_dir()
        assert not dead.exists() and alive.exists() and foreign.exists()
    assert not tmp.exists()
    assert clean_stale_temp_dirs("deploy-ran-calib-") == []


def test_second_writer_is_refused_and_the_lock_is_released(tmp_path):
    out = tmp_path / "preds.jsonl"
    with exclusive_lock(out) as lock:
        assert lock.exists()
        with pytest.raises(OutputLockedError, match="Another run is writing"):
            with exclusive_lock(out):
                pass
    assert not lock.exists()
    with exclusive_lock(out):  # free again
        pass


def test_lock_left_by_a_killed_process_does_not_block(tmp_path):
    out = tmp_path / "preds.jsonl"
    code = textwrap.dedent(
        f"""
        import os, sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from deploy_ran.fileio import exclusive_lock
        with exclusive_lock({str(out)!r}):
            print("locked", flush=True)
            time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(OutputLockedError):
            with exclusive_lock(out):
                pass
        proc.kill()
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    with exclusive_lock(out):  # flock dies with its process; the stale lock file is reused
        pass


def _sigterm_script(out: Path, tmpdir: Path) -> str:
    return textwrap.dedent(
        f"""
        import signal, sys, tempfile, time
        signal.signal(signal.SIGHUP, signal.SIG_DFL)  # as without nohup, whoever started us
        sys.path.insert(0, {str(ROOT)!r})
        tempfile.tempdir = {str(tmpdir)!r}
        from deploy_ran.fileio import atomic_path, temp_dir
        from deploy_ran.signals import Terminated, install_signal_handlers
        assert install_signal_handlers() == ["SIGTERM", "SIGHUP"]
        try:
            with temp_dir("deploy-ran-calib-") as folder, atomic_path({str(out)!r}) as tmp:
                tmp.write_bytes(b"x" * 1000)
                (folder / "augmented.onnx").write_bytes(b"y" * 1000)
                print("writing", flush=True)
                time.sleep(60)
        except Terminated as exc:
            sys.exit(exc.exit_code)
        """
    )


def test_sigterm_cleans_up_like_ctrl_c(tmp_path):
    out = tmp_path / "model.onnx"
    out.write_bytes(b"old")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-c", _sigterm_script(out, scratch)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "writing"
        assert len(list(tmp_path.glob(".model.onnx.*.tmp"))) == 1
        assert len(list(scratch.iterdir())) == 1
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
    assert out.read_bytes() == b"old"
    assert list(tmp_path.glob(".model.onnx.*")) == [] and list(scratch.iterdir()) == []


def test_sigkill_leftovers_are_cleaned_by_the_next_run(tmp_path):
    out = tmp_path / "model.onnx"
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-c", _sigterm_script(out, scratch)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "writing"
        proc.kill()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert len(list(tmp_path.glob(".model.onnx.*.tmp"))) == 1  # SIGKILL: nothing could run
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _alive(proc.pid):
        time.sleep(0.01)
    atomic_write_text(out, "new")
    assert list(tmp_path.glob(".model.onnx.*.tmp")) == [] and out.read_text() == "new"
    import tempfile  # the killed run's folder is cleaned by the next temp_dir()

    old = tempfile.tempdir
    tempfile.tempdir = str(scratch)
    try:
        with temp_dir("deploy-ran-calib-"):
            assert len(list(scratch.iterdir())) == 1  # only this run's own folder
    finally:
        tempfile.tempdir = old


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_signal_handlers_respect_nohup():
    code = (
        f"import signal, sys; sys.path.insert(0, {str(ROOT)!r}); "
        "signal.signal(signal.SIGHUP, signal.SIG_IGN); "
        "from deploy_ran.signals import install_signal_handlers; "
        "print(install_signal_handlers())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['SIGTERM']"


def test_reports_are_strict_json_without_nan_or_infinity():
    import json

    from deploy_ran.fileio import json_text

    text = json_text({"psnr": float("inf"), "rel": float("nan"), "rows": [1.5, float("-inf")]})
    assert json.loads(text) == {"psnr": None, "rel": None, "rows": [1.5, None]}
    assert "Infinity" not in text and "NaN" not in text
