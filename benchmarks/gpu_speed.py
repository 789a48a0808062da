"""The GPU results file of issue 13 in one run: PyTorch at its best beside ONNX Runtime CUDA, and
the check that ``bench``'s PyTorch FP16 row matches an independent measurement.

Groups (each a ``bench`` run of its own, so that the speedups of a group compare rows measured
together; every group without host↔device copies, CUDA events on the runner's stream):

1. ``main``: eager PyTorch FP32 and FP16 in both layouts (``default``, ``nchw``,
   ``channels_last``: the measurement ``CHANNELS_LAST_DEFAULTS`` needs) beside ONNX Runtime
   CUDA on the FP32 and FP16 ONNX with the default provider options.
2. ``compile``: eager and ``torch.compile`` at the default layouts, FP32 and FP16 (compile time
   reported apart, never timed).
3. ``cuda-graphs``: PyTorch FP16 and ONNX Runtime FP16 with CUDA graphs.
4. ``ort-options``: the FP16 ONNX with each CUDA provider variant (``prefer_nhwc`` on/off ×
   ``cudnn_conv_algo_search`` EXHAUSTIVE/HEURISTIC): the measurement ``CUDA_PROVIDER_DEFAULTS``
   needs.
5. ``independent``: eager PyTorch FP16 (channels_last on CUDA: the layout ``bench`` picks by
   default) timed by a plain loop that uses nothing of the toolkit but the model definition; the bar of issue 13 is that ``bench``'s
   default PyTorch FP16 row (group ``main``) lies within 10 % of it.

Writes ``gpu_speed_<model>_<size>px_<device>_<environment>.{json,csv,png}`` into ``--output``
(every group's rows with a ``group`` column, the independent runs and the bar's verdict) and each
group's own ``bench`` files into the ``…_groups/`` folder beside it.

Written on a machine without a GPU and run there only with ``--device cpu`` (its test); the
first GPU run may still find small things to fix.

    python benchmarks/gpu_speed.py --model ran92 --batch-sizes 1,32,128 -o benchmarks/
"""

from __future__ import annotations

import argparse
import csv
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deploy_ran.bench import CSV_FIELDS, BenchResult, BenchSettings, run_benchmark  # noqa: E402
from deploy_ran.bench.report import csv_row  # noqa: E402
from deploy_ran.environment import collect_environment, environment_tag  # noqa: E402
from deploy_ran.fileio import atomic_path, atomic_write_text, json_text  # noqa: E402

GROUPS = ("main", "compile", "cuda-graphs", "ort-options", "independent")
BAR_TOLERANCE = 0.10  # issue 13: the bench FP16 row within 10 % of the independent measurement


def independent_eager(
    model: str,
    batch: int,
    image_size: int,
    device: str,
    *,
    precision: str = "fp16",
    channels_last: bool | None = None,
    warmup_runs: int = 10,
    runs: int = 50,
) -> dict[str, Any]:
    """Median latency of the model's plain eager forward, timed without the toolkit's runners:
    the model from the registry, a random input already on the device, CUDA events (host timer
    on a CPU). ``channels_last=None``: the layout ``bench`` picks by default for this device and
    precision (channels_last for FP16 on CUDA), so that the two measure the same thing."""
    import torch

    from deploy_ran.models import create_model
    from deploy_ran.runners.torch_runner import default_channels_last

    dev = torch.device(device)
    if channels_last is None:
        channels_last = default_channels_last(dev.type, precision)
    dtype = torch.float16 if precision == "fp16" else torch.float32
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    module = create_model(model, image_size=image_size).eval().to(dev, dtype=dtype)
    module = module.to(memory_format=fmt)
    x = torch.randn(batch, 3, image_size, image_size, device=dev, dtype=dtype)
    x = x.contiguous(memory_format=fmt)
    cuda = dev.type == "cuda"
    times: list[float] = []
    with torch.inference_mode():
        for _ in range(warmup_runs):
            module(x)
        if cuda:
            torch.cuda.synchronize(dev)
        for _ in range(runs):
            if cuda:
                start = torch.cuda.Event(enable_timing=True)
                end = torch.cuda.Event(enable_timing=True)
                start.record()
                module(x)
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end))
            else:
                t0 = time.perf_counter()
                module(x)
                times.append((time.perf_counter() - t0) * 1e3)
    median = statistics.median(times)
    return {
        "model": model,
        "batch_size": batch,
        "precision": precision,
        "layout": "channels_last" if channels_last else "NCHW",
        "runs": runs,
        "warmup_runs": warmup_runs,
        "median_ms": median,
        "min_ms": min(times),
        "images_per_s": batch / median * 1e3,
        "timer": "cuda events" if cuda else "host perf_counter",
    }


def bar_verdicts(
    main: BenchResult | None, independent: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Per batch size: bench's default-layout eager PyTorch FP16 row against the independent
    measurement (median latencies), passed when within :data:`BAR_TOLERANCE`."""
    out = []
    for ind in independent:
        row = None
        if main is not None:
            row = next(
                (
                    r
                    for r in main.rows
                    if r.backend == "torch"
                    and r.precision == "fp16"
                    and r.mode == "eager"
                    and r.batch_size == ind["batch_size"]
                    and r.runner.get("layout_source") == "default"
                ),
                None,
            )
        if row is None or row.status != "ran" or row.latency is None:
            reason = "no bench row" if row is None else f"bench row {row.status}: {row.reason}"
            out.append({"batch_size": ind["batch_size"], "passed": None, "reason": reason})
            continue
        ratio = row.latency.median / ind["median_ms"]
        out.append(
            {
                "batch_size": ind["batch_size"],
                "bench_row": row.label,
                "bench_layout": row.layout,
                "bench_median_ms": row.latency.median,
                "independent_median_ms": ind["median_ms"],
                "bench_over_independent": ratio,
                "tolerance": BAR_TOLERANCE,
                "passed": abs(ratio - 1.0) <= BAR_TOLERANCE,
            }
        )
    return out


def write_summary(
    out: Path,
    stem: str,
    groups: dict[str, BenchResult],
    independent: list[dict[str, Any]],
    bar: list[dict[str, Any]],
    record: dict[str, Any],
) -> dict[str, Path]:
    """JSON (every group, the independent runs, the bar), CSV (every row + ``group``), PNG."""
    paths = {ext: out / f"{stem}.{ext}" for ext in ("json", "csv", "png")}
    summary = {
        **record,
        "bar": bar,
        "independent": independent,
        "groups": {name: result.as_dict() for name, result in groups.items()},
    }
    atomic_write_text(paths["json"], json_text(summary))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["group", *CSV_FIELDS], lineterminator="\n")
    writer.writeheader()
    for name, result in groups.items():
        for r in result.rows:
            writer.writerow({"group": name, **csv_row(r)})
    atomic_write_text(paths["csv"], buf.getvalue())
    _plot(paths["png"], groups, independent, record)
    return paths


def _plot(
    path: Path,
    groups: dict[str, BenchResult],
    independent: list[dict[str, Any]],
    record: dict[str, Any],
) -> None:
    """One panel per batch size: images/s of every row that ran, by group, and the independent
    eager FP16 loop."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    batches = sorted(
        {r.batch_size for g in groups.values() for r in g.rows}
        | {i["batch_size"] for i in independent}
    )
    bars: dict[int, list[tuple[str, float]]] = {b: [] for b in batches}
    for name, result in groups.items():
        for r in result.rows:
            if r.status == "ran" and r.throughput:
                bars[r.batch_size].append((f"[{name}] {r.label}", r.throughput))
    for i in independent:
        bars[i["batch_size"]].append(
            (f"[independent] eager fp16 {i['layout']}", i["images_per_s"])
        )
    height = max((len(v) for v in bars.values()), default=1)
    fig, axes = plt.subplots(
        1, max(1, len(batches)), figsize=(7 * max(1, len(batches)), 1.5 + 0.32 * height)
    )
    axes = axes if hasattr(axes, "__len__") else [axes]
    for ax, b in zip(axes, batches):
        labels = [lab for lab, _ in bars[b]]
        values = [v for _, v in bars[b]]
        ax.barh(range(len(values)), values)
        ax.set_yticks(range(len(values)), labels, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel("images/s")
        ax.set_title(f"batch {b}")
        ax.grid(True, axis="x", alpha=0.3)
    env = record["environment"]
    gpus = env.get("gpus") or ["no GPU"]
    fig.suptitle(
        f"{record['model']} at {record['image_size']}px on {record['device']} · {gpus[0]} · "
        f"torch {env.get('torch')} · onnxruntime {env.get('onnxruntime')} · "
        + ("no copies" if record["device"].startswith("cuda") else "copies included"),
        fontsize=9,
    )
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="ran92")
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--batch-sizes", default="1,32,128")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="20 timed runs per row.")
    parser.add_argument("--iterations", type=int, default=None, help="Timed runs per row.")
    parser.add_argument("--warmup", type=float, default=None, help="Warm-up seconds per row.")
    parser.add_argument("--groups", default=",".join(GROUPS), help=", ".join(GROUPS))
    parser.add_argument("-o", "--output", type=Path, default=Path("bench_results"))
    parser.add_argument(
        "--no-simplify", action="store_true", help="Export without onnxslim (a host without it)."
    )
    args = parser.parse_args(argv)

    from deploy_ran.models import get_spec

    groups = [g.strip() for g in args.groups.split(",") if g.strip()]
    unknown = sorted(set(groups) - set(GROUPS))
    if unknown:
        parser.error(f"unknown group(s) {', '.join(unknown)}; choose from {', '.join(GROUPS)}")
    batches = tuple(int(b) for b in args.batch_sizes.split(","))
    size = args.image_size or get_spec(args.model).image_size
    timing: dict[str, Any] = (
        dict(warmup=1.0, iterations=20) if args.quick else dict(warmup=3.0, duration=10.0)
    )
    if args.iterations is not None:
        timing = {**timing, "iterations": args.iterations, "duration": None}
    if args.warmup is not None:
        timing["warmup"] = args.warmup
    env = collect_environment()
    device_kind = "cuda" if args.device.startswith("cuda") else "cpu"
    stem = f"gpu_speed_{args.model}_{size}px_{device_kind}_{environment_tag(env)}"
    out: Path = args.output
    group_dir = out / f"{stem}_groups"
    group_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="gpu-speed-"))
    started = time.time()

    def bench(name: str, **kw: Any) -> BenchResult:
        print(f"== {name}", flush=True)
        settings = BenchSettings(
            args.model,
            batch_sizes=batches,
            device=args.device,
            image_size=size,
            copies=False,
            output=group_dir / name,
            workdir=work,
            **timing,
            **kw,
        )
        result = run_benchmark(settings, progress=lambda m: print(f"   {m}", flush=True))
        for r in result.rows:
            ips = f"{r.throughput:9.1f} img/s" if r.throughput else f"{r.status}: {r.reason}"
            print(
                f"   {r.label:50s} b{r.batch_size:<4d} {ips}  ×fp32 {r.speedup}  "
                f"×best {r.speedup_vs_best_torch}  {r.layout}  {r.timing}  "
                f"compile {r.compile_seconds}",
                flush=True,
            )
        return result

    onnx_files: tuple[Path, ...] = ()
    if {"main", "cuda-graphs", "ort-options"} & set(groups):
        from deploy_ran.convert import ExportConfig, convert

        fp16 = convert(
            args.model,
            "fp16",
            output=work / f"{args.model}.fp16.onnx",
            export=ExportConfig(image_size=size, simplify=not args.no_simplify),
            overwrite_intermediate=True,
        )
        assert fp16.export is not None  # the FP32 ONNX the FP16 one was converted from
        onnx_files = (fp16.export.path, fp16.path)

    results: dict[str, BenchResult] = {}
    if "main" in groups:
        results["main"] = bench(
            "main",
            torch_precisions=("fp32", "fp16"),
            torch_layouts=("default", "nchw", "channels_last"),
            artifacts=onnx_files,
        )
    if "compile" in groups:
        results["compile"] = bench(
            "compile",
            backends=("torch",),
            torch_precisions=("fp32", "fp16"),
            torch_modes=("eager", "compile"),
        )
    if "cuda-graphs" in groups and args.device.startswith("cuda"):
        results["cuda-graphs"] = bench(
            "cuda-graphs",
            torch_precisions=("fp16",),
            artifacts=onnx_files[1:],
            cuda_graphs=True,
        )
    if "ort-options" in groups:
        for nhwc in ("0", "1"):
            for search in ("EXHAUSTIVE", "HEURISTIC"):
                name = f"ort-options_nhwc{nhwc}_{search.lower()}"
                results[name] = bench(
                    name,
                    torch_precisions=("fp16",),
                    artifacts=onnx_files,
                    ort_cuda_options={"prefer_nhwc": nhwc, "cudnn_conv_algo_search": search},
                )
    independent: list[dict[str, Any]] = []
    if "independent" in groups:
        print("== independent (plain eager loop, fp16, bench's default layout)", flush=True)
        runs = args.iterations or (20 if args.quick else 100)
        for b in batches:
            independent.append(
                independent_eager(
                    args.model, b, size, args.device, runs=runs, warmup_runs=min(10, runs)
                )
            )
            print(f"   b{b:<4d} {independent[-1]['images_per_s']:9.1f} img/s", flush=True)
    bar = bar_verdicts(results.get("main"), independent)
    for v in bar:
        print(f"bar, batch {v['batch_size']}: {v}", flush=True)
    record = {
        "model": args.model,
        "image_size": size,
        "device": args.device,
        "batch_sizes": list(batches),
        "command": "python benchmarks/gpu_speed.py " + " ".join(argv or sys.argv[1:]),
        "seconds": round(time.time() - started, 1),
        "environment": env,
        "environment_tag": environment_tag(env),
    }
    paths = write_summary(out, stem, results, independent, bar, record)
    print(f"wrote {', '.join(str(p) for p in paths.values())}", flush=True)
    return 0 if all(v["passed"] is not False for v in bar) else 1


if __name__ == "__main__":
    sys.exit(main())
