"""bench --data: top-1 and Δ vs eager FP32 on each row, file sizes, and the machine it ran on."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from deploy_ran.bench import BenchSettings, run_benchmark
from deploy_ran.bench import machine as machine_mod
from deploy_ran.bench.machine import MachineReport, idle_cores, plan_threads
from deploy_ran.errors import DeployRanError
from deploy_ran.evaluate import read_labelled
from deploy_ran.images import load_and_preprocess


@pytest.fixture(scope="module")
def val_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("val")
    rng = np.random.default_rng(3)
    for i in range(12):
        folder = root / str(i % 4)
        folder.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (36, 36, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return root


def _ort_top1(path, root, prep) -> float:
    data = read_labelled(root)
    x = np.stack([load_and_preprocess(p, prep) for p in data.paths])
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    logits = np.concatenate([sess.run(None, {name: s[None]})[0] for s in x])
    return float(np.mean(logits.argmax(1) == data.labels))


def test_bench_rows_carry_top1_delta_and_file_size(
    cifar_checkpoint, cifar_onnx, val_folder, tmp_path
):
    from deploy_ran.runners.ort_runner import OrtRunner

    result = run_benchmark(
        BenchSettings(
            "ran56_cifar",
            backends=["torch", "ort"],
            artifacts=[cifar_onnx],
            batch_sizes=[1, 2],
            warmup=0.0,
            iterations=2,
            threads=1,
            checkpoint=cifar_checkpoint,
            output=tmp_path / "b.json",
            data=str(val_folder),
        )  # fmt: skip
    )
    by = {(r.backend, r.batch_size): r for r in result.rows}
    with OrtRunner(cifar_onnx) as r:
        prep = r.preprocessing
    expected = _ort_top1(cifar_onnx, val_folder, prep)
    for batch in (1, 2):
        torch_row, ort_row = by["torch", batch], by["ort", batch]
        assert ort_row.top1 == pytest.approx(expected, abs=1e-12)
        assert torch_row.top1 is not None and torch_row.top1_delta == 0.0
        assert ort_row.top1_delta == pytest.approx(ort_row.top1 - torch_row.top1)
        assert 0.0 <= ort_row.top1_p <= 1.0
        assert ort_row.file_bytes == cifar_onnx.stat().st_size and torch_row.file_bytes is None
    saved = json.loads((tmp_path / "b.json").read_text())
    assert saved["accuracy"]["images"] == 12 and saved["accuracy"]["reference"].startswith("torch")
    assert (
        saved["machine"]["threads"] == 1 and saved["machine"]["threads_from"] == "threads setting"
    )
    assert set(saved["machine"]["threads_used"].values()) == {1}
    assert all("top1" in r for r in saved["rows"])
    assert (tmp_path / "b.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "top1" in (tmp_path / "b.csv").read_text().splitlines()[0]


def test_bench_cli_data_column(cli, cifar_onnx, val_folder, tmp_path):
    args = ["bench", "ran56_cifar", "--backends", "ort", "--artifacts", str(cifar_onnx),
            "--iterations", "2", "--warmup", "0", "--threads", "1", "--no-plot",
            "-o", str(tmp_path / "c.json"), "--data", str(val_folder)]  # fmt: skip
    result = cli(args)
    assert result.exit_code == 0, result.output
    assert "top-1 %" in result.output and "accuracy: top-1 on 12 labelled" in result.output
    assert "no eager FP32 row" in result.output  # ORT only: nothing to take Δ against
    bad = cli([*args[:-2], "--labels", str(tmp_path / "l.txt")])
    assert bad.exit_code == 2 and "--data" in bad.output


def test_default_threads_are_the_idle_cores(monkeypatch):
    monkeypatch.setattr(machine_mod, "usable_cores", lambda: 4)
    monkeypatch.setattr(machine_mod, "load_average", lambda: (2.2, 1.0, 0.5))
    plan = plan_threads(None, on_gpu=False)
    assert plan.threads == 2 and plan.threads_from == "idle cores at start"
    assert plan_threads(3, on_gpu=False).threads == 3
    assert idle_cores(2, (5.0, 5.0, 5.0)) == 1 and idle_cores(8, None) == 8


def test_busy_and_oversubscribed_machines_are_warned_about(monkeypatch):
    monkeypatch.setattr(machine_mod, "load_average", lambda: (3.5, 3.0, 2.0))
    busy = MachineReport(
        cores=2, load_before=(1.6, 1.0, 1.0), threads=2, threads_from="threads setting"
    )
    busy.finish({"torch fp32 (cpu)": 2, "ort fp32 (cpu)": 4}, on_gpu=False)
    text = " ".join(busy.warnings)
    assert "BUSY MACHINE" in text and "load was 1.60 on 2" in text
    assert "OVERSUBSCRIBED" in text and "ort fp32 (cpu): 4" in text
    monkeypatch.setattr(machine_mod, "load_average", lambda: (1.0, 0.5, 0.2))
    quiet = MachineReport(cores=2, load_before=(0.1, 0.1, 0.1), threads=1, threads_from="x")
    quiet.finish({"ort fp32 (cpu)": 1}, on_gpu=False)
    assert quiet.warnings == []


def test_labels_without_data_are_refused():
    with pytest.raises(DeployRanError, match="labels and data_images apply") as info:
        BenchSettings("ran56_cifar", labels="l.txt")
    assert info.value.param == "data"
