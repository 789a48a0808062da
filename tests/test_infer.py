"""infer: predictions per image, bad images recorded, resume after a crash or a kill."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cli import app
from deploy_ran.errors import DeployRanError
from deploy_ran.images import find_images, load_and_preprocess
from deploy_ran.infer import run_inference
from deploy_ran.runners import load_runner

ROOT = Path(__file__).resolve().parents[1]
cli = CliRunner()


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_predictions_labels_and_unreadable_images(cifar_onnx, image_folder, tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(f"class {i}" for i in range(10)) + "\n\n")
    out = tmp_path / "preds.jsonl"
    result = run_inference(
        cifar_onnx, image_folder, out, batch_size=5, topk=3, labels=labels, workers=1, threads=1
    )
    assert (result.total, result.processed, result.failed, result.already_done) == (14, 14, 2, 0)
    assert 0 < result.backend_busy <= 1 and 0 <= result.loader_wait_seconds < result.seconds
    records = _lines(out)
    paths = [str(p) for p in find_images(image_folder)]
    assert [r["path"] for r in records] == paths  # one record per image, in input order
    errors = {Path(r["path"]).name: r["error"] for r in records if "error" in r}
    assert set(errors) == {"im05_broken.png", "im09_empty.jpg"}
    assert all("not a readable image" in e for e in errors.values())

    good = [r for r in records if "error" not in r]
    with load_runner(cifar_onnx, threads=1) as runner:
        x = np.stack([load_and_preprocess(r["path"], runner.preprocessing) for r in good])
        logits = runner.run(x)["logits"]
    for rec, row in zip(good, logits):
        assert rec["class"] == int(row.argmax()) == rec["topk"][0]["class"]
        assert rec["label"] == f"class {rec['class']}"
        probs = [t["prob"] for t in rec["topk"]]
        assert len(probs) == 3 and probs == sorted(probs, reverse=True) and sum(probs) <= 1.0
        e = np.exp(row - row.max())
        assert rec["prob"] == pytest.approx(float(e.max() / e.sum()), abs=2e-6)


def test_csv_output_and_resume_rules(cifar_onnx, image_folder, tmp_path):
    out = tmp_path / "preds.csv"
    run_inference(cifar_onnx, image_folder, out, batch_size=4, topk=2, workers=0, threads=1)
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["path", "error", "class_1", "prob_1", "class_2", "prob_2"]
    assert len(rows) == 14 and sum(1 for r in rows if r["error"]) == 2

    with pytest.raises(DeployRanError, match="already exists"):
        run_inference(cifar_onnx, image_folder, out, topk=2, threads=1)
    with pytest.raises(DeployRanError, match="other settings"):
        run_inference(cifar_onnx, image_folder, out, topk=3, resume=True, threads=1)
    again = run_inference(cifar_onnx, image_folder, out, topk=2, resume=True, threads=1)
    assert (again.already_done, again.processed) == (14, 0)
    redo = run_inference(cifar_onnx, image_folder, out, topk=2, overwrite=True, threads=1)
    assert redo.processed == 14 and len(out.read_text().splitlines()) == 15


class _Crash(Exception):
    pass


def test_resume_after_a_crash_writes_what_one_run_writes(cifar_onnx, image_folder, tmp_path):
    whole = tmp_path / "whole.jsonl"
    run_inference(cifar_onnx, image_folder, whole, batch_size=4, topk=3, workers=1, threads=1)

    part = tmp_path / "part.jsonl"

    def crash_after_two_batches(done: int, total: int) -> None:
        if done >= 8:
            raise _Crash

    with pytest.raises(_Crash):
        run_inference(
            cifar_onnx,
            image_folder,
            part,
            batch_size=4,
            topk=3,
            workers=1,
            threads=1,
            progress=crash_after_two_batches,
        )
    assert len(part.read_text().splitlines()) == 8
    with open(part, "a") as fh:  # a torn write of the batch in flight
        fh.write('{"path": "half a rec')
    resumed = run_inference(
        cifar_onnx, image_folder, part, batch_size=4, topk=3, workers=1, threads=1, resume=True
    )
    assert (resumed.already_done, resumed.processed) == (8, 6)
    assert part.read_bytes() == whole.read_bytes()


def test_resume_after_killing_the_process(cifar_checkpoint, tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(80):
        Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(
            folder / f"{i:03d}.png"
        )
    out = tmp_path / "killed.jsonl"
    cmd = [sys.executable, "cli.py", "infer", "ran56_cifar", "--checkpoint", str(cifar_checkpoint)]
    cmd += ["--images", str(folder), "--batch", "2", "--workers", "0", "--threads", "1"]
    cmd += ["--output", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if out.exists() and out.read_bytes().count(b"\n") >= 6:
                break
            time.sleep(0.005)
        assert proc.poll() is None, "the run ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    written = out.read_bytes().count(b"\n")
    assert 6 <= written < 80

    with load_runner("ran56_cifar", checkpoint=cifar_checkpoint, threads=1) as runner:
        resumed = run_inference(runner, folder, out, batch_size=2, topk=5, workers=0, resume=True)
        assert resumed.already_done + resumed.processed == 80
        whole = tmp_path / "whole.jsonl"
        run_inference(runner, folder, whole, batch_size=2, topk=5, workers=0)
    got, want = _lines(out), _lines(whole)
    assert [r["path"] for r in got] == [r["path"] for r in want]
    for a, b in zip(got, want):
        assert [t["class"] for t in a["topk"]] == [t["class"] for t in b["topk"]]
        assert [t["prob"] for t in a["topk"]] == pytest.approx(
            [t["prob"] for t in b["topk"]], abs=2e-6
        )


def test_bad_requests_fail_before_any_work(cifar_onnx, image_folder, tmp_path):
    missing = cli.invoke(
        app, ["infer", str(cifar_onnx), "--images", str(tmp_path / "nowhere"), "-o", "x.jsonl"]
    )
    assert missing.exit_code == 2 and "does not exist" in missing.output
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\n")
    with pytest.raises(DeployRanError, match="2 labels but the model has 10 classes"):
        run_inference(cifar_onnx, image_folder, tmp_path / "a.jsonl", labels=labels, threads=1)
    with pytest.raises(DeployRanError, match="more than the model's 10 classes"):
        run_inference(cifar_onnx, image_folder, tmp_path / "a.jsonl", topk=11, threads=1)
    with pytest.raises(DeployRanError, match="output format"):
        run_inference(cifar_onnx, image_folder, tmp_path / "a.txt")
    with pytest.raises(DeployRanError, match="does not exist"):
        run_inference(cifar_onnx, image_folder, tmp_path / "no" / "a.jsonl")
    with pytest.raises(DeployRanError, match=r"[Ll]abels file .* does not exist"):
        run_inference(cifar_onnx, image_folder, tmp_path / "a.jsonl", labels=tmp_path / "x")
    assert not (tmp_path / "a.jsonl").exists()


def test_missing_files_in_a_list_are_recorded(cifar_onnx, image_folder, tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text(f"{image_folder / 'im01.png'}\n{tmp_path / 'gone.png'}\n")
    out = tmp_path / "list.jsonl"
    result = run_inference(cifar_onnx, listing, out, topk=1, workers=0, threads=1)
    first, second = _lines(out)
    assert result.failed == 1 and "class" in first
    assert second["path"].endswith("gone.png") and "does not exist" in second["error"]
