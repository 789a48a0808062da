"""Parity and CUDA-graph checks of every artifact on every GPU backend present, and their report.

python3 scripts/gpu_check_report.py check WORK MODEL [--checkpoint W.pt] [--device cuda]
        [--json FILE]                         # parity + CUDA-graph checks → FILE (WORK/gpu_check.json)
python3 scripts/gpu_check_report.py report RESULTS_JSON [BENCH_JSON]   # one table + benchmarks/

``check`` runs every artifact it finds in WORK (``MODEL.onnx``, ``.fp16.onnx``, ``.int8.onnx``,
``MODEL*.plan``) on every backend (eager PyTorch FP32 as the reference; ONNX Runtime CUDA; ONNX
Runtime's TensorRT provider and TensorRT plans), each at batches 1 → 8 → 1, plain and (on CUDA)
with CUDA graphs, and records the worst difference of the graph path from the plain path (a stale
or failed capture shows there) and the relative L2 error against eager FP32.

Every case is run under its own ``try``: any exception, ONNX Runtime's own ``Fail`` or a torch
``RuntimeError`` included, ends that case only. The status is decided by the exception's TYPE,
never its message text: :class:`BackendUnavailableError` (the backend or provider is not
installed here) is ``skipped``; anything else is ``failed``, with the type's name and the first
line of the message. The report file is written after every case and at the end, so a run killed
half-way still leaves the cases it finished. ``--device cpu`` runs the same cases on the CPU
provider (no graphs): the lease script's dry run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BATCHES = (1, 8, 1)


def classify(exc: BaseException) -> str:
    """``skipped`` for a backend that is not installed here, ``failed`` for anything else:
    by the exception's type, never by its message."""
    from deploy_ran.runners.base import BackendUnavailableError

    return "skipped" if isinstance(exc, BackendUnavailableError) else "failed"


def describe_exception(exc: BaseException) -> str:
    """``TypeName: first line`` (DeployRanError's message, else ``str``)."""
    text = getattr(exc, "message", None) or str(exc)
    first = text.strip().splitlines()[0] if text.strip() else ""
    return f"{type(exc).__name__}: {first}"[:500]


def _rel_l2(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a.astype(np.float64) - b) / max(np.linalg.norm(b), 1e-12))


def cases(work: Path, model: str, device: str) -> list[tuple[str, Path, dict[str, Any]]]:
    """(case name, artifact, runner options) for every artifact found in ``work``."""
    provider = "cuda" if device.startswith("cuda") else "cpu"
    found = []
    for precision in ("", ".fp16", ".int8"):
        onnx_path = work / f"{model}{precision}.onnx"
        if onnx_path.exists():
            found.append(
                (f"ort {provider}{precision or '.fp32'}", onnx_path, {"providers": provider})
            )
            if provider == "cuda":  # the TensorRT provider: skipped by type where not installed
                found.append(
                    (f"ort tensorrt{precision or '.fp32'}", onnx_path, {"providers": "tensorrt"})
                )
    for plan in sorted(work.glob(f"{model}*.plan")):
        found.append((f"trt {plan.name}", plan, {}))
    return found


def _write(path: Path, result: dict[str, Any]) -> None:
    """Atomically (temp file, then rename): a killed run leaves the previous complete file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(result, indent=1, default=str) + "\n")
    os.replace(tmp, path)


def _environment() -> dict[str, Any]:
    try:
        from deploy_ran.environment import collect_environment

        return collect_environment()
    except Exception as exc:  # noqa: BLE001 - the report is written regardless
        return {"error": describe_exception(exc)}


def _run_case(
    target: Path, kwargs: dict[str, Any], device: str, feeds: list, reference: list | None
) -> dict[str, Any]:
    from deploy_ran.runners import load_runner

    graph_modes = (False, True) if device.startswith("cuda") else (False,)
    row: dict[str, Any] = {}
    outs = {}
    for graphs in graph_modes:
        use = feeds
        if graphs and kwargs.get("providers") == "tensorrt":
            use = [f for f in feeds if f.shape[0] == feeds[0].shape[0]]  # its graph holds one shape
        with load_runner(target, device=device, cuda_graph=graphs, **kwargs) as runner:
            first = runner.output_names[0]
            outs[graphs] = [runner.run(runner.coerce(x))[first].copy() for x in use]
    if True in outs:
        row["graph_vs_plain_max_abs"] = max(
            float(np.max(np.abs(a.astype(np.float64) - b))) for a, b in zip(outs[True], outs[False])
        )
    if reference is not None:
        row["rel_l2_vs_eager"] = max(_rel_l2(a, r) for a, r in zip(outs[False], reference))
    return row


def check(
    work: Path,
    model: str,
    checkpoint: str | None = None,
    *,
    device: str = "cuda",
    output: Path | None = None,
) -> dict[str, Any]:
    """Run every case; write the report after each one (see the module docstring)."""
    output = output or work / "gpu_check.json"
    result: dict[str, Any] = {
        "model": model,
        "device": device,
        "batches": list(BATCHES),
        "rows": [],
        "environment": _environment(),
    }
    rows = result["rows"]
    rng = np.random.default_rng(0)
    reference = None
    feeds: list = []
    try:
        from deploy_ran.runners import load_runner

        with load_runner(model, device=device, checkpoint=checkpoint) as eager:
            size = eager.input_spec[0].shape[-1]
            feeds = [rng.standard_normal((b, 3, size, size)).astype(np.float32) for b in BATCHES]
            reference = [eager.run(x)[eager.output_names[0]] for x in feeds]
        rows.append({"case": "torch eager fp32", "status": "reference"})
    except Exception as exc:  # noqa: BLE001 - recorded; the cases still run without a reference
        rows.append(
            {"case": "torch eager fp32", "status": classify(exc), "reason": describe_exception(exc)}
        )
    _write(output, result)
    if not feeds:
        feeds = [rng.standard_normal((b, 3, 32, 32)).astype(np.float32) for b in BATCHES]
    for name, target, kwargs in cases(work, model, device):
        row: dict[str, Any] = {"case": name, "artifact": str(target)}
        try:
            row.update(_run_case(target, kwargs, device, feeds, reference))
            row["status"] = "ran"
        except Exception as exc:  # noqa: BLE001 - every exception ends this case only
            row["status"] = classify(exc)
            row["reason"] = describe_exception(exc)
        rows.append(row)
        _write(output, result)
    return result


def report(
    results: Path, bench: Path | None = None, benchmarks: Path = ROOT / "benchmarks"
) -> Path:
    """Print one table from ``results`` (``check``'s JSON; ``bench``'s JSON beside it when given
    or found as ``bench.json`` next to it) and write the combined JSON to
    ``benchmarks/gpu_check_<model>_<environment>.json``."""
    from rich.console import Console
    from rich.table import Table

    from deploy_ran.bench import environment_tag
    from deploy_ran.fileio import atomic_write_text

    results = Path(results)
    if results.is_dir():  # the old form: the folder holding gpu_check.json
        results = results / "gpu_check.json"
    check_data = json.loads(results.read_text(encoding="utf-8"))
    bench = bench or results.with_name("bench.json")
    bench_data = json.loads(bench.read_text(encoding="utf-8")) if bench.exists() else None
    env = check_data.get("environment", {})
    where = ", ".join(env.get("gpus") or ["no GPU"])
    table = Table(title=f"{check_data['model']} on {where}: batches {check_data['batches']}")
    for col in ("case", "status", "graphs vs plain (max abs)", "rel L2 vs eager FP32", "note"):
        table.add_column(col)
    for row in check_data["rows"]:
        graph = row.get("graph_vs_plain_max_abs")
        rel = row.get("rel_l2_vs_eager")
        table.add_row(
            row["case"],
            row["status"],
            "-" if graph is None else f"{graph:.2e}",
            "-" if rel is None else f"{rel:.2e}",
            row.get("reason", ""),
        )
    Console(width=160).print(table)
    combined = {"gpu_check": check_data, "bench": bench_data}
    target = benchmarks / f"gpu_check_{check_data['model']}_{environment_tag(env)}.json"
    atomic_write_text(target, json.dumps(combined, indent=1) + "\n")
    print(f"wrote {target}")
    return target


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("check")
    c.add_argument("work", type=Path)
    c.add_argument("model")
    c.add_argument("legacy_checkpoint", nargs="?", default=None, help=argparse.SUPPRESS)
    c.add_argument("--checkpoint", default=None)
    c.add_argument("--device", default="cuda")
    c.add_argument("--json", type=Path, default=None, dest="output")
    r = sub.add_parser("report")
    r.add_argument("results", type=Path)
    r.add_argument("bench", type=Path, nargs="?", default=None)
    args = parser.parse_args(argv)
    if args.command == "check":
        result = check(
            args.work,
            args.model,
            args.checkpoint or args.legacy_checkpoint,
            device=args.device,
            output=args.output,
        )
        failed = [r["case"] for r in result["rows"] if r["status"] == "failed"]
        print(f"gpu_check: {len(result['rows'])} case(s), failed: {', '.join(failed) or 'none'}")
        return 1 if failed else 0
    report(args.results, args.bench)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
