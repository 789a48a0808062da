"""bench: rows per backend × precision × batch size, saved as JSON/CSV/PNG named by environment."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from deploy_ran.bench import (
    CSV_FIELDS,
    STAT_FIELDS,
    BenchSettings,
    LatencyStats,
    environment_tag,
    run_benchmark,
    runner_overhead,
    time_in_turns,
)
from deploy_ran.environment import collect_environment
from deploy_ran.errors import DeployRanError


def test_bench_writes_documented_json_csv_png(cifar_checkpoint, cifar_onnx, tmp_path):
    out = tmp_path / "results"
    result = run_benchmark(
        BenchSettings(
            "ran56_cifar",
            backends=["torch", "ort", "trt"],
            artifacts=[cifar_onnx],
            batch_sizes=[2, 1],
            torch_precisions=["fp32", "fp8"],  # fp8 is not a PyTorch runner precision: a failed row
            warmup=0.0,
            iterations=3,
            threads=1,
            checkpoint=cifar_checkpoint,
            output=out,
        )
    )
    assert result.batch_sizes == [1, 2]
    by = {(r.backend, r.precision, r.batch_size): r for r in result.rows}
    for batch in (1, 2):
        torch_row, ort_row = by["torch", "fp32", batch], by["ort", "fp32", batch]
        assert torch_row.status == ort_row.status == "ran"
        assert torch_row.iterations == ort_row.iterations == 3
        assert torch_row.speedup == 1.0
        assert ort_row.speedup == pytest.approx(torch_row.latency.median / ort_row.latency.median)
        lat = ort_row.latency
        assert lat.min <= lat.median <= lat.p90 <= lat.p95 <= lat.p99 <= lat.max
        assert ort_row.throughput == pytest.approx(batch * 1e3 / lat.mean)
        assert ort_row.timer == "host perf_counter" and ort_row.copies_included is True
        assert by["torch", "fp8", batch].status == "failed"
        assert "Unknown PyTorch precision" in by["torch", "fp8", batch].reason
        assert by["trt", "-", batch].status == "skipped"
        assert "no engine given" in by["trt", "-", batch].reason

    env_tag = environment_tag(collect_environment())
    stem = f"bench_ran56_cifar_32px_cpu_{env_tag}"
    assert set(result.files) == {"json", "csv", "png"}
    for kind, path in result.files.items():
        assert path == str(out / f"{stem}.{kind}")
    data = json.loads((out / f"{stem}.json").read_text())
    assert data["model"] == "ran56_cifar" and data["environment_tag"] == env_tag
    assert data["environment"]["cpu"] and data["environment"]["onnxruntime"]
    assert data["method"]["copies_included"] is True and data["method"]["iterations"] == 3
    ran = [r for r in data["rows"] if r["status"] == "ran"]
    assert len(ran) == 4
    assert set(ran[0]["latency_ms"]) == set(STAT_FIELDS)
    assert {"throughput_ips", "speedup_vs_torch_fp32", "runner", "batch_size"} <= set(ran[0])
    with open(out / f"{stem}.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == list(CSV_FIELDS)
    assert len(rows) == len(result.rows) == 8
    assert {r["status"] for r in rows} == {"ran", "failed", "skipped"}
    assert (out / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_cli_prints_table_environment_and_files(cli, cifar_onnx, tmp_path):
    target = tmp_path / "mine.json"
    result = cli(
        [
            "bench",
            "ran56_cifar",
            "--backends",
            "ort",
            "--artifacts",
            str(cifar_onnx),
            "--batch-sizes",
            "1",
            "--iterations",
            "2",
            "--warmup",
            "0",
            "--threads",
            "1",
            "--no-plot",
            "-o",
            str(target),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "ort fp32 (cpu)" in result.output and "Environment" in result.output
    assert "onnxruntime" in result.output
    assert target.exists() and (tmp_path / "mine.csv").exists()
    assert not (tmp_path / "mine.png").exists()


def test_bench_rejects_bad_requests(cli, cifar_onnx, tmp_path):
    with pytest.raises(DeployRanError, match="artifact of ran56_cifar, not ran92_cifar") as info:
        run_benchmark(BenchSettings("ran92_cifar", artifacts=[cifar_onnx], iterations=1))
    assert info.value.param == "artifacts"
    with pytest.raises(DeployRanError, match="takes 32 px") as info:
        run_benchmark(
            BenchSettings("ran56_cifar", artifacts=[cifar_onnx], image_size=48, iterations=1)
        )
    assert info.value.param == "image_size" and "image_size=32" in info.value.hint
    with pytest.raises(DeployRanError, match="not in backends"):
        run_benchmark(
            BenchSettings("ran56_cifar", backends=["torch"], artifacts=[cifar_onnx], iterations=1)
        )
    with pytest.raises(DeployRanError, match="Unknown backend"):
        run_benchmark(BenchSettings("ran56_cifar", backends=["tensorflow"], iterations=1))
    with pytest.raises(DeployRanError, match="CUDA graphs need a GPU"):
        run_benchmark(BenchSettings("ran56_cifar", cuda_graphs=True, iterations=1))
    bad = cli(["bench", "ran56_cifar", "--batch-sizes", "1,x"])
    assert bad.exit_code == 2 and "comma-separated integers" in bad.output
    bad = cli(["bench", "ran56_cifar", "--batch-sizes", "0"])
    assert bad.exit_code == 2 and "positive" in bad.output


def test_settings_are_checked_when_made_and_errors_name_the_parameter():
    bad = [
        ({"batch_sizes": [0, 1]}, "batch_sizes"),
        ({"batch_sizes": ["x"]}, "batch_sizes"),
        ({"batch_sizes": []}, "batch_sizes"),
        ({"iterations": 0}, "iterations"),
        ({"duration": 0}, "duration"),
        ({"warmup": -1.0}, "warmup"),
        ({"cuda_graphs": True}, "cuda_graphs"),
        ({"backends": ["tensorflow"]}, "backends"),
        ({"backends": [" "]}, "backends"),
    ]
    for kwargs, param in bad:
        with pytest.raises(DeployRanError) as info:
            BenchSettings("ran56_cifar", **kwargs)
        assert info.value.param == param, kwargs
        assert "--" not in str(info.value), str(info.value)  # library errors name parameters
    settings = BenchSettings(
        "ran56_cifar",
        backends=[" ORT ", "torch"],
        artifacts=["a.onnx"],
        batch_sizes=[8, 1, 8],
        checkpoint="w.pt",
        output="out",
    )
    assert settings.backends == ("ort", "torch")
    assert settings.artifacts == (Path("a.onnx"),) and settings.batch_sizes == (1, 8)
    assert settings.checkpoint == Path("w.pt") and settings.output == Path("out")
    assert settings.copies_included and not settings.on_gpu
    assert BenchSettings("m", device="cuda", copies=False).copies_included is False


def test_turns_alternate_and_a_failing_timer_leaves_them():
    calls: list[str] = []

    def steady() -> float:
        calls.append("a")
        return 1.0

    def breaks_on_second_run() -> float:
        calls.append("b")
        if calls.count("b") == 2:
            raise RuntimeError("device lost")
        return 2.0

    steady_samples, broken = time_in_turns([steady, breaks_on_second_run], iterations=4)
    assert calls == ["a", "b", "a", "b", "a", "a"]
    assert steady_samples == [1.0] * 4
    assert isinstance(broken, RuntimeError)


def test_statistics_and_environment_tag():
    stats = LatencyStats.from_samples([1.0, 2.0, 3.0, 4.0, 100.0])
    assert (stats.min, stats.median, stats.max, stats.mean) == (1.0, 3.0, 100.0, 22.0)
    assert stats.p90 > stats.median and stats.p99 > stats.p95
    tag = environment_tag(
        {
            "cpu": "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz",
            "gpus": ["NVIDIA H100 80GB HBM3"],
            "torch": "2.13.0+cu128",
            "onnxruntime": "1.31.1",
            "tensorrt": "10.16.1.11",
        }
    )
    assert tag == (
        "intel-xeon-platinum-8375c-2.90ghz_nvidia-h100-80gb-hbm3_torch2.13.0-cu128_"
        "ort1.31.1_trt10.16.1.11"
    )
    assert environment_tag({"cpu": "x", "tensorrt": "not importable"}) == (
        "x_nogpu_torchunknown_ortunknown"
    )


def test_runner_overhead_reports_both_medians(cifar_onnx):
    got = runner_overhead(cifar_onnx, iterations=4, threads=1)
    assert got["bare_session_median_ms"] > 0 and got["runner_median_ms"] > 0
    assert got["overhead"] == pytest.approx(
        got["runner_median_ms"] / got["bare_session_median_ms"] - 1
    )


def test_interleaved_rows_take_turns(cifar_checkpoint, cifar_onnx):
    result = run_benchmark(
        BenchSettings(
            "ran56_cifar",
            artifacts=[cifar_onnx],
            checkpoint=cifar_checkpoint,
            iterations=3,
            warmup=0.0,
            threads=1,
            interleave=True,
        )
    )
    assert result.as_dict()["method"]["interleaved"] is True
    assert [(r.label, r.status, r.iterations) for r in result.rows] == [
        ("torch fp32 channels_last (cpu)", "ran", 3),
        ("ort fp32 (cpu)", "ran", 3),
    ]
    assert result.rows[0].speedup == 1.0 and result.rows[1].speedup > 0


def test_a_failing_backend_is_a_row_not_a_crash(tmp_path):
    result = run_benchmark(
        BenchSettings("ran56_cifar", checkpoint=tmp_path / "missing.pt", iterations=1)
    )
    assert [(r.backend, r.status) for r in result.rows] == [("torch", "failed"), ("ort", "failed")]
    assert all("missing.pt does not exist" in r.reason for r in result.rows)
    assert result.rows[1].reason.startswith("export: ")
