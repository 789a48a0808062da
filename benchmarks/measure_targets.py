"""Measure the toolkit's three CPU speed targets on this machine and write them as JSON.

1. ``ran92`` at batch 1: ``OrtRunner`` FP32 against eager PyTorch FP32 in the same ``bench`` run
   (target: at least 2.5× faster). Not interleaved: on a CPU, one backend's thread pool still
   spins (OpenMP, ONNX Runtime) while the other runs, which slows both.
2. ``OrtRunner.run`` against a bare ``InferenceSession.run`` on the same session and inputs
   (target: at most 5 % overhead).
3. ``infer`` throughput against ``bench`` throughput, same backend and batch size, on decoded and
   preprocessed JPEGs (target: at least 90 %).

Every measurement is repeated (``--repeats``) and reported as the median, with the load average
of the machine before and after each, because a shared machine's numbers mean little without it.

    python benchmarks/measure_targets.py --onnx ran92.onnx --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deploy_ran.bench import (  # noqa: E402
    BenchSettings,
    environment_tag,
    run_benchmark,
    runner_overhead,
)
from deploy_ran.environment import collect_environment  # noqa: E402
from deploy_ran.fileio import atomic_write_text  # noqa: E402
from deploy_ran.infer import run_inference  # noqa: E402
from deploy_ran.runners.ort_runner import default_threads  # noqa: E402


def load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def speedup(onnx: Path, repeats: int, duration: float, threads: int) -> dict:
    runs = []
    for i in range(repeats):
        before = load()
        res = run_benchmark(
            BenchSettings(
                "ran92",
                backends=("torch", "ort"),
                artifacts=(onnx,),
                batch_sizes=(1,),
                warmup=2.0,
                duration=duration,
                threads=threads,
            )
        )
        torch_row, ort_row = res.row("torch", "fp32", 1), res.row("ort", "fp32", 1)
        runs.append(
            {
                "repeat": i,
                "torch_median_ms": torch_row.latency.median,
                "ort_median_ms": ort_row.latency.median,
                "torch_runs": torch_row.iterations,
                "ort_runs": ort_row.iterations,
                "speedup": ort_row.speedup,
                "load_before": before,
                "load_after": load(),
            }
        )
        print(json.dumps(runs[-1]), flush=True)
    return {
        "target": ">= 2.5x",
        "median_speedup": statistics.median(r["speedup"] for r in runs),
        "runs": runs,
    }


def overhead(onnx: Path, repeats: int, iterations: int, threads: int) -> dict:
    runs = []
    for i in range(repeats):
        before = load()
        got = runner_overhead(onnx, batch=1, iterations=iterations, threads=threads)
        got.update(repeat=i, load_before=before, load_after=load())
        runs.append(got)
        print(json.dumps(got), flush=True)
    return {
        "target": "<= 5%",
        "median_overhead": statistics.median(r["overhead"] for r in runs),
        "runs": runs,
        "absolute_on_a_one_node_graph": overhead_absolute(threads),
    }


def tiny_onnx(path: Path) -> Path:
    """A one-node graph (spatial mean of a 1×3×224×224 input): ONNX Runtime's own work is a few
    microseconds, so the runner's per-call cost shows as an absolute number."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["input", "axes"], ["logits"], keepdims=0)],
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 224, 224])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])],
        [numpy_helper.from_array(np.array([2, 3], dtype=np.int64), "axes")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.save(model, path)
    return path


def overhead_absolute(threads: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        got = runner_overhead(tiny_onnx(Path(tmp) / "tiny.onnx"), iterations=2000, threads=threads)
    got["runner_cost_us"] = (got["runner_median_ms"] - got["bare_session_median_ms"]) * 1e3
    print(json.dumps(got), flush=True)
    return got


def make_jpegs(folder: Path, n: int) -> None:
    """ImageNet-like files: 500×375 JPEGs of smooth random colour fields (decode like photos)."""
    rng = np.random.default_rng(0)
    for i in range(n):
        small = rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)
        img = Image.fromarray(small).resize((500, 375), Image.Resampling.BICUBIC)
        img.save(folder / f"img{i:04d}.jpg", quality=90)


def infer_vs_bench(
    onnx: Path, repeats: int, batch: int, images: int, duration: float, threads: int
) -> dict:
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        folder.mkdir()
        make_jpegs(folder, images)

        def bench_ips() -> float:
            res = run_benchmark(
                BenchSettings(
                    "ran92",
                    backends=("ort",),
                    artifacts=(onnx,),
                    batch_sizes=(batch,),
                    warmup=2.0,
                    duration=duration,
                    threads=threads,
                )
            )
            return res.row("ort", "fp32", batch).throughput

        for i in range(repeats):  # bench, infer, bench: the ratio uses the mean of both benches
            before = load()
            bench_before = bench_ips()
            out = Path(tmp) / f"preds{i}.jsonl"
            started = time.perf_counter()
            inf = run_inference(onnx, folder, out, batch_size=batch, topk=5, threads=threads)
            wall = time.perf_counter() - started
            bench_after = bench_ips()
            bench_mean = (bench_before + bench_after) / 2
            runs.append(
                {
                    "repeat": i,
                    "batch": batch,
                    "images": images,
                    "bench_images_per_s_before": bench_before,
                    "bench_images_per_s_after": bench_after,
                    "infer_images_per_s": inf.images_per_s,
                    "infer_wall_s_including_session_load": wall,
                    "loader_workers": inf.workers,
                    "infer_backend_busy": inf.backend_busy,
                    "infer_loader_wait_s": inf.loader_wait_seconds,
                    "ratio": inf.images_per_s / bench_mean,
                    "load_before": before,
                    "load_after": load(),
                }
            )
            print(json.dumps(runs[-1]), flush=True)
    return {
        "target": ">= 90%",
        "median_ratio": statistics.median(r["ratio"] for r in runs),
        "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx", type=Path, required=True, help="FP32 ran92.onnx")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--duration", type=float, default=15.0, help="bench seconds per row")
    parser.add_argument("--threads", type=int, default=default_threads())
    parser.add_argument("--batch", type=int, default=8, help="infer vs bench batch size")
    parser.add_argument("--images", type=int, default=64, help="JPEGs for infer")
    parser.add_argument("--only", choices=["speedup", "overhead", "infer"], action="append")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    env = collect_environment()
    output = args.output or Path(__file__).parent / f"targets_ran92_{environment_tag(env)}.json"
    result = json.loads(output.read_text()) if output.exists() else {}
    result.update(environment=env, threads=args.threads)
    todo = args.only or ["speedup", "overhead", "infer"]
    if "speedup" in todo:
        result["ort_vs_torch_batch1"] = speedup(
            args.onnx, args.repeats, args.duration, args.threads
        )
    if "overhead" in todo:
        result["runner_overhead"] = overhead(args.onnx, args.repeats, 40, args.threads)
    if "infer" in todo:
        result["infer_vs_bench"] = infer_vs_bench(
            args.onnx, args.repeats, args.batch, args.images, args.duration, args.threads
        )
    atomic_write_text(output, json.dumps(result, indent=2) + "\n")
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
