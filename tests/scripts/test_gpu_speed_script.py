"""benchmarks/gpu_speed.py, the prepared GPU run of issue 13, run end to end on the CPU so that
its first GPU run fails on nothing but the GPU. The numbers here are CPU numbers and are not
checked; what is checked is what the script does with them."""

from __future__ import annotations

import csv
import importlib.util
import json

import pytest

from deploy_ran.bench import BenchResult, BenchRow, LatencyStats
from tests.paths import ROOT


@pytest.fixture(scope="module")
def gpu_speed():
    spec = importlib.util.spec_from_file_location("gpu_speed", ROOT / "benchmarks" / "gpu_speed.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _row(batch, median, layout_source="default", precision="fp16", status="ran"):
    lat = LatencyStats(median, median, median, median, median, median, median, 0.0)
    return BenchRow(
        label=f"torch {precision} {layout_source}", backend="torch", precision=precision,
        device="cuda:0", artifact=None, batch_size=batch, status=status,
        reason=None if status == "ran" else "CUDA out of memory",
        latency=lat if status == "ran" else None, layout="channels_last", mode="eager",
        runner={"layout_source": layout_source},
    )  # fmt: skip


def _main(rows):
    return BenchResult(
        model="ran92", image_size=224, device="cuda:0", batch_sizes=[1, 32, 128],
        copies_included=False, cuda_graphs=False, warmup_s=1.0, duration_s=None, iterations=5,
        threads=2, environment={}, started_at="now", rows=rows,
    )  # fmt: skip


def test_bar_compares_the_default_layout_fp16_row_within_ten_percent(gpu_speed):
    main = _main(
        [
            _row(1, 3.0, precision="fp32"),  # not FP16: never the bar's row
            _row(1, 9.0, layout_source="explicit"),  # a forced layout: not what bench defaults to
            _row(1, 10.5),
            _row(32, 10.0),
            _row(128, 0.0, status="failed"),
        ]
    )
    independent = [
        {"batch_size": 1, "median_ms": 10.0},
        {"batch_size": 32, "median_ms": 8.0},
        {"batch_size": 128, "median_ms": 20.0},
        {"batch_size": 256, "median_ms": 40.0},
    ]
    b1, b32, b128, b256 = gpu_speed.bar_verdicts(main, independent)
    assert b1["passed"] is True and b1["bench_over_independent"] == pytest.approx(1.05)
    assert b1["bench_median_ms"] == 10.5 and b1["bench_row"] == "torch fp16 default"
    assert b32["passed"] is False and b32["bench_over_independent"] == pytest.approx(1.25)
    assert b128["passed"] is None and "failed" in b128["reason"]
    assert b256["passed"] is None and b256["reason"] == "no bench row"
    assert gpu_speed.bar_verdicts(None, independent[:1])[0]["passed"] is None


def test_the_prepared_gpu_run_runs_end_to_end_on_a_cpu(gpu_speed, tmp_path):
    code = gpu_speed.main(
        [
            "--model", "ran56_cifar", "--device", "cpu", "--batch-sizes", "1",
            "--iterations", "2", "--warmup", "0", "--groups", "main,independent,ort-options",
            "-o", str(tmp_path),
        ]
    )  # fmt: skip
    (summary,) = tmp_path.glob("gpu_speed_ran56_cifar_32px_cpu_*.json")
    assert "nogpu" in summary.name  # the environment is in the name
    data = json.loads(summary.read_text())
    main = data["groups"]["main"]["rows"]
    # eager FP32/FP16 in both layouts beside ONNX Runtime FP32/FP16, all measured in one run
    # (default first: channels_last on a CPU; then the other layout)
    assert [(r["backend"], r["precision"], r["layout"]) for r in main] == [
        ("torch", "fp32", "channels_last"),
        ("torch", "fp32", "NCHW"),
        ("torch", "fp16", "channels_last"),
        ("torch", "fp16", "NCHW"),
        ("ort", "fp32", None),
        ("ort", "fp16", None),
    ]
    assert all(r["status"] == "ran" for r in main), [r["reason"] for r in main]
    assert all(r["speedup_vs_torch_fp32"] and r["speedup_vs_best_torch"] for r in main)
    options = [g for g in data["groups"] if g.startswith("ort-options")]
    assert len(options) == 4
    # Each variant's options are recorded per row; off CUDA the CUDA provider's options apply to
    # nothing, and the rows say so (an empty dict), not the options asked for.
    for g in options:
        ort_rows = [r for r in data["groups"][g]["rows"] if r["backend"] == "ort"]
        assert ort_rows and all(r["runner"]["cuda_provider_options"] == {} for r in ort_rows)
    # the bar: bench's default-layout FP16 row against the plain loop, from the two medians
    (independent,) = data["independent"]
    (bar,) = data["bar"]
    fp16_default = next(
        r for r in main if r["precision"] == "fp16" and r["runner"]["layout_source"] == "default"
    )
    assert fp16_default["layout"] == independent["layout"] == "channels_last"
    assert bar["bench_median_ms"] == fp16_default["latency_ms"]["median"]
    assert bar["independent_median_ms"] == independent["median_ms"]
    assert bar["bench_over_independent"] == pytest.approx(
        bar["bench_median_ms"] / bar["independent_median_ms"]
    )
    assert bar["passed"] == (abs(bar["bench_over_independent"] - 1) <= 0.10)
    assert code == (0 if bar["passed"] else 1)
    with summary.with_suffix(".csv").open() as f:
        groups = {row["group"] for row in csv.DictReader(f)}
    assert groups == {"main", *options}
    assert summary.with_suffix(".png").stat().st_size > 0
    assert (tmp_path / f"{summary.stem}_groups" / "main").is_dir()
