"""Every table and report the toolkit prints, in one place.

Shared by the command line and the demo pipeline so that both print the same thing; the numbers
come from the library (:mod:`deploy_ran.verify`, :mod:`deploy_ran.bench`, the conversion results).
Each function returns renderables (tables and markup lines) and prints nothing itself. Rich reads
``[...]`` as markup, so every string that comes from a user, a file or a library message goes
through :func:`rich.markup.escape` (a path ``a[1].onnx`` or a shape ``[batch, 3, H, W]`` must show
as written); only this module's own ``[green]``-style tags are markup.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.markup import escape
from rich.table import Table

from deploy_ran.bench import BenchResult
from deploy_ran.verify import VerifyResult

#: Latency columns of the table (JSON and CSV carry every statistic, mean and p95 too); on a
#: console too narrow for them all, the bench table keeps NARROW_STATS.
STATS = ("min", "median", "p90", "p99", "max", "std")
NARROW_STATS = ("median", "p99")


def _e(value: Any) -> str:
    """``escape(str(value))``: user/file-derived text, shown as written."""
    return escape(str(value))


def _shape(shape: Iterable[Any]) -> str:
    return escape("[" + ", ".join(map(str, shape)) + "]")


def _table(title: str, columns: Sequence[str], left: Sequence[str] = ()) -> Table:
    """A left-titled table; ``left`` columns are left-aligned, the others right-aligned."""
    table = Table(title=title, title_justify="left")
    for col in columns:
        table.add_column(col, justify="left" if col in left else "right")
    return table


#: The bench table's layout column, kept narrow (JSON/CSV keep PyTorch's names).
LAYOUT_SHORT = {"channels_last": "NHWC", "NCHW": "NCHW", "NHWC (prefer_nhwc)": "NHWC"}


def _ms(value: float | None) -> str:
    """A latency in ms to four significant digits (1350, 171.1, 3.809): narrow columns, and
    the JSON/CSV keep every digit."""
    if value is None:
        return "-"
    return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def _num(value: float | None, fmt: str = ".3g") -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return "∞" if value > 0 else "-∞"
    return format(value, fmt)


class _FitToWidth:
    """Renders the bench table with every latency column where the console is wide enough, else
    with fewer (:data:`NARROW_STATS`, then the median alone and no layout column, which the
    labels still name), so that no number is ever cut off or pushed off the edge."""

    LEVELS = ((STATS, True), (NARROW_STATS, True), (("median",), False))

    def __init__(self, result: BenchResult) -> None:
        self.result = result

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        for stats, layout in self.LEVELS:
            table = _bench_table(self.result, stats, layout)
            if _min_width(table) <= options.max_width:
                break
        yield table


def _min_width(table: Table) -> int:
    """The narrowest a table renders without cutting a cell of a ``no_wrap`` column: those at
    their widest cell, folding columns at their ``min_width``, plus padding and borders."""
    from rich.text import Text

    total = len(table.columns) + 1  # vertical borders
    for col in table.columns:
        if col.no_wrap:
            cells = [col.header, *col.cells]
            widest = max(
                (Text.from_markup(c).cell_len if isinstance(c, str) else 0) for c in cells
            )
        else:
            widest = col.min_width or 1
        total += widest + 2  # one space of padding each side
    return total


def bench_table(result: BenchResult) -> RenderableType:
    """One row per backend × precision × batch size: latency statistics, throughput, both
    speedups (the caption names their baselines) and each row's layout and timing method.
    Fits the console: fewer latency columns on a narrow one (JSON/CSV keep them all)."""
    return _FitToWidth(result)


def _bench_table(result: BenchResult, stats: Sequence[str], layout: bool = True) -> Table:
    title = (
        f"{_e(result.model)} at {result.image_size}×{result.image_size} on {_e(result.device)}, "
        f"{result.threads} threads"
    )
    timings = {r.timing for r in result.rows if r.status == "ran" and r.latency}
    shared = len(timings) == 1  # one timing method for every row: say it once, in the title
    if shared:
        title += f" · {escape(next(iter(timings)))}"
    table = Table(title=title + " · latency in ms", title_justify="left")
    # Numbers never wrap or get cut: when the table is wider than the console, the label and
    # status columns fold onto more lines instead (rich narrows wrapping columns first).
    table.add_column("backend", overflow="fold", min_width=12)
    table.add_column("batch", justify="right", no_wrap=True)
    for col in stats:
        table.add_column(col, justify="right", no_wrap=True)
    table.add_column("img/s", justify="right", no_wrap=True)
    table.add_column("× fp32", justify="right", no_wrap=True)
    table.add_column("× best", justify="right", no_wrap=True)
    if layout:
        table.add_column("layout", no_wrap=True)
    if not shared:
        table.add_column("timing", overflow="fold")
    table.add_column("status", overflow="fold", min_width=8)
    reasons: list[str] = []
    for r in result.rows:
        if r.status == "ran" and r.latency:
            compiled = f" (compile {r.compile_seconds:.0f} s)" if r.compile_seconds else ""
            table.add_row(
                escape(r.label),
                str(r.batch_size),
                *(_ms(getattr(r.latency, k)) for k in stats),
                _num(r.throughput, ".1f"),
                "-" if r.speedup is None else f"{r.speedup:.2f}×",
                "-" if r.speedup_vs_best_torch is None else f"{r.speedup_vs_best_torch:.2f}×",
                *([escape(LAYOUT_SHORT.get(r.layout or "", r.layout or "-"))] if layout else []),
                *([] if shared else [escape(r.timing)]),
                f"[green]ran[/] ×{r.iterations}{compiled}",
            )
            continue
        reason = r.reason or ""
        if reason not in reasons:
            reasons.append(reason)
        color = "yellow" if r.status == "skipped" else "red"
        table.add_row(
            escape(r.label),
            str(r.batch_size),
            *(["-"] * (len(stats) + 3 + layout + (not shared))),
            f"[{color}]{r.status}[/] ({reasons.index(reason) + 1})",
        )
    lines = [_baseline_line(result)]
    if result.loader:
        ips = result.loader["images_per_s"]
        lines.append(
            "loader, one worker, {}×{} JPEGs: ".format(*result.loader["photo_size"])
            + ", ".join(f"{m} decoding {v:.1f} img/s" for m, v in ips.items())
            + f" (infer decodes: {result.loader['infer_decoding']})"
        )
        for batch, feed in result.loader.get("feeding", {}).items():
            need = feed.get("workers_needed_infer")
            if need is not None:
                lines.append(
                    f"batch {batch}: the fastest row ({escape(feed['fastest_row'])}, "
                    f"{feed['images_per_s']:.1f} img/s) needs {need:.1f} infer loader worker(s)"
                )
    lines += [f"({i}) {escape(t)}" for i, t in enumerate(reasons, 1)]
    table.caption = "\n".join(lines)
    table.caption_justify = "left"
    return table


def _baseline_line(result: BenchResult) -> str:
    """What the two speedup columns are measured against, batch size by batch size."""
    base = result.baselines()
    fp32 = sorted({b["torch_fp32"] for b in base.values() if b["torch_fp32"]})
    best = ", ".join(
        f"batch {k}: {escape(v['best_torch'])}" for k, v in base.items() if v["best_torch"]
    )
    return (
        f"× fp32 = vs eager PyTorch FP32 ({escape(', '.join(fp32)) or 'not measured'}); "
        f"× best = vs the fastest PyTorch row of the batch ({best or 'none ran'}); layout NHWC = "
        "channels_last"
    )


def environment_table(result: BenchResult) -> Table:
    """The environment the numbers were measured in, printed with them."""
    env = result.environment
    table = Table(title="Environment", title_justify="left", show_header=False)
    table.add_column("key", style="dim")
    table.add_column("value", overflow="fold")
    keys = (
        "cpu",
        "cpu_count",
        "bench_threads",
        "gpus",
        "cuda",
        "python",
        "torch",
        "onnxruntime",
        "onnxruntime_providers",
        "tensorrt",
        "platform",
    )
    for key in keys:
        if key in env:
            value = env[key]
            table.add_row(key, escape(value if isinstance(value, str) else json.dumps(value)))
    return table


def verify_tables(result: VerifyResult) -> list[Table]:
    """Outputs × metrics, the criteria with pass/fail, and the worst-matching inputs."""
    ref, cand = result.reference, result.candidate
    metrics = Table(
        title=f"{_e(cand['name'])} ({_e(cand['backend'])} {_e(cand['precision'])}) vs "
        f"{_e(ref['name'])} ({_e(ref['backend'])} {_e(ref['precision'])}) on "
        f"{result.inputs['count']} inputs from {escape(str(result.inputs['source']))}",
        title_justify="left",
    )
    for col in (
        "output",
        "shape",
        "max abs",
        "mean abs",
        "rel L2",
        "cosine",
        "PSNR dB",
        "top-1",
        "top-5",
    ):
        metrics.add_column(col, justify="left" if col == "output" else "right")
    for o in result.outputs:
        a = o.agreement
        kind = getattr(o, "kind", "tensor")
        metrics.add_row(
            escape(o.name) + (f" ({kind})" if kind != "tensor" else ""),
            "×".join(map(str, o.shape)),
            _num(a.max_abs),
            _num(a.mean_abs),
            _num(a.rel_l2),
            _num(a.cosine, ".6f"),
            _num(a.psnr, ".1f"),
            ("-" if a.top1 is None else f"{a.top1:.1%}")
            + (f" ({o.near_ties} near-tie)" if getattr(o, "near_ties", None) else ""),
            "-" if a.top5 is None else f"{a.top5:.1%}",
        )
    checks = Table(title=f"Criteria ({_e(result.precision)} candidate)", title_justify="left")
    for col in ("output", "criterion", "value", "limit", "result"):
        checks.add_column(col)
    for c in result.checks:
        checks.add_row(
            escape(c.output),
            escape(c.criterion),
            _num(c.value, ".4g") + (f" ({escape(c.detail)})" if c.detail else ""),
            _num(c.limit, ".4g"),
            "[green]pass[/]" if c.passed else "[red]FAIL[/]",
        )
    worst = Table(title="Worst-matching inputs", title_justify="left")
    for col in ("input", "rel L2", "top-1 ref", "top-1 cand"):
        worst.add_column(col, justify="left" if col == "input" else "right")
    for w in result.worst:
        agree = w.reference_top1 == w.candidate_top1
        worst.add_row(
            escape(w.name),
            _num(w.rel_l2),
            "-" if w.reference_top1 is None else str(w.reference_top1),
            "-"
            if w.candidate_top1 is None
            else (str(w.candidate_top1) if agree else f"[red]{w.candidate_top1}[/]"),
        )
    return [metrics, checks, worst]


# --------------------------------------------------------------------------------------------
# models · doctor · inspect


def _count(value: float | None, unit: float, digits: int = 2) -> str:
    return "-" if value is None else f"{value / unit:.{digits}f}"


def model_rows(specs: Iterable[Any]) -> list[dict[str, Any]]:
    """``models --json``: one dict per model spec."""
    return [
        {
            "name": s.name,
            "family": s.family,
            "input": list(s.input_shape),
            "num_classes": s.num_classes,
            "params": s.params,
            "macs": s.macs,
            "paper_params_m": s.paper_params,
            "paper_macs_g": s.paper_macs,
            "outputs": list(s.outputs),
            "reference": s.reference,
            "reference_url": s.reference_url,
            "description": s.description,
        }
        for s in specs
    ]


def models_report(specs: Iterable[Any]) -> list[RenderableType]:
    """The model zoo: input, parameters and multiply-adds (ours and the paper's), reference."""
    table = Table(title="deploy-ran model zoo", title_justify="left")
    table.add_column("name", style="bold cyan", no_wrap=True)
    table.add_column("family", no_wrap=True)
    table.add_column("input", justify="right", no_wrap=True)
    for col in ("params (M)", "paper (M)", "MACs (G)", "paper (G)"):
        table.add_column(col, justify="right")
    table.add_column("reference")
    for s in specs:
        table.add_row(
            _e(s.name),
            _e(s.family),
            f"{s.image_size}²·{s.num_classes}",
            _count(s.params, 1e6),
            "-" if s.paper_params is None else f"{s.paper_params:.1f}",
            _count(s.macs, 1e9, 3 if s.macs < 1e9 else 2),
            "-" if s.paper_macs is None else f"{s.paper_macs:.1f}",
            _e(s.reference),
        )
    note = (
        "input = image size² · classes; MACs = multiply-adds of convolutions and the classifier "
        "at the default size; `models --json` adds descriptions and links."
    )
    return [table, note]


def doctor_table(env: Mapping[str, Any]) -> Table:
    table = Table(title="deploy-ran doctor", title_justify="left")
    table.add_column("component")
    table.add_column("status", overflow="fold")
    for key, value in env.items():
        table.add_row(_e(key), _e(value if isinstance(value, str) else json.dumps(value)))
    return table


def inspect_report(desc: Any) -> list[RenderableType]:
    """``inspect``: I/O, operators, every Resize, metadata, the static-graph checks."""
    out: list[RenderableType] = [
        f"[bold]{_e(desc.path)}[/]  {desc.size_bytes / 1e6:.1f} MB, IR {desc.ir_version}, opset "
        + ", ".join(f"{_e(d)} {v}" for d, v in desc.opsets.items())
        + f", {desc.parameters / 1e6:.2f} M weights, producer {_e(desc.producer or '-')}"
    ]
    io = _table(
        "Inputs and outputs", ("kind", "name", "dtype", "shape"), ("kind", "name", "dtype", "shape")
    )
    for kind, items in (("input", desc.inputs), ("output", desc.outputs)):
        for t in items:
            io.add_row(kind, _e(t.name), _e(t.dtype), _shape(t.shape))
    ops = _table("Operators", ("op", "count"), ("op",))
    for op, count in desc.graph.op_histogram.most_common():
        ops.add_row(_e(op), str(count))
    out += [io, ops]
    if desc.graph.resizes:
        cols = ("name", "mode", "coordinates", "antialias", "output H×W", "size from", "ok")
        rz = _table("Resize nodes", cols, cols)
        for r in desc.graph.resizes:
            rz.add_row(
                _e(r.name),
                _e(r.mode),
                _e(r.coordinate_transformation_mode),
                str(r.antialias),
                f"{r.output_hw[0]}×{r.output_hw[1]}" if r.output_hw else "not constant",
                _e(r.source),
                "[green]yes[/]" if r.ok else "[red]no[/]",
            )
        out.append(rz)
    if desc.metadata:
        meta = Table(title="Metadata", title_justify="left")
        meta.add_column("key")
        meta.add_column("value", overflow="fold")
        for k, v in desc.metadata.items():
            meta.add_row(_e(k), _e(v))
        out.append(meta)
    if desc.coverage is not None:
        out.append(coverage_table(desc.coverage))
    out += _graph_lines(desc.graph)
    return out


def coverage_table(cov: Any) -> Table:
    """INT8 coverage (exporters.coverage): activation bytes per image by precision, and more."""
    table = _table(
        "INT8 coverage (activation bytes a strongly typed engine writes per image; estimate)",
        ("precision", "MiB per image", "share", "tensors"),
        ("precision",),
    )
    for precision, size in cov.bytes_by_precision.items():
        table.add_row(
            precision.upper(),
            f"{size / 2**20:.3f}",
            f"{cov.share(precision):.1%}",
            str(cov.tensors_by_precision.get(precision, 0)),
        )
    table.caption = (
        f"total {cov.total_bytes / 2**20:.3f} MiB; {cov.float_islands} float island(s); "
        f"{cov.unfoldable_qdq} Q/DQ pair(s) TensorRT cannot fold; "
        f"{cov.dq_fed_fraction():.0%} of BatchNorm/MaxPool/Resize inputs from a DequantizeLinear"
    )
    return table


def _graph_lines(graph: Any) -> list[RenderableType]:
    if graph.ok:
        return ["[green]✓[/] static-graph checks pass"]
    return ["[red]✗ static-graph checks:[/]", *(f"  - {_e(p)}" for p in graph.problems)]


# --------------------------------------------------------------------------------------------
# conversions: export (FP32), FP16, INT8, engine


def check_tables(check: Any | None, what: str, path: Any = None) -> list[RenderableType]:
    """A conversion's check (a VerifyResult) as verify prints it, or why there is none.

    The check ran on the file before it was renamed into place, so the candidate is named by its
    final ``path``; the worst-inputs table is left out (the inputs are seeded random samples).
    """
    if check is None:
        return [f"[yellow]  {escape(what)} check skipped (--skip-parity)[/]"]
    shown = copy.copy(check)
    if check.reference.get("backend") == "torch":
        shown.reference = {**check.reference, "name": "eager PyTorch"}
    if path is not None:
        shown.candidate = {**check.candidate, "name": str(path)}
    metrics, criteria, _worst = verify_tables(shown)
    metrics.title = f"{escape(what)} check: {metrics.title}"
    return [metrics, criteria]


def export_report(result: Any) -> list[RenderableType]:
    """What ``export`` wrote: size, opset, batch, input shape, Resize nodes, parity."""
    batch = "batch" if result.dynamic_batch else result.batch
    batch_txt = "dynamic batch" if result.dynamic_batch else f"static batch {result.batch}"
    out: list[RenderableType] = [
        f"[green]✓[/] wrote [bold]{_e(result.path)}[/] ({result.path.stat().st_size / 1e6:.1f} MB, "
        f"opset {result.opset}, {batch_txt}, input {_e(result.input_name)} "
        f"{_shape([batch, 3, result.image_size, result.image_size])}) in {result.seconds:.1f} s"
    ]
    resizes = result.graph.resizes
    if resizes:
        sizes = sorted({r.output_hw for r in resizes if r.output_hw})
        out.append(
            f"  {len(resizes)} Resize node(s), all bilinear align_corners with constant output "
            f"sizes {', '.join(f'{h}×{w}' for h, w in sizes)}; shapes static except the batch"
        )
    else:
        out.append("  no Resize nodes; shapes static except the batch")
    return out + check_tables(getattr(result, "check", None), "Parity", result.path)


def fp16_report(result: Any) -> list[RenderableType]:
    """What the FP16 conversion wrote: casts, what stayed FP32, the check against its reference."""
    return [
        f"[green]✓[/] wrote [bold]{_e(result.path)}[/] (FP16, {result.size_bytes / 1e6:.1f} MB, "
        f"{result.casts} cast(s) added) in {result.seconds:.1f} s",
        f"  kept in FP32: op types {_e(', '.join(result.keep_fp32) or '-')} "
        f"({len(result.kept_nodes)} node(s) in this graph); graph I/O stays FP32; "
        f"static-graph checks {'pass' if result.graph.ok else 'FAIL'}",
        *check_tables(getattr(result, "check", None), "FP16", result.path),
    ]


def conversion_report(result: Any) -> list[RenderableType]:
    """The reports of the stages a conversion ran (export, FP16, INT8), in that order."""
    stages = ((result.export, export_report), (result.fp16, fp16_report))
    out = [item for stage, report in stages if stage is not None for item in report(stage)]
    return out + (quantize_report(result.int8) if result.int8 is not None else [])


def quantize_report(result: Any) -> list[RenderableType]:
    """The calibrate report: warnings, skipped files, cache, what was quantized, INT8 vs FP32."""
    from calibration.data import BUILTIN_NOTE, SYNTHETIC_NOTE

    out: list[RenderableType] = []
    for warning in result.warnings:
        if warning != BUILTIN_NOTE:
            style = "bold yellow" if warning == SYNTHETIC_NOTE else "yellow"
            out.append(f"[{style}]Warning:[/] {_e(warning)}")
    skipped = result.data.get("skipped") or []
    if skipped:
        out.append(f"[yellow]Skipped {len(skipped)} unreadable file(s):[/]")
        out += [f"  - {_e(i['file'])}: {_e(i['reason'])}" for i in skipped[:10]]
        if len(skipped) > 10:
            out.append(f"  … and {len(skipped) - 10} more (see --json)")
    out.append(f"[cyan]Cache:[/] {_e(result.ranges.cache_note)}")
    kept: dict[str, int] = {}
    for _node, op, why in result.plan.kept_float:
        label = f"{op} (excluded)" if why == "excluded" else op
        kept[label] = kept.get(label, 0) + 1
    groups = result.plan.excluded_groups
    timing = ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items() if k != "total")
    out += [
        f"[green]✓[/] wrote [bold]{_e(result.path)}[/] ({result.size_bytes / 1e6:.1f} MB, from "
        f"{result.source_size_bytes / 1e6:.1f} MB) in {result.seconds['total']:.1f} s: "
        f"{_e(result.method.label())} on {result.ranges.num_images} image(s), "
        f"{result.qdq['int8_weights']} INT8 weight tensors (per-channel), "
        f"{result.qdq['quantize']} activation Q/DQ pairs (per-tensor, zero point 0), "
        f"placement {_e(result.placement)}, float part {result.float_precision.upper()}",
        "  kept in higher precision: "
        + _e(", ".join(f"{n}× {op}" for op, n in kept.items()) or "nothing")
        + (f"; excluded groups: {_e(', '.join(groups))}" if groups else ""),
        f"  time: {timing}",
    ]
    cols = ("output", "relative L2", "cosine", "max abs", "top-1 agreement")
    table = _table(
        f"INT8 vs FP32 (ONNX Runtime CPU, {result.eval_images} of the calibration images)",
        cols,
        ("output",),
    )
    for row in result.agreement:
        table.add_row(
            _e(row.output),
            f"{row.rel_l2:.3e}",
            f"{row.cosine:.5f}",
            f"{row.max_abs:.3e}",
            _pct(row.top1),
        )
    out.append(table)
    if result.coverage is not None:
        out.append(coverage_table(result.coverage))
    if result.sensitivity is not None:
        out += _sensitivity_report(result.sensitivity, result.sensitivity_path)
    return out


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


def _sensitivity_report(report: Any, path: Any) -> list[RenderableType]:
    sens = _table(
        f"Sensitivity: each group quantized alone ({report.eval_images} images, "
        f"{_e(report.method)}); all INT8: relative L2 {report.all_int8.rel_l2:.3e}, top-1 "
        + _pct(report.all_int8.top1),
        ("group", "INT8 convs", "activations", "relative L2", "top-1", "rank"),
        ("group",),
    )
    for g in report.groups:
        sens.add_row(
            _e(g.group),
            str(g.weight_nodes),
            str(g.activations),
            f"{g.rel_l2:.3e}",
            _pct(g.top1),
            str(g.rank),
        )
    out: list[RenderableType] = [sens]
    if report.target_agreement is not None:
        steps = _table(
            f"--exclude auto: target top-1 agreement {report.target_agreement:.2%}",
            ("kept in FP32", "relative L2", "top-1"),
            ("kept in FP32",),
        )
        for step in report.steps:
            steps.add_row(
                _e(", ".join(step.excluded)) or "(nothing: all INT8)",
                f"{step.rel_l2:.3e}",
                _pct(step.top1),
            )
        verdict = "[green]met[/]" if report.met_target else "[red]not met[/]"
        out += [
            steps,
            f"  target {verdict}; kept in FP32: {_e(', '.join(report.excluded) or 'nothing')}",
        ]
    if path:
        out.append(f"  sensitivity report: {_e(path)}")
    return out


def engine_report(result: Any) -> list[RenderableType]:
    """What ``build-engine`` wrote, its warnings and (with --layer-info) the layer precisions."""
    out: list[RenderableType] = [
        f"[green]✓[/] wrote [bold]{_e(result.plan)}[/] ({result.plan.stat().st_size / 1e6:.1f} MB, "
        f"{result.precision.upper()}, TensorRT {_e(result.tensorrt_version)}, {_e(result.gpu['name'])}) "
        f"in {result.seconds:.1f} s; metadata in {_e(result.sidecar)}",
        *(f"[yellow]Warning:[/] {_e(w)}" for w in result.warnings),
    ]
    if result.layer_info is not None:
        table = _table(
            f"Layer precisions ({_e(result.layer_info)})", ("precision", "layers"), ("precision",)
        )
        for name, count in sorted(result.layer_precisions.items(), key=lambda kv: -kv[1]):
            table.add_row(_e(name), str(count))
        out.append(table)
    return out


# --------------------------------------------------------------------------------------------
# visualize · verify / bench / infer summaries


def attention_report(result: Any, output: Any) -> list[RenderableType]:
    """The attention maps ``visualize`` drew: shape per image and value range per map."""
    out: list[RenderableType] = [f"[yellow]Note:[/] {_e(n)}" for n in result.notes]
    table = _table(
        f"Attention maps ({_e(result.backend)}, {result.image_size}×{result.image_size} input)",
        ("output", "shape per image", "min", "max"),
        ("output",),
    )
    for index, amap in enumerate(result.items[0].maps):
        values = [item.maps[index].values for item in result.items]
        table.add_row(
            _e(amap.name),
            _shape(amap.values.shape),
            f"{min(float(v.min()) for v in values):.3g}",
            f"{max(float(v.max()) for v in values):.3g}",
        )
    return out + [table, f"[green]✓[/] wrote [bold]{_e(output)}[/] ({len(result.items)} image(s))"]


def verify_report(result: VerifyResult, output: Any = None) -> list[RenderableType]:
    """verify's tables, notes, skipped images and the verdict."""
    out: list[RenderableType] = [*verify_tables(result)]
    out += [f"[yellow]note:[/] {_e(n)}" for n in result.notes]
    out += [f"[yellow]skipped:[/] {_e(s['error'])}" for s in result.inputs["skipped"][:5]]
    if result.passed:
        out.append(f"[green]✓ PASS[/] ({result.seconds:.1f} s)")
    else:
        failed = ", ".join(f"{c.output} {c.criterion}" for c in result.failed_checks)
        out.append(f"[red]✗ FAIL[/]: {_e(failed)}")
    if output is not None:
        out.append(f"wrote {_e(output)}")
    return out


def bench_report(result: BenchResult) -> list[RenderableType]:
    return [
        bench_table(result),
        environment_table(result),
        *(f"[yellow]note:[/] {_e(n)}" for n in result.notes),
        *(f"wrote {_e(kind.upper())}: {_e(path)}" for kind, path in result.files.items()),
    ]


def infer_summary(result: Any) -> str:
    """One line: images, speed, and where the time went (loader workers, or Ray workers)."""
    how = (
        f"{result.workers} Ray workers"
        if "ray" in (getattr(result, "runner", None) or {})
        else f"{result.workers} loader workers, backend busy {result.backend_busy:.0%} of the time, "
        f"{result.bound}-bound"
    )
    return (
        f"[green]✓[/] {result.processed} image(s) in {result.seconds:.1f} s "
        f"({result.images_per_s:.1f} img/s, batch {result.batch_size}, {how}); {result.failed} "
        f"unreadable; {result.already_done} already in the output; wrote {_e(result.output)}"
    )


def triton_summary(result: Any) -> list[str]:
    """What ``triton-repo`` wrote, its notes and how to serve and check it."""
    lines = [
        f"[green]✓[/] wrote [bold]{escape(str(result.repository / m))}[/]" for m in result.models
    ]
    lines += [f"[yellow]Note:[/] {escape(note)}" for note in result.notes]
    lines.append(
        f"Serve with tritonserver --model-repository={escape(str(result.repository.resolve()))} "
        f"(README: Triton); check it: python cli.py verify MODEL "
        f"triton://HOST:8000/{escape(result.models[0])}"
    )
    return lines
