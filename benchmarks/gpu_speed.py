"""The GPU results file of issue 13, in one run: PyTorch at its best beside ONNX Runtime CUDA.

Rows (one ``bench`` per group, all written into ``--output`` with the environment in the names):

1. ``layouts``: eager PyTorch FP32 and FP16, NCHW and channels_last (the measurement the
   per-precision ``CHANNELS_LAST_DEFAULTS`` needs), plus ``torch.compile``, copies included.
2. ``best``: default layouts, eager + compile, FP32 + FP16, ONNX Runtime CUDA FP32 and FP16 with
   the default provider options, ``--no-copies`` and CUDA graphs.
3. ``ort-options``: the FP16 ONNX with each CUDA provider variant (``prefer_nhwc`` on/off,
   ``cudnn_conv_algo_search`` EXHAUSTIVE/HEURISTIC), the measurement ``CUDA_PROVIDER_DEFAULTS``
   needs.

Written for a GPU host and NOT yet run on one (it was written on a machine without a GPU); expect
to fix small things on the first run. ``--quick`` keeps it to a few minutes.

    python benchmarks/gpu_speed.py --model ran92 --batch-sizes 1,32,128 -o benchmarks/
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deploy_ran.bench import BenchSettings, run_benchmark  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="ran92")
    parser.add_argument("--batch-sizes", default="1,32,128")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="Fewer runs per row.")
    parser.add_argument("--groups", default="layouts,best,ort-options")
    parser.add_argument("-o", "--output", type=Path, default=Path("bench_results"))
    args = parser.parse_args()

    batches = tuple(int(b) for b in args.batch_sizes.split(","))
    timing = dict(warmup=1.0, iterations=20) if args.quick else dict(warmup=3.0, duration=10.0)
    groups = set(args.groups.split(","))
    out = args.output
    work = Path(tempfile.mkdtemp(prefix="gpu-speed-"))

    def bench(name: str, **kw) -> None:
        folder = out / name
        print(f"== {name}", flush=True)
        result = run_benchmark(
            BenchSettings(
                args.model,
                batch_sizes=batches,
                device=args.device,
                output=folder,
                workdir=work,
                **timing,
                **kw,
            ),
            progress=lambda m: print(f"   {m}", flush=True),
        )
        for r in result.rows:
            ips = f"{r.throughput:9.1f} img/s" if r.throughput else r.status
            print(
                f"{r.label:55s} b{r.batch_size:<4d} {ips}  ×fp32 {r.speedup}  "
                f"×best {r.speedup_vs_best_torch}  {r.layout}  {r.timing}  "
                f"compile {r.compile_seconds}",
                flush=True,
            )

    if "layouts" in groups:
        for channels_last in (False, True):
            bench(
                f"layouts_channels_last-{channels_last}",
                backends=("torch",),
                torch_precisions=("fp32", "fp16"),
                torch_channels_last=channels_last,
            )
    fp16_onnx = None
    if groups & {"best", "ort-options"}:
        from deploy_ran.convert import ExportConfig, convert

        fp16_onnx = convert(
            args.model,
            "fp16",
            output=work / f"{args.model}.fp16.onnx",
            export=ExportConfig(),
            overwrite_intermediate=True,
        ).path
    if "best" in groups:
        artifacts = (work / f"{args.model}.onnx", fp16_onnx)
        bench(
            "best_copies",
            torch_precisions=("fp32", "fp16"),
            torch_modes=("eager", "compile"),
            artifacts=artifacts,
        )
        bench(
            "best_no-copies_cuda-graphs",
            torch_precisions=("fp32", "fp16"),
            torch_modes=("eager",),
            artifacts=artifacts,
            copies=False,
            cuda_graphs=True,
        )
    if "ort-options" in groups:
        for nhwc in ("0", "1"):
            for search in ("EXHAUSTIVE", "HEURISTIC"):
                bench(
                    f"ort-options_nhwc{nhwc}_{search.lower()}",
                    backends=("torch", "ort"),
                    torch_precisions=("fp16",),
                    artifacts=(work / f"{args.model}.onnx", fp16_onnx),
                    copies=False,
                    ort_cuda_options={"prefer_nhwc": nhwc, "cudnn_conv_algo_search": search},
                )


if __name__ == "__main__":
    main()
