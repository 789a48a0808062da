"""infer outputs (issue 11, classes 4 and 7): one writer, resume only our own file, atomic
--overwrite, duplicates kept, byte-exact names, NaN logits and run-time failures never written
as success, full disks reported."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deploy_ran.errors import DeployRanError
from deploy_ran.fileio import DiskFullError, OutputLockedError, exclusive_lock, owner_tag
from deploy_ran.infer import InferenceError, producer_path, run_inference
from deploy_ran.infer.writer import OutputWriter
from deploy_ran.runners import load_runner
from tests.paths import ROOT


class _Crash(Exception):
    pass


def _crash_after(n: int):
    def progress(done: int, total: int) -> None:
        if done >= n:
            raise _Crash

    return progress


def _strict_lines(path: Path) -> list[dict]:
    """Records, parsed as strict JSON (a bare NaN or Infinity fails)."""

    def refuse(name: str):
        raise ValueError(f"invalid JSON constant {name}")

    text = path.read_bytes().decode("utf-8")  # strict: JSON Lines is always valid UTF-8
    return [json.loads(line, parse_constant=refuse) for line in text.splitlines()]


def _run(target, images, out, **kw):
    kw.setdefault("workers", 0)
    kw.setdefault("threads", 1)
    kw.setdefault("batch_size", 4)
    kw.setdefault("topk", 3)
    return run_inference(target, images, out, **kw)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# ------------------------------------------------------------------------------- one writer


def test_a_second_writer_is_refused(cifar_onnx, image_folder, tmp_path):
    out = tmp_path / "preds.jsonl"
    with exclusive_lock(out):
        with pytest.raises(OutputLockedError, match="Another infer run is writing"):
            _run(cifar_onnx, image_folder, out, resume=True)
    assert not out.exists() and not producer_path(out).exists()
    _run(cifar_onnx, image_folder, out)
    assert len(out.read_text().splitlines()) == 14 and _leftovers(tmp_path) == []


def test_two_resume_runs_at_once_write_each_image_once(cifar_checkpoint, tmp_path):
    """The issue's example: two `infer --resume` on one output wrote 2,852 lines for 1,600."""
    folder = tmp_path / "many"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(40):
        Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(
            folder / f"{i:03d}.png"
        )
    out = tmp_path / "preds.jsonl"
    root = ROOT
    cmd = [sys.executable, "cli.py", "infer", "ran56_cifar", "--checkpoint", str(cifar_checkpoint)]
    cmd += ["--images", str(folder), "--batch", "2", "--workers", "0", "--threads", "1"]
    cmd += ["--output", str(out), "--resume"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=300)[0].decode() for p in procs]
    codes = sorted(p.returncode for p in procs)
    lines = _strict_lines(out)
    if codes == [0, 2]:  # the usual case: one held the lock, the other was refused
        assert any("is writing" in o for o in outputs)
    else:  # the second started after the first had finished: it found everything done
        assert codes == [0, 0]
    assert sorted(r["path"] for r in lines) == sorted(str(p) for p in folder.iterdir())


# --------------------------------------------------------------------- resume only our own


def _partial(cifar_onnx, image_folder, out, **kw) -> bytes:
    with pytest.raises(_Crash):
        _run(cifar_onnx, image_folder, out, progress=_crash_after(4), **kw)
    with open(out, "a") as fh:  # a torn write of the batch in flight
        fh.write('{"path": "half a rec')
    return out.read_bytes()


def test_resume_refuses_another_model_and_leaves_the_file_untouched(
    cifar_onnx, cifar_checkpoint, image_folder, tmp_path
):
    import onnx

    out = tmp_path / "preds.jsonl"
    before = _partial(cifar_onnx, image_folder, out)
    side = producer_path(out).read_bytes()

    other = tmp_path / "other.onnx"  # the same graph, edited: another artifact
    proto = onnx.load(cifar_onnx)
    onnx.helper.set_model_props(proto, {**{p.key: p.value for p in proto.metadata_props}, "x": "1"})
    onnx.save(proto, other)
    attempts = [
        dict(target=other),
        dict(target="ran56_cifar", checkpoint=cifar_checkpoint),
        dict(target=cifar_onnx, topk=2),
    ]
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(f"c{i}" for i in range(10)))
    attempts.append(dict(target=cifar_onnx, labels=labels))
    for kw in attempts:
        target = kw.pop("target")
        with pytest.raises(DeployRanError, match="another model or with other settings"):
            _run(target, image_folder, out, resume=True, **kw)
        assert out.read_bytes() == before  # not even the torn last line was removed
        assert producer_path(out).read_bytes() == side

    resumed = _run(cifar_onnx, image_folder, out, resume=True)
    assert (resumed.already_done, resumed.processed) == (4, 10)
    assert len(_strict_lines(out)) == 14


def test_resume_never_touches_a_file_it_did_not_write(cifar_onnx, image_folder, tmp_path):
    out = tmp_path / "foreign.jsonl"
    foreign = b'{"path": "a.png", "class": 1}\n{"path": "b.png", "cl'
    out.write_bytes(foreign)
    with pytest.raises(DeployRanError, match="no producer record"):
        _run(cifar_onnx, image_folder, out, resume=True)
    assert out.read_bytes() == foreign and not producer_path(out).exists()

    producer_path(out).write_text('{"someone": "else"}')  # a file of that name, not ours
    with pytest.raises(DeployRanError, match="not a deploy-ran producer record"):
        _run(cifar_onnx, image_folder, out, resume=True)
    with pytest.raises(DeployRanError, match="not a deploy-ran producer record"):
        _run(cifar_onnx, image_folder, out, overwrite=True)
    assert out.read_bytes() == foreign
    assert producer_path(out).read_text() == '{"someone": "else"}'

    csv_out = tmp_path / "foreign.csv"
    csv_out.write_bytes(b"a,b\n1,2")
    with pytest.raises(DeployRanError, match="no producer record"):
        _run(cifar_onnx, image_folder, csv_out, resume=True)
    assert csv_out.read_bytes() == b"a,b\n1,2"


def test_producer_record_says_what_wrote_the_file(cifar_onnx, image_folder, tmp_path):
    from deploy_ran.fileio import sha256_file

    out = tmp_path / "p.csv"
    result = _run(cifar_onnx, image_folder, out)
    record = json.loads(producer_path(out).read_text())
    assert record["kind"] == "deploy-ran infer output"
    producer = record["producer"]
    assert producer == result.producer
    assert producer["artifact_sha256"] == sha256_file(cifar_onnx)
    assert producer["topk"] == 3 and producer["format"] == "csv" and producer["output"] == "logits"
    assert producer["preprocessing"]["crop_size"] == 32


def test_duplicate_list_entries_are_kept_through_a_resume(cifar_onnx, image_folder, tmp_path):
    names = ["im01.png", "im02.png", "im01.png", "im03.png", "im01.png", "im02.png", "im04.png"]
    listing = image_folder / "list.txt"
    listing.write_text("\n".join(names) + "\n")
    whole = tmp_path / "whole.jsonl"
    _run(cifar_onnx, listing, whole, batch_size=2)
    assert [Path(r["path"]).name for r in _strict_lines(whole)] == names

    part = tmp_path / "part.jsonl"
    with pytest.raises(_Crash):
        _run(cifar_onnx, listing, part, batch_size=2, progress=_crash_after(4))
    resumed = _run(cifar_onnx, listing, part, batch_size=2, resume=True)
    assert (resumed.already_done, resumed.processed) == (4, 3)
    assert part.read_bytes() == whole.read_bytes()


def test_overwrite_replaces_the_old_file_only_at_the_end(cifar_onnx, image_folder, tmp_path):
    out = tmp_path / "preds.jsonl"
    _run(cifar_onnx, image_folder, out, topk=2)
    old, old_side = out.read_bytes(), producer_path(out).read_bytes()
    with pytest.raises(_Crash):
        _run(cifar_onnx, image_folder, out, overwrite=True, progress=_crash_after(8))
    assert out.read_bytes() == old and producer_path(out).read_bytes() == old_side
    assert _leftovers(tmp_path) == []  # the temporary file is gone

    result = _run(cifar_onnx, image_folder, out, overwrite=True, topk=3)
    assert result.processed == 14 and _leftovers(tmp_path) == []
    assert all(len(r.get("topk", [0] * 3)) == 3 for r in _strict_lines(out))
    assert json.loads(producer_path(out).read_text())["producer"]["topk"] == 3


def test_stale_temp_files_of_a_killed_overwrite_are_cleaned(cifar_onnx, image_folder, tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    host = owner_tag().split("-", 1)[1]
    dead = tmp_path / f".preds.jsonl.{proc.pid}-{host}.abcdefgh.tmp"
    dead.write_text('{"path": "x"}\n')
    live = tmp_path / f".preds.jsonl.{os.getppid()}-{host}.abcdefgh.tmp"
    live.write_text("")
    _run(cifar_onnx, image_folder, tmp_path / "preds.jsonl")
    assert not dead.exists() and live.exists()


# ------------------------------------------------------------------------- names as bytes


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_names_that_are_not_utf8_are_written_losslessly_and_resumed(cifar_onnx, tmp_path, suffix):
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(1)
    raw_names = [b"a.png", b"caf\xe9.png", b"\xff\xfe.png", "ü.png".encode(), b"z.png"]
    for raw in raw_names:
        img = Image.fromarray(rng.integers(0, 255, (34, 34, 3), dtype=np.uint8))
        img.save(os.fsdecode(os.fsencode(folder) + b"/" + raw))
    whole = tmp_path / f"whole{suffix}"
    _run(cifar_onnx, folder, whole, batch_size=2)
    part = tmp_path / f"part{suffix}"
    with pytest.raises(_Crash):
        _run(cifar_onnx, folder, part, batch_size=2, progress=_crash_after(2))
    resumed = _run(cifar_onnx, folder, part, batch_size=2, resume=True)
    assert (resumed.already_done, resumed.processed) == (2, 3)
    assert part.read_bytes() == whole.read_bytes()
    data = whole.read_bytes()
    if suffix == ".jsonl":
        records = _strict_lines(whole)
        exact = [
            bytes.fromhex(r["path_hex"]) if "path_hex" in r else r["path"].encode() for r in records
        ]
        assert sorted(os.path.basename(e) for e in exact) == sorted(raw_names)
        assert sum("path_hex" in r for r in records) == 2  # only the names that are not UTF-8
        assert any(r["path"].endswith("caf\\xe9.png") for r in records)
    else:
        assert b"/caf\xe9.png," in data and "/ü.png,".encode() in data  # the names' own bytes


# ------------------------------------------------------------------ wrong results, failures


def test_nan_logits_are_recorded_as_errors_not_written_as_nan(cifar_onnx, image_folder, tmp_path):
    out = tmp_path / "preds.jsonl"
    with load_runner(cifar_onnx, threads=1) as runner:
        real = runner.run_many

        def poisoned(arrays, batch=None):
            result = real(arrays, batch)
            logits = result["logits"].copy()
            logits[::2, 3] = np.nan  # every other image: NaN
            logits[1::4, 0] = np.inf  # and some: inf
            return {**result, "logits": logits}

        runner.run_many = poisoned
        result = _run(runner, image_folder, out)
    records = _strict_lines(out)  # strict JSON: no bare NaN anywhere
    bad = [r for r in records if "non-finite" in r.get("error", "") or "NaN" in r.get("error", "")]
    assert len(records) == 14 and result.model_errors == len(bad) > 0
    assert not result.ok and result.as_dict()["ok"] is False
    assert all("class" not in r for r in bad)
    good = [r for r in records if "class" in r]
    assert good and all(np.isfinite([t["prob"] for t in r["topk"]]).all() for r in good)


def test_clean_run_is_ok(cifar_onnx, image_folder, tmp_path):
    result = _run(cifar_onnx, image_folder, tmp_path / "p.jsonl")
    assert result.ok and result.model_errors == 0 and result.failed == 2


def _failing_at_run_time(cifar_onnx, path: Path) -> Path:
    """The cifar graph plus a Reshape that only fails once data flows (10·N is not a multiple
    of 7 for the batch sizes used), so the file loads cleanly in ONNX Runtime."""
    import onnx
    from onnx import helper, numpy_helper

    proto = onnx.load(cifar_onnx)
    out = proto.graph.output[0]
    inner = out.name + "_inner"
    for node in proto.graph.node:
        node.output[:] = [inner if o == out.name else o for o in node.output]
    proto.graph.initializer.append(
        numpy_helper.from_array(np.array([-1, 7], np.int64), "bad_shape")
    )
    proto.graph.node.append(helper.make_node("Reshape", [inner, "bad_shape"], [out.name]))
    del out.type.tensor_type.shape.dim[:]
    onnx.save(proto, path)
    return path


def test_a_model_that_fails_at_run_time_is_a_clear_error_and_leaves_no_file(
    cifar_onnx, image_folder, tmp_path
):
    broken = _failing_at_run_time(cifar_onnx, tmp_path / "broken.onnx")
    with load_runner(broken, threads=1):  # it does load
        pass
    out = tmp_path / "preds.jsonl"
    with pytest.raises(InferenceError, match="loaded but failed while running") as info:
        _run(broken, image_folder, out)
    assert info.value.hint
    assert not out.exists() and not producer_path(out).exists() and _leftovers(tmp_path) == []

    old = tmp_path / "old.csv"  # --overwrite: the old output survives
    _run(cifar_onnx, image_folder, old)
    before = old.read_bytes()
    with pytest.raises(InferenceError):
        _run(broken, image_folder, old, overwrite=True)
    assert old.read_bytes() == before and _leftovers(tmp_path) == []


def _full_disk_after(monkeypatch, writes: int) -> None:
    """Make the output's file object fail with ENOSPC after ``writes`` successful writes."""
    original = OutputWriter._open

    class Full:
        def __init__(self, fh):
            self.fh, self.left = fh, writes

        def write(self, text):
            if self.left <= 0:
                self.fh.write(text[: len(text) // 2])  # a torn record, as a real full disk
                raise OSError(errno.ENOSPC, "No space left on device")
            self.left -= 1
            return self.fh.write(text)

        def __getattr__(self, name):
            return getattr(self.fh, name)

    monkeypatch.setattr(OutputWriter, "_open", lambda self: Full(original(self)))


def test_disk_full_is_a_clear_error_and_the_run_can_be_resumed(
    cifar_onnx, image_folder, tmp_path, monkeypatch
):
    whole = tmp_path / "whole.jsonl"
    _run(cifar_onnx, image_folder, whole)
    out = tmp_path / "preds.jsonl"
    with monkeypatch.context() as m:
        _full_disk_after(m, 2)
        with pytest.raises(DiskFullError, match="No space left") as info:
            _run(cifar_onnx, image_folder, out)
    assert "resume=True" in str(info.value)
    _run(cifar_onnx, image_folder, out, resume=True)
    assert out.read_bytes() == whole.read_bytes()


def test_disk_full_during_overwrite_keeps_the_old_file(
    cifar_onnx, image_folder, tmp_path, monkeypatch
):
    out = tmp_path / "preds.jsonl"
    _run(cifar_onnx, image_folder, out)
    before = out.read_bytes()
    _full_disk_after(monkeypatch, 1)
    with pytest.raises(DiskFullError, match="left as it was"):
        _run(cifar_onnx, image_folder, out, overwrite=True)
    assert out.read_bytes() == before and _leftovers(tmp_path) == []
