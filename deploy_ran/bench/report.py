"""Where a benchmark's numbers go: JSON and CSV whose file name records the environment (CPU,
GPU, library versions), and a PNG plot (:mod:`deploy_ran.bench.plot`).

Numbers measured on different machines are not comparable, so the default file name says where
they were measured; every file is written atomically.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from deploy_ran.bench.plot import write_plot
from deploy_ran.bench.result import BenchResult, BenchRow
from deploy_ran.bench.timing import STAT_FIELDS
from deploy_ran.device import describes_cuda
from deploy_ran.environment import environment_tag
from deploy_ran.fileio import atomic_write_text, check_writable, json_text

DEFAULT_OUTPUT = Path("bench_results")
CSV_FIELDS = (
    "label",
    "backend",
    "precision",
    "device",
    "artifact",
    "batch_size",
    "status",
    "reason",
    "iterations",
    *(f"{s}_ms" for s in STAT_FIELDS),
    "throughput_ips",
    "speedup_vs_torch_fp32",
    "speedup_vs_best_torch",
    "best_torch",
    "timer",
    "copies_included",
    "layout",
    "mode",
    "compile_seconds",
    "file_bytes",
    "top1",
    "top1_delta",
    "top1_p",
    "threads",
)


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def csv_row(row: BenchRow) -> dict[str, Any]:
    """``row`` as one CSV line keyed by :data:`CSV_FIELDS` (empty cells for missing values)."""
    out: dict[str, Any] = {
        "label": row.label,
        "backend": row.backend,
        "precision": row.precision,
        "device": row.device,
        "artifact": row.artifact or "",
        "batch_size": row.batch_size,
        "status": row.status,
        "reason": row.reason or "",
        "iterations": row.iterations,
        "throughput_ips": _fmt(row.throughput),
        "speedup_vs_torch_fp32": _fmt(row.speedup),
        "speedup_vs_best_torch": _fmt(row.speedup_vs_best_torch),
        "best_torch": row.best_torch or "",
        "timer": row.timer or "",
        "copies_included": "" if row.copies_included is None else row.copies_included,
        "layout": row.layout or "",
        "mode": row.mode or "",
        "compile_seconds": _fmt(row.compile_seconds),
        "file_bytes": "" if row.file_bytes is None else row.file_bytes,
        "top1": _fmt(row.top1),
        "top1_delta": _fmt(row.top1_delta),
        "top1_p": _fmt(row.top1_p),
        "threads": row.runner.get("threads", "") if row.runner else "",
    }
    for s in STAT_FIELDS:
        out[f"{s}_ms"] = _fmt(getattr(row.latency, s) if row.latency else None)
    return out


def default_stem(result: BenchResult) -> str:
    """``bench_MODEL_SIZEpx_DEVICE_<environment tag>``: the file name records the environment."""
    device = "cuda" if describes_cuda(result.device) else "cpu"
    return (
        f"bench_{result.model}_{result.image_size}px_{device}_{environment_tag(result.environment)}"
    )


def output_paths(output: str | Path | None, stem: str) -> tuple[Path, Path, Path]:
    """(json, csv, png) paths for ``output`` (a folder, or a file whose stem is kept); raises
    before anything is measured when one of them cannot be written."""
    out = Path(output) if output is not None else DEFAULT_OUTPUT
    if out.suffix.lower() in (".json", ".csv", ".png"):
        base = out.with_suffix("")
    else:
        out.mkdir(parents=True, exist_ok=True)
        base = out / stem
    paths = tuple(base.with_name(base.name + ext) for ext in (".json", ".csv", ".png"))
    for p in paths:
        check_writable(p)
    return paths  # type: ignore[return-value]


def save_result(
    result: BenchResult, output: str | Path | None = None, plot: bool = True
) -> dict[str, Path]:
    """Write JSON + CSV (+ PNG); ``output`` is a folder (names from the environment) or a
    ``.json`` path (CSV/PNG beside it, same stem). Records the paths in ``result.files``."""
    json_path, csv_path, png_path = output_paths(output, default_stem(result))
    atomic_write_text(json_path, json_text(result.as_dict()))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(CSV_FIELDS), lineterminator="\n")
    writer.writeheader()
    for r in result.rows:
        writer.writerow(csv_row(r))
    atomic_write_text(csv_path, buf.getvalue())
    paths = {"json": json_path, "csv": csv_path}
    if plot:
        write_plot(result, png_path)
        paths["png"] = png_path
    result.files = {k: str(v) for k, v in paths.items()}
    return paths
