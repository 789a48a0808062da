"""One table from scripts/gpu_check.sh's results: parity per engine, then speed per backend.

python scripts/gpu_check_report.py gpu_check
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table


def main(folder: str) -> int:
    out = Path(folder)
    console = Console(width=None if sys.stdout.isatty() else 160)
    bench = json.loads((out / "bench.json").read_text())
    env = bench.get("environment", {})
    where = ", ".join(env.get("gpus") or [env.get("cpu", "?")])
    table = Table(
        title=f"{bench.get('model', '?')} at {bench.get('image_size', '?')} px on {where}"
    )
    for col in (
        "backend",
        "precision",
        "batch",
        "median ms",
        "p99 ms",
        "images/s",
        "vs eager FP32",
        "parity (vs eager FP32)",
        "status",
    ):
        table.add_column(
            col, justify="left" if col in ("backend", "precision", "status") else "right"
        )
    parity = {}
    for precision in ("fp32", "fp16", "int8"):
        path = out / f"verify_{precision}.json"
        if path.exists():
            v = json.loads(path.read_text())
            first = v["outputs"][0]
            top1 = "-" if first.get("top1") is None else f"top-1 {first['top1']:.1%}"
            parity[precision] = (
                f"{'pass' if v['passed'] else 'FAIL'}: rel L2 {first['rel_l2']:.1e}, "
                f"cos {first['cosine']:.4f}, {top1}"
            )
    for row in bench["rows"]:
        lat = row.get("latency_ms") or {}
        speed = row.get("speedup_vs_torch_fp32")
        table.add_row(
            row["backend"],
            row["precision"],
            str(row["batch_size"]),
            f"{lat['median']:.2f}" if lat else "-",
            f"{lat['p99']:.2f}" if lat else "-",
            f"{row['throughput_ips']:.0f}" if row.get("throughput_ips") else "-",
            f"{speed:.2f}×" if speed else "-",
            parity.get(row["precision"], "-") if row["backend"] == "trt" else "-",
            row["status"]
            if row["status"] == "ran"
            else f"{row['status']}: {row.get('reason', '')}",
        )
    console.print(table)
    failed = [p for p, text in parity.items() if text.startswith("FAIL")]
    if failed:
        console.print(f"[red]parity failed for: {', '.join(failed)}[/]")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "gpu_check"))
