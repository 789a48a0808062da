"""Honest speed: PyTorch layout defaults and compile mode, ONNX Runtime CUDA options, both
speedups per bench row, the loader benchmark and infer's loader/backend verdict.

Everything here runs on a CPU; what needs a GPU is checked through the decisions the code makes
(tables, recorded options), never by presenting CPU numbers as GPU ones.
"""

from __future__ import annotations

import json
import threading

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from rich.console import Console
from torch import nn

from deploy_ran.bench import CSV_FIELDS, BenchResult, BenchRow, BenchSettings, LatencyStats
from deploy_ran.bench.loader import decode_full, decode_reduced, loader_benchmark, make_photos
from deploy_ran.bench.report import csv_row
from deploy_ran.bench.run import add_speedups
from deploy_ran.errors import DeployRanError
from deploy_ran.infer.dataset import StackCollate, prefetch
from deploy_ran.infer.result import LOADER_BOUND_WAIT, bound_by
from deploy_ran.runners.base import RunnerError
from deploy_ran.runners.ort_runner import CUDA_PROVIDER_DEFAULTS, cuda_provider_options
from deploy_ran.runners.torch_runner import (
    CHANNELS_LAST_DEFAULTS,
    TORCH_PRECISIONS,
    TorchRunner,
    default_channels_last,
)
from deploy_ran.tables import bench_table


def _tiny() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 5),
    ).eval()


# ----------------------------------------------------------------------------- PyTorch layout


def test_channels_last_defaults_cover_every_precision_and_follow_the_measurements():
    for device in ("cuda", "cpu"):
        for precision in TORCH_PRECISIONS:
            assert (device, precision) in CHANNELS_LAST_DEFAULTS
    # measured on a GPU: NCHW FP16 convolutions are the bottleneck → NHWC
    assert default_channels_last("cuda", "fp16") and default_channels_last("cuda", "autocast")
    # not measured: keep PyTorch's own layout
    assert not default_channels_last("cuda", "fp32")
    # measured on this project's CPU: NHWC faster at every precision
    assert all(default_channels_last("cpu", p) for p in TORCH_PRECISIONS)
    assert not default_channels_last("mps", "fp16")  # unknown devices keep NCHW


def test_layout_is_recorded_and_shown_in_the_label():
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    default = TorchRunner(_tiny(), image_size=8)  # on a CPU: channels_last
    nchw = TorchRunner(_tiny(), image_size=8, channels_last=False)
    d, n = default.describe(), nchw.describe()
    assert (d["layout"], d["layout_source"], d["mode"]) == ("channels_last", "default", "eager")
    assert (n["layout"], n["layout_source"]) == ("NCHW", "explicit")
    assert default.label == "torch fp32 channels_last (cpu)"
    assert nchw.label == "torch fp32 (cpu)"
    np.testing.assert_allclose(nchw.run(x)["logits"], default.run(x)["logits"], atol=1e-5)


# ---------------------------------------------------------------------------- compile mode


def test_compile_mode_times_the_first_run_per_shape_apart():
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    ref = TorchRunner(_tiny(), image_size=8).run(x)["logits"]
    # backend="eager": TorchDynamo traces the model (the compile path) without a C++ toolchain
    r = TorchRunner(_tiny(), image_size=8, mode="compile", compile_backend="eager")
    assert r.compile_seconds == {}
    np.testing.assert_allclose(r.run(x)["logits"], ref, atol=1e-6)
    first = r.compile_seconds
    assert list(first) == ["2x3x8x8"] and first["2x3x8x8"] > 0
    r.run(x)  # a second run of the same shape is not a compile
    assert r.compile_seconds == first
    r.run(x[:1])
    assert set(r.compile_seconds) == {"2x3x8x8", "1x3x8x8"}
    d = r.describe()
    assert (d["mode"], d["compile_mode"], d["compile_backend"]) == ("compile", "default", "eager")
    assert r.label == "torch fp32 channels_last compile (cpu)"  # the CPU default layout


def test_bad_modes_are_refused():
    with pytest.raises(RunnerError, match="Unknown PyTorch mode"):
        TorchRunner(_tiny(), image_size=8, mode="jit")
    with pytest.raises(RunnerError, match="applies to mode='compile'"):
        TorchRunner(_tiny(), image_size=8, compile_mode="max-autotune")
    with pytest.raises(DeployRanError) as err:
        BenchSettings("ran56_cifar", torch_modes=["eager", "jit"])
    assert err.value.param == "torch_modes"
    assert BenchSettings("ran56_cifar", torch_modes=["eager", "compile", "eager"]).torch_modes == (
        "eager",
        "compile",
    )


@pytest.mark.slow
def test_compile_mode_with_inductor_matches_eager():
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    ref = TorchRunner(_tiny(), image_size=8).run(x)["logits"]
    r = TorchRunner(_tiny(), image_size=8, mode="compile")
    np.testing.assert_allclose(r.run(x)["logits"], ref, atol=1e-5)
    assert r.describe()["compile_backend"] == "inductor"


@pytest.mark.slow
def test_bench_torch_modes_add_compile_rows_with_compile_time(cifar_checkpoint):
    from deploy_ran.bench import run_benchmark

    result = run_benchmark(
        BenchSettings(
            "ran56_cifar",
            backends=["torch"],
            torch_modes=["eager", "compile"],
            batch_sizes=[1],
            warmup=0.0,
            iterations=2,
            threads=1,
            checkpoint=cifar_checkpoint,
        )
    )
    eager, compiled = result.rows
    assert (eager.mode, compiled.mode) == ("eager", "compile")
    assert compiled.status == "ran", compiled.reason
    assert compiled.compile_seconds and compiled.compile_seconds > 0
    assert eager.compile_seconds is None
    assert eager.speedup == 1.0 and compiled.speedup_vs_best_torch is not None


def test_torch_layouts_give_one_row_per_distinct_layout():
    from deploy_ran.bench.run import _torch_configs

    def rows(device, layouts, precisions=("fp32", "fp16"), modes=("eager",)):
        settings = BenchSettings(
            "ran56_cifar",
            device=device,
            torch_layouts=layouts,
            torch_precisions=precisions,
            torch_modes=modes,
        )
        return [(c.precision, c.kwargs["channels_last"], c.label) for c in _torch_configs(settings, 32)]

    # default resolves per device × precision; a layout it already is adds no second row.
    assert rows("cuda", ("default", "nchw", "channels_last")) == [
        ("fp32", None, "torch fp32"),
        ("fp32", True, "torch fp32 channels_last"),
        ("fp16", None, "torch fp16 channels_last"),
        ("fp16", False, "torch fp16"),
    ]
    assert rows("cpu", ("nchw", "channels_last"), ("fp32",), ("eager", "compile")) == [
        ("fp32", False, "torch fp32"),
        ("fp32", False, "torch fp32 compile"),
        ("fp32", True, "torch fp32 channels_last"),
        ("fp32", True, "torch fp32 channels_last compile"),
    ]
    assert BenchSettings("ran56_cifar", torch_layouts="channels_last").torch_layouts == (
        "channels_last",
    )
    with pytest.raises(DeployRanError, match="Unknown PyTorch layout") as err:
        BenchSettings("ran56_cifar", torch_layouts=["nhwc"])
    assert err.value.param == "torch_layouts"


def test_bench_cli_takes_layouts_and_refuses_unknown_ones(cli, tmp_path):
    import cli_args
    from deploy_ran.runners.torch_runner import TORCH_LAYOUTS

    assert cli_args.TORCH_LAYOUTS == TORCH_LAYOUTS and cli_args.TORCH_PRECISIONS == TORCH_PRECISIONS
    bad = cli(["bench", "ran56_cifar", "--torch-layouts", "nchw,nhwc"])
    assert bad.exit_code == 2 and "--torch-layouts" in bad.output and "'nhwc'" in bad.output
    out = tmp_path / "b.json"
    ok = cli(
        [
            "bench", "ran56_cifar", "--backends", "torch", "--torch-layouts", "nchw,channels_last",
            "--iterations", "2", "--warmup", "0", "--threads", "1", "--no-plot", "-o", str(out),
        ],
    )  # fmt: skip
    assert ok.exit_code == 0, ok.output
    rows = json.loads(out.read_text())["rows"]
    assert [(r["label"], r["layout"]) for r in rows] == [
        ("torch fp32 (cpu)", "NCHW"),
        ("torch fp32 channels_last (cpu)", "channels_last"),
    ]
    assert [r["runner"]["layout_source"] for r in rows] == ["explicit", "explicit"]


# ------------------------------------------------------------------------------- speedups


def _row(label, backend, precision, batch, median, mode=None) -> BenchRow:
    lat = LatencyStats(median, median, median, median, median, median, median, 0.0)
    return BenchRow(
        label=label,
        backend=backend,
        precision=precision,
        device="cuda:0",
        artifact=None,
        batch_size=batch,
        status="ran",
        iterations=5,
        latency=lat,
        throughput=batch * 1e3 / median,
        timer="cuda events",
        copies_included=False,
        layout="channels_last" if backend == "torch" and precision == "fp16" else None,
        mode=mode,
    )


def _synthetic() -> BenchResult:
    rows = [
        _row("torch fp32 (cuda:0)", "torch", "fp32", 1, 10.0, "eager"),
        _row("torch fp32 compile (cuda:0)", "torch", "fp32", 1, 4.0, "compile"),
        _row("torch fp16 channels_last (cuda:0)", "torch", "fp16", 1, 5.0, "eager"),
        _row("ort fp16 (cuda)", "ort", "fp16", 1, 2.0),
        # batch 8: no eager FP32 row ran, only a faster fp16 one
        _row("torch fp16 channels_last (cuda:0)", "torch", "fp16", 8, 8.0, "eager"),
        _row("ort fp16 (cuda)", "ort", "fp16", 8, 16.0),
        BenchRow("trt -", "trt", "-", "cuda:0", None, 1, "skipped", reason="no engine given"),
    ]
    return BenchResult(
        model="ran92",
        image_size=224,
        device="cuda:0",
        batch_sizes=[1, 8],
        copies_included=False,
        cuda_graphs=False,
        warmup_s=1.0,
        duration_s=None,
        iterations=5,
        threads=2,
        environment={},
        started_at="now",
        rows=rows,
    )


def test_both_speedups_against_their_own_baselines():
    result = _synthetic()
    add_speedups(result.rows)
    by = {(r.label, r.batch_size): r for r in result.rows}
    fp32, compiled = by["torch fp32 (cuda:0)", 1], by["torch fp32 compile (cuda:0)", 1]
    ort1, ort8 = by["ort fp16 (cuda)", 1], by["ort fp16 (cuda)", 8]
    # vs eager FP32: the compiled FP32 row is not the baseline even though it is FP32
    assert fp32.speedup == 1.0 and compiled.speedup == pytest.approx(2.5)
    assert ort1.speedup == pytest.approx(5.0)
    # vs the fastest PyTorch row of the batch (the compiled one at batch 1)
    assert ort1.speedup_vs_best_torch == pytest.approx(2.0)
    assert ort1.best_torch == "torch fp32 compile (cuda:0)"
    assert compiled.speedup_vs_best_torch == 1.0
    assert fp32.speedup_vs_best_torch == pytest.approx(0.4)
    # batch 8 has no eager FP32 row: that speedup stays empty, the other one does not
    assert ort8.speedup is None and ort8.speedup_vs_best_torch == pytest.approx(0.5)
    skipped = result.rows[-1]
    assert skipped.speedup is None and skipped.speedup_vs_best_torch is None
    assert result.baselines() == {
        "1": {"torch_fp32": "torch fp32 (cuda:0)", "best_torch": "torch fp32 compile (cuda:0)"},
        "8": {"torch_fp32": None, "best_torch": "torch fp16 channels_last (cuda:0)"},
    }


def test_speedups_timing_and_layout_reach_json_csv_and_the_table():
    result = _synthetic()
    add_speedups(result.rows)
    d = json.loads(json.dumps(result.as_dict()))
    row = d["rows"][3]
    assert row["speedup_vs_torch_fp32"] == pytest.approx(5.0)
    assert row["speedup_vs_best_torch"] == pytest.approx(2.0)
    assert row["timing"] == "CUDA events, no copies" and row["timer"] == "cuda events"
    assert "speedup_vs_best_torch" in d["method"]
    for field in ("speedup_vs_torch_fp32", "speedup_vs_best_torch", "layout", "timer", "mode"):
        assert field in CSV_FIELDS
    line = csv_row(result.rows[2])
    assert line["layout"] == "channels_last" and line["speedup_vs_best_torch"] == "0.8"
    console = Console(width=300, record=True)
    console.print(bench_table(result))
    text = " ".join(console.export_text().split())  # the caption wraps at the table's width
    assert "× best" in text and "CUDA events, no copies" in text
    assert "vs eager PyTorch FP32 (torch fp32 (cuda:0))" in text
    assert "batch 1: torch fp32 compile (cuda:0)" in text


@pytest.mark.parametrize("width", [300, 140, 100, 80])
def test_bench_table_never_cuts_a_number(width):
    """A log (140 columns) or a narrow terminal: labels fold, latency columns are dropped
    (median last), but no number is cut short or pushed off the edge."""
    result = _synthetic()
    result.rows[0].label = "torch fp32 channels_last compile (cuda:0)"  # a long label
    result.rows[0].latency = LatencyStats(1234.5678, 1300, 1350.0312, 1352, 1353, 1400.25, 1401, 8.5)
    add_speedups(result.rows)
    console = Console(width=width, record=True)
    console.print(bench_table(result))
    text = console.export_text()
    table = text.split("× fp32 =")[0]  # the caption may wrap where it likes
    assert "…" not in table
    assert all(len(line) <= width for line in text.splitlines())
    for r in result.rows:
        if r.latency is not None:
            assert f"{r.throughput:.1f}" in table
            assert f"{r.speedup_vs_best_torch:.2f}×" in table
    assert "1350" in table  # the median, to 4 significant digits
    assert ("1234.57" in table or "1235" in table) == (width >= 140)  # min: wide consoles only


# ------------------------------------------------------------------- ONNX Runtime CUDA options


def test_cuda_provider_options_per_precision_and_overrides():
    for precision in ("fp32", "fp16", "int8"):
        opts = cuda_provider_options(precision)
        assert set(opts) == {
            "prefer_nhwc",
            "cudnn_conv_algo_search",
            "cudnn_conv_use_max_workspace",
            "use_tf32",
        }
        assert opts == CUDA_PROVIDER_DEFAULTS[precision]
        assert opts["use_tf32"] == "0"  # ORT's own default (on) would make FP32 rows TF32
    assert cuda_provider_options("fp16")["prefer_nhwc"] == "1"
    assert cuda_provider_options("fp32")["prefer_nhwc"] == "0"
    given = cuda_provider_options("fp16", {"prefer_nhwc": 0, "cudnn_conv_algo_search": "HEURISTIC"})
    assert given["prefer_nhwc"] == "0" and given["cudnn_conv_algo_search"] == "HEURISTIC"
    with pytest.raises(RunnerError, match="cudnn_conv_algo_search"):
        cuda_provider_options("fp16", {"cudnn_conv_algo_search": "FASTEST"})
    with pytest.raises(RunnerError, match="'0' or '1'"):
        cuda_provider_options("fp32", {"prefer_nhwc": "yes"})


def _fp16_onnx(path):
    """input + bias (an FP16 initializer: the graph says FP16) → logits."""
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT16, ["batch", 3, 4, 4])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT16, ["batch", 3, 4, 4])
    bias = helper.make_tensor(
        "bias", TensorProto.FLOAT16, [1], np.ones(1, np.float16).tobytes(), raw=True
    )
    graph = helper.make_graph(
        [helper.make_node("Add", ["input", "bias"], ["logits"])], "g", [x], [y], [bias]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, path)
    return path


def test_ort_runner_passes_and_records_the_cuda_options(tmp_path, monkeypatch):
    """A CUDA session is faked around a CPU one: what matters is what the runner asks ONNX
    Runtime for and what it records."""
    import onnxruntime as ort

    from deploy_ran.runners import ort_runner

    path = _fp16_onnx(tmp_path / "add.onnx")
    cpu = ort_runner.OrtRunner(path)
    assert cpu.precision == "fp16"
    assert cpu.describe()["cuda_provider_options"] == {} and cpu.describe()["layout"] is None

    asked = {}
    real_session = ort.InferenceSession

    class FakeCudaSession(real_session):  # type: ignore[misc, valid-type]
        def __init__(self, source, opts, providers):
            asked["providers"] = providers
            super().__init__(source, opts, providers=["CPUExecutionProvider"])

        def get_providers(self):
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]

    class FakeStream:
        cuda_stream = 1234

    monkeypatch.setattr(ort, "InferenceSession", FakeCudaSession)
    monkeypatch.setattr(
        ort_runner,
        "resolve_providers",
        lambda providers, device: ["CUDAExecutionProvider", "CPUExecutionProvider"],
    )
    monkeypatch.setattr(ort_runner, "_new_cuda_stream", lambda device_id: FakeStream())
    runner = ort_runner.OrtRunner(
        path,
        device="cuda",
        io_binding=False,
        provider_options={"CUDAExecutionProvider": {"cudnn_conv_algo_search": "HEURISTIC"}},
    )
    cuda_opts = dict(asked["providers"])["CUDAExecutionProvider"]
    assert cuda_opts["prefer_nhwc"] == "1"  # the FP16 default
    assert cuda_opts["cudnn_conv_algo_search"] == "HEURISTIC"  # the caller's choice wins
    assert cuda_opts["user_compute_stream"] == "1234"
    recorded = runner.describe()
    assert recorded["cuda_provider_options"] == {
        "prefer_nhwc": "1",
        "cudnn_conv_algo_search": "HEURISTIC",
        "cudnn_conv_use_max_workspace": "1",
        "use_tf32": "0",
    }
    assert recorded["layout"] == "NHWC (prefer_nhwc)"


# ----------------------------------------------------------------------- loader and verdict


def test_bound_verdict():
    assert bound_by(10.0, 0.0, 0.0, 1) == "unknown"  # one batch: nothing steady to judge
    assert bound_by(10.0, 0.5, 0.5, 10) == "backend"  # only the start-up wait
    steady = 10.0 - 0.5
    just_below = 0.5 + steady * LOADER_BOUND_WAIT * 0.9
    just_above = 0.5 + steady * LOADER_BOUND_WAIT * 1.1
    assert bound_by(10.0, just_below, 0.5, 10) == "backend"
    assert bound_by(10.0, just_above, 0.5, 10) == "loader"
    assert bound_by(10.0, 6.0, 0.5, 10) == "loader"


def test_prefetch_keeps_order_runs_ahead_and_passes_errors_on():
    fetched = []
    ahead = threading.Event()

    def source():
        for i in range(4):
            fetched.append(i)
            if i == 1:
                ahead.set()
            yield i

    it = prefetch(source())
    assert next(it) == 0
    assert ahead.wait(5)  # batch 1 was fetched while 0 was being used
    assert list(it) == [1, 2, 3]

    def broken():
        yield 0
        raise ValueError("decoder bug")

    it = prefetch(broken())
    assert next(it) == 0
    with pytest.raises(ValueError, match="decoder bug"):
        next(it)


def test_stack_collate_casts_in_the_worker_and_keeps_errors():
    a = np.ones((3, 4, 4), np.float32)
    batch = StackCollate("float16")([(0, a, None), (1, None, "broken"), (2, a * 2, None)])
    assert batch.stacked.dtype == torch.float16 and tuple(batch.stacked.shape) == (2, 3, 4, 4)
    assert [i for i, _, _ in batch.items] == [0, 1, 2] and batch.items[1][2] == "broken"
    assert StackCollate("float32")([(0, None, "x")]).stacked is None


def test_loader_benchmark_modes_and_reduced_decoding(tmp_path):
    pre = {"resize_size": 64, "crop_size": 56, "mean": [0.5] * 3, "std": [0.25] * 3}
    (photo,) = make_photos(tmp_path, count=1, size=(1024, 768))
    full, reduced = decode_full(photo, pre), decode_reduced(photo, pre)
    assert full.shape == reduced.shape == (3, 56, 56)
    # same picture, decoded at 1/8 scale before the same resize: close, not identical
    assert np.abs(full - reduced).mean() < 0.2
    result = loader_benchmark(pre, photos=[photo], repeats=1)
    assert set(result.images_per_s) == {"full", "reduced", "infer"}
    assert result.decoded_size["full"] == (1024, 768)
    assert result.decoded_size["reduced"] == (128, 96)  # 1/8: still ≥ the 64 px resize
    assert result.infer_decoding == "reduced"
    # infer keeps a margin above the target (1/4 here), and the report says what it really decodes
    from deploy_ran.images import load_rgb

    assert result.decoded_size["infer"] == load_rgb(photo, min_size=64).size == (256, 192)
    assert result.reduced_speedup == pytest.approx(
        result.images_per_s["reduced"] / result.images_per_s["full"]
    )
    assert result.workers_to_feed(10 * result.images_per_s["infer"]) == pytest.approx(10)
    with pytest.raises(DeployRanError, match="Unknown loader mode"):
        loader_benchmark(pre, photos=[photo], modes=["fast"])


def test_bench_loader_reports_workers_needed_beside_the_fastest_rows(monkeypatch):
    from deploy_ran.bench import loader as loader_mod
    from deploy_ran.bench.run import _measure_loader

    real = loader_mod.loader_benchmark
    monkeypatch.setattr(  # small photos: the arithmetic is what is checked here
        loader_mod,
        "loader_benchmark",
        lambda pre, **kw: real(pre, count=1, photo_size=(640, 480), repeats=1),
    )
    result = _synthetic()
    report = _measure_loader("ran56_cifar", 32, result.rows, lambda _m: None)
    fastest = report["feeding"]["1"]
    assert fastest["fastest_row"] == "ort fp16 (cuda)" and fastest["images_per_s"] == 500.0
    per_worker = report["images_per_s"]["reduced"]
    assert fastest["workers_needed_reduced"] == pytest.approx(500.0 / per_worker)
    result.loader = report
    console = Console(width=300, record=True)
    console.print(bench_table(result))
    text = " ".join(console.export_text().split())
    assert "loader, one worker, 640×480 JPEGs: full decoding" in text
    need = fastest["workers_needed_infer"]
    assert f"batch 1: the fastest row (ort fp16 (cuda), 500.0 img/s) needs {need:.1f} infer" in text
