"""The toolkit's INT8 files beside NVIDIA ModelOpt's, on the digits example: one table.

ModelOpt (``nvidia-modelopt[onnx]``) pins onnx and onnxruntime-gpu versions that conflict with this
project's, so it runs from its own environment, given as ``--modelopt-python``::

    python3 -m venv /tmp/mo
    /tmp/mo/bin/pip install torch==2.13.0          # the CPU wheel first: unpinned torch pulls CUDA
    /tmp/mo/bin/pip install "nvidia-modelopt[onnx]"
    python benchmarks/int8_vs_modelopt.py --fp32 digits.onnx --data digits.npz \\
        --modelopt-python /tmp/mo/bin/python --workdir int8_cmp

(``examples/digits.py`` writes ``digits.npz`` and trains the checkpoint ``export`` turns into
``digits.onnx``.) ModelOpt calibrates on the CPU with ``--calibration_eps cpu`` (its
onnxruntime-gpu wheel runs the CPU provider without a GPU). The toolkit's files are calibrated
on the same first ``--calib-images`` training images (``calib.npy`` in ``--workdir``). Every file is then run by ONNX Runtime on the
CPU over the test split and compared with FP32 by :func:`deploy_ran.compare.paired.compare_paired`
(changed predictions, exact McNemar p, 95 % interval); coverage is :mod:`exporters.coverage`,
counted the same way for every file. Writes ``int8_vs_modelopt.json`` and ``.md`` in ``--workdir``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import onnx  # noqa: E402

from deploy_ran.compare.paired import compare_paired  # noqa: E402
from exporters.coverage import int8_coverage  # noqa: E402

#: (label, method, placement, float part) of the toolkit's files in the table.
PROJECT_FILES = (
    ("deploy-ran percentile (default: trt, FP16 float part)", "percentile", "trt", "fp16"),
    ("deploy-ran percentile, FP32 float part", "percentile", "trt", "fp32"),
    ("deploy-ran percentile, conservative", "percentile", "conservative", "fp16"),
    ("deploy-ran percentile, conservative, FP32 float part (old default)", "percentile", "conservative", "fp32"),
    ("deploy-ran entropy", "entropy", "trt", "fp16"),
    ("deploy-ran entropy, conservative, FP32 float part", "entropy", "conservative", "fp32"),
    ("deploy-ran minmax", "minmax", "trt", "fp16"),
    ("deploy-ran minmax, conservative, FP32 float part", "minmax", "conservative", "fp32"),
)  # fmt: skip
MODELOPT_METHODS = ("max", "entropy")


def build_modelopt(python: str, fp32: Path, calib: Path, method: str, out: Path) -> float:
    """Run ModelOpt's ONNX quantizer with its defaults (FP16 float part) on the CPU; seconds."""
    started = time.perf_counter()
    cmd = [
        python, "-m", "modelopt.onnx.quantization", "--onnx_path", str(fp32),
        "--quantize_mode", "int8", "--calibration_method", method,
        "--calibration_data_path", str(calib), "--calibration_eps", "cpu",
        "--output_path", str(out),
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0 or not out.is_file():
        sys.stderr.write(done.stdout[-4000:] + done.stderr[-4000:])
        raise SystemExit(f"ModelOpt failed ({done.returncode}) for --calibration_method {method}")
    from calibration.foreign import adopt_int8_file

    adopt_int8_file(out, fp32)  # ModelOpt drops metadata_props; infer/evaluate need them
    return time.perf_counter() - started


def build_project(
    fp32: Path, calib: Path, images: int, method: str, placement: str, precision: str, out: Path
) -> float:
    from calibration.quantize import quantize_int8

    started = time.perf_counter()
    quantize_int8(
        fp32, out, data=str(calib), method=method, num_images=images,
        placement=placement, float_precision=precision,
        cache_path=out.with_name(f"ranges-{method}.json"),
    )  # fmt: skip
    return time.perf_counter() - started


def predict(path: Path, x: np.ndarray) -> np.ndarray:
    from deploy_ran.runners.ort_runner import OrtRunner

    with OrtRunner(path) as runner:
        out = runner.run_many(x, 150)
    return out[runner.output_names[0]].argmax(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fp32", type=Path, required=True)
    parser.add_argument(
        "--data", type=Path, required=True, help="digits.npz from examples/digits.py"
    )
    parser.add_argument("--modelopt-python", default=None, help="python of ModelOpt's own venv")
    parser.add_argument("--workdir", type=Path, default=Path("int8_vs_modelopt"))
    parser.add_argument("--calib-images", type=int, default=512)
    args = parser.parse_args()
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    arrays = np.load(args.data)
    x_test, y_test = arrays["x_test"], arrays["y_test"]
    calib = work / "calib.npy"
    np.save(calib, arrays["x_train"][: args.calib_images])

    files: list[tuple[str, Path, float | None]] = []
    for label, method, placement, precision in PROJECT_FILES:
        out = work / f"digits.int8-{method}-{placement}-{precision}.onnx"
        seconds = None
        if not out.is_file():
            seconds = build_project(
                args.fp32, calib, args.calib_images, method, placement, precision, out
            )
        files.append((label, out, seconds))
    for method in MODELOPT_METHODS:
        out = work / f"digits.modelopt-{method}.onnx"
        seconds = None
        if not out.is_file():
            if args.modelopt_python is None:
                print(f"skipping ModelOpt {method}: no --modelopt-python and no {out}")
                continue
            seconds = build_modelopt(args.modelopt_python, args.fp32, calib, method, out)
        files.append((f"ModelOpt {method} (defaults)", out, seconds))

    reference = predict(args.fp32, x_test)
    rows = [
        {"file": "FP32", "path": str(args.fp32), "accuracy": float((reference == y_test).mean())}
    ]
    for label, path, seconds in files:
        pred = predict(path, x_test)
        paired = compare_paired(reference, pred, y_test)
        model = onnx.load(str(path))
        cov = int8_coverage(model)
        rows.append(
            {
                "file": label,
                "path": str(path),
                "opset": next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
                "accuracy": float((pred == y_test).mean()),
                "paired_vs_fp32": paired.as_dict(),
                "coverage": cov.as_dict(),
                "build_seconds": seconds,
            }
        )
    (work / "int8_vs_modelopt.json").write_text(json.dumps(rows, indent=1))
    lines = [
        "| file | top-1 | Δ (pt) | 95 % interval | changed (lost/gained) | McNemar p "
        "| MiB/image INT8 / FP16 / FP32 | float islands | unfoldable Q/DQ | BN/MaxPool/Resize from DQ |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| FP32 | {rows[0]['accuracy']:.2%} | | | | | | | | |",
    ]
    for r in rows[1:]:
        p, c = r["paired_vs_fp32"], r["coverage"]
        b = c["activation_bytes_per_image"]
        lines.append(
            f"| {r['file']} | {r['accuracy']:.2%} | {p['delta'] * 100:+.2f} "
            f"| {p['ci_low'] * 100:+.2f} … {p['ci_high'] * 100:+.2f} "
            f"| {p['changed']} ({p['lost']}/{p['gained']}) | {p['p_value']:.3f} "
            f"| {b['int8'] / 2**20:.2f} / {b['fp16'] / 2**20:.2f} / {b['fp32'] / 2**20:.2f} "
            f"(total {c['activation_mib_per_image']:.2f}) | {c['float_islands']} "
            f"| {c['unfoldable_qdq']} | {c['bn_maxpool_resize_dq_fed']:.0%} |"
        )
    (work / "int8_vs_modelopt.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
