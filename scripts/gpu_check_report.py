"""The measuring and reporting half of scripts/gpu_check.sh.

python scripts/gpu_check_report.py check OUT MODEL [CHECKPOINT]   # parity + CUDA-graph checks
python scripts/gpu_check_report.py report OUT                      # one table, JSON in benchmarks/

``check`` runs every artifact it finds in OUT on every backend present (eager PyTorch FP32 as the
reference; ONNX Runtime CUDA for FP32/FP16/INT8 Q/DQ; ONNX Runtime's TensorRT provider and
TensorRT plans only when installed), each at batches 1 → 8 → 1, plain and with CUDA graphs, and
records the worst difference of the graph path from the plain path (a stale or failed capture
shows there) and the relative L2 error against eager FP32. A backend that is missing is recorded
as skipped with the reason. ``report`` prints one table and writes
``benchmarks/gpu_check_<environment>.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BATCHES = (1, 8, 1)


def _rel_l2(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a.astype(np.float64) - b) / max(np.linalg.norm(b), 1e-12))


def _cases(out: Path, model: str) -> list[tuple[str, Path, dict[str, Any]]]:
    import onnxruntime as ort

    have = ort.get_available_providers()
    cases = []
    for precision in ("", ".fp16", ".int8"):
        onnx_path = out / f"{model}{precision}.onnx"
        if onnx_path.exists():
            cases.append((f"ort cuda{precision or '.fp32'}", onnx_path, {"providers": "cuda"}))
            if "TensorrtExecutionProvider" in have:
                cases.append(
                    (f"ort tensorrt{precision or '.fp32'}", onnx_path, {"providers": "tensorrt"})
                )
    for plan in sorted(out.glob(f"{model}*.plan")):
        cases.append((f"trt {plan.name}", plan, {}))
    return cases


def check(out: Path, model: str, checkpoint: str | None) -> dict[str, Any]:
    from deploy_ran.environment import collect_environment
    from deploy_ran.errors import DeployRanError
    from deploy_ran.runners import load_runner

    rng = np.random.default_rng(0)
    rows: list[dict[str, Any]] = []
    with load_runner(model, device="cuda", checkpoint=checkpoint) as eager:
        size = eager.input_spec[0].shape[-1]
        feeds = [rng.standard_normal((b, 3, size, size)).astype(np.float32) for b in BATCHES]
        reference = [eager.run(x)[eager.output_names[0]] for x in feeds]
    rows.append({"case": "torch eager fp32", "status": "reference"})
    for name, target, kwargs in _cases(out, model):
        row: dict[str, Any] = {"case": name, "artifact": str(target)}
        try:
            outs = {}
            for graphs in (False, True):
                with load_runner(target, device="cuda", cuda_graph=graphs, **kwargs) as runner:
                    first = runner.output_names[0]
                    outs[graphs] = [runner.run(runner.coerce(x))[first].copy() for x in feeds]
            row["graph_vs_plain_max_abs"] = max(
                float(np.max(np.abs(a.astype(np.float64) - b)))
                for a, b in zip(outs[True], outs[False])
            )
            row["rel_l2_vs_eager"] = max(_rel_l2(a, r) for a, r in zip(outs[False], reference))
            row["status"] = "ran"
        except DeployRanError as exc:  # missing backend, unsupported graph capture, ...
            row["status"] = "skipped" if "not" in exc.message else "failed"
            row["reason"] = exc.message
        rows.append(row)
    result = {
        "model": model,
        "batches": list(BATCHES),
        "rows": rows,
        "environment": collect_environment(),
    }
    (out / "gpu_check.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return result


def report(out: Path, benchmarks: Path = ROOT / "benchmarks") -> Path:
    """Print one table from OUT/gpu_check.json (and OUT/bench.json when present); write the
    combined JSON to ``benchmarks/gpu_check_<environment>.json``."""
    from rich.console import Console
    from rich.table import Table

    from deploy_ran.bench import environment_tag
    from deploy_ran.fileio import atomic_write_text

    check_data = json.loads((out / "gpu_check.json").read_text(encoding="utf-8"))
    bench_path = out / "bench.json"
    bench = json.loads(bench_path.read_text(encoding="utf-8")) if bench_path.exists() else None
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
    combined = {"gpu_check": check_data, "bench": bench}
    target = benchmarks / f"gpu_check_{check_data['model']}_{environment_tag(env)}.json"
    atomic_write_text(target, json.dumps(combined, indent=1) + "\n")
    print(f"wrote {target}")
    return target


def main(argv: list[str]) -> int:
    if len(argv) >= 3 and argv[0] == "check":
        check(Path(argv[1]), argv[2], argv[3] if len(argv) > 3 else None)
        return 0
    if len(argv) == 2 and argv[0] == "report":
        report(Path(argv[1]))
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
