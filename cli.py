"""deploy-ran command line: ``python cli.py COMMAND`` or the installed ``deploy-ran COMMAND``.

Argument parsing, progress and tables only; the work happens in the library (``deploy_ran``,
``exporters``, ``calibration``), which a Python user can call directly.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from deploy_ran.errors import DeployRanError

app = typer.Typer(
    name="deploy-ran",
    help="Take attention CNNs from PyTorch to ONNX, ONNX Runtime and TensorRT.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
# Piped output (CI logs, `| less`) gets wide tables instead of rich's 80-column fallback.
console = Console(width=None if sys.stdout.isatty() else 140)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 140)


def _print_error(exc: DeployRanError) -> None:
    err_console.print(f"[bold red]Error:[/] {exc.message}", highlight=False)
    if exc.hint:
        err_console.print(f"[yellow]Hint:[/] {exc.hint}", highlight=False)


def command(*args: Any, **kwargs: Any):
    """``app.command`` that turns a :class:`DeployRanError` into a message and an exit code."""

    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*a: Any, **k: Any):
            try:
                return fn(*a, **k)
            except DeployRanError as exc:
                _print_error(exc)
                raise typer.Exit(exc.exit_code) from None

        return app.command(*args, **kwargs)(wrapper)

    return decorate


def _model_options(
    attention: str | None,
    attention_residual: bool | None,
    mask: str | None,
    variant: str | None,
    attention_maps: bool = False,
) -> dict[str, Any]:
    """Options given on the command line (unset ones are left to the model's defaults)."""
    options = {
        "attention": attention,
        "attention_residual": attention_residual,
        "mask": mask,
        "variant": variant,
    }
    options = {k: v for k, v in options.items() if v is not None}
    if attention_maps:
        options["return_attention"] = True
    return options


def _fmt_count(value: float | None, unit: float, digits: int = 2) -> str:
    return "-" if value is None else f"{value / unit:.{digits}f}"


# --------------------------------------------------------------------------------------------
# models


@command("models")
def models_cmd(
    pattern: Annotated[str, typer.Argument(help="Shell-style filter, e.g. 'ran*_cifar'.")] = "*",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List the model zoo: input size, parameters, multiply-adds, reference."""
    from deploy_ran.models import get_spec, list_models

    names = list_models(pattern)
    if not names:
        raise DeployRanError(
            f"No model matches {pattern!r}.", hint="Run `python cli.py models` to list every model."
        )
    specs = [get_spec(n) for n in names]
    if as_json:
        rows = [
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
        print(json.dumps(rows, indent=2))
        return
    table = Table(title="deploy-ran model zoo", title_justify="left")
    for col, kw in [
        ("name", {"style": "bold cyan", "no_wrap": True}),
        ("family", {"no_wrap": True}),
        ("input", {"justify": "right", "no_wrap": True}),
        ("params (M)", {"justify": "right"}),
        ("paper (M)", {"justify": "right"}),
        ("MACs (G)", {"justify": "right"}),
        ("paper (G)", {"justify": "right"}),
        ("reference", {}),
    ]:
        table.add_column(col, **kw)
    for s in specs:
        table.add_row(
            s.name,
            s.family,
            f"{s.image_size}²·{s.num_classes}",
            _fmt_count(s.params, 1e6),
            "-" if s.paper_params is None else f"{s.paper_params:.1f}",
            _fmt_count(s.macs, 1e9, 3 if s.macs < 1e9 else 2),
            "-" if s.paper_macs is None else f"{s.paper_macs:.1f}",
            s.reference,
        )
    console.print(table)
    console.print(
        "input = image size² · classes; MACs = multiply-adds of convolutions and the classifier "
        "at the default size; `models --json` adds descriptions and links."
    )


# --------------------------------------------------------------------------------------------
# export


@command("export")
def export_cmd(
    name: Annotated[str, typer.Argument(help="Model name (see `models`).")],
    checkpoint: Annotated[
        Optional[Path], typer.Option(help="Weights (.pt/.pth state_dict).")
    ] = None,
    image_size: Annotated[
        Optional[int], typer.Option(help="Input H=W; default from the model spec.")
    ] = None,
    num_classes: Annotated[
        Optional[int], typer.Option(help="Classifier size; default from the checkpoint or spec.")
    ] = None,
    batch: Annotated[
        int, typer.Option(help="Example batch; the fixed batch with --static-batch.")
    ] = 1,
    static_batch: Annotated[
        bool, typer.Option("--static-batch", help="Fixed batch (no Shape ops in the graph).")
    ] = False,
    opset: Annotated[int, typer.Option(help="ONNX opset.")] = 18,
    no_simplify: Annotated[bool, typer.Option("--no-simplify", help="Skip onnxslim.")] = False,
    output: Annotated[
        Optional[Path], typer.Option("--output", "-o", help="Output path; default NAME.onnx.")
    ] = None,
    attention: Annotated[
        Optional[str], typer.Option(help="RAN attention: mixed | channel | spatial.")
    ] = None,
    attention_residual: Annotated[
        Optional[bool],
        typer.Option(
            "--arl/--nal", help="RAN fusion: (1+M)·T (ARL) or M·T (NAL).", show_default=False
        ),
    ] = None,
    mask: Annotated[
        Optional[str], typer.Option(help="RAN mask: encoder_decoder | local_conv.")
    ] = None,
    variant: Annotated[Optional[str], typer.Option(help="RAN arithmetic: paper | port.")] = None,
    attention_maps: Annotated[
        bool, typer.Option("--attention-maps", help="Also output every attention map.")
    ] = False,
    outputs: Annotated[
        Optional[str],
        typer.Option(
            help="ABN outputs, comma-separated, in order: logits, attention_logits, attention."
        ),
    ] = None,
    skip_parity: Annotated[
        bool,
        typer.Option("--skip-parity", help="Do not compare with eager PyTorch (not recommended)."),
    ] = False,
    precision: Annotated[
        str,
        typer.Option(
            help="fp32, or fp16 (also writes the FP32 file; NAME may be an FP32 .onnx file). "
            "INT8: see `calibrate`."
        ),
    ] = "fp32",
    keep_fp32: Annotated[
        Optional[list[str]],
        typer.Option(
            "--keep-fp32",
            help="FP16: op type to keep in FP32 (repeatable; added to the defaults).",
        ),
    ] = None,
    no_default_keep_fp32: Annotated[
        bool,
        typer.Option(
            "--no-default-keep-fp32",
            help="FP16: do not keep the default ops (reductions, Sqrt, Pow) in FP32.",
        ),
    ] = False,
) -> None:
    """Export a model to a checked ONNX file (FP32 or FP16) with static-size bilinear upsampling."""
    from exporters.onnx import PARITY_REL_L2, export_onnx

    options = _model_options(attention, attention_residual, mask, variant, attention_maps)
    if outputs is not None:
        from deploy_ran.models.abn import parse_outputs

        options["outputs"] = parse_outputs(outputs)
    if precision != "fp32":
        _export_reduced_precision(
            name,
            precision,
            output,
            keep_fp32=keep_fp32 or [],
            default_keep=not no_default_keep_fp32,
            check=not skip_parity,
            export_kwargs=dict(
                checkpoint=checkpoint,
                image_size=image_size,
                num_classes=num_classes,
                batch=batch,
                static_batch=static_batch,
                opset=opset,
                simplify_graph=not no_simplify,
                check_parity=not skip_parity,
                **options,
            ),
        )
        return
    with console.status(f"Exporting {name}…") as status:
        result = export_onnx(
            name,
            output,
            checkpoint=checkpoint,
            image_size=image_size,
            num_classes=num_classes,
            batch=batch,
            static_batch=static_batch,
            opset=opset,
            simplify_graph=not no_simplify,
            check_parity=not skip_parity,
            progress=lambda msg: status.update(f"Exporting {name}: {msg}…"),
            **options,
        )
    batch_txt = "dynamic batch" if result.dynamic_batch else f"static batch {result.batch}"
    console.print(
        f"[green]✓[/] wrote [bold]{result.path}[/] ({result.path.stat().st_size / 1e6:.1f} MB, "
        f"opset {result.opset}, {batch_txt}, input {result.input_name} "
        + escape(
            f"[{'batch' if result.dynamic_batch else result.batch}, 3, {result.image_size}, {result.image_size}]"
        )
        + f") in {result.seconds:.1f} s"
    )
    resizes = result.graph.resizes
    sizes = sorted({r.output_hw for r in resizes if r.output_hw})
    if resizes:
        console.print(
            f"  {len(resizes)} Resize node(s), all bilinear align_corners with constant output sizes "
            f"{', '.join(f'{h}×{w}' for h, w in sizes)}; shapes static except the batch"
        )
    else:
        console.print("  no Resize nodes; shapes static except the batch")
    if result.parity:
        table = Table(title="ONNX Runtime (CPU) vs eager PyTorch", title_justify="left")
        for col in ("output", "batch", "max abs", "relative L2", f"limit {PARITY_REL_L2:.0e}"):
            table.add_column(col, justify="right" if col != "output" else "left")
        for c in result.parity:
            table.add_row(
                c.output,
                str(c.batch),
                f"{c.max_abs:.2e}",
                f"{c.rel_l2:.2e}",
                "[green]pass[/]" if c.ok else "[red]fail[/]",
            )
        console.print(table)
    else:
        console.print("[yellow]  parity check skipped (--skip-parity)[/]")


# --------------------------------------------------------------------------------------------
# inspect


@command("inspect")
def inspect_cmd(
    path: Annotated[Path, typer.Argument(help="An ONNX file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Describe an ONNX file: I/O, opset, op histogram, every Resize, metadata."""
    from exporters.inspect import inspect_onnx

    desc = inspect_onnx(path)
    if as_json:
        print(json.dumps(desc.as_dict(), indent=2, default=str))
        return
    console.print(
        f"[bold]{desc.path}[/]  {desc.size_bytes / 1e6:.1f} MB, IR {desc.ir_version}, opset "
        + ", ".join(f"{d} {v}" for d, v in desc.opsets.items())
        + f", {desc.parameters / 1e6:.2f} M weights, producer {desc.producer or '-'}"
    )
    io_table = Table(title="Inputs and outputs", title_justify="left")
    for col in ("kind", "name", "dtype", "shape"):
        io_table.add_column(col)
    for kind, items in (("input", desc.inputs), ("output", desc.outputs)):
        for t in items:
            io_table.add_row(
                kind, t.name, t.dtype, escape("[" + ", ".join(map(str, t.shape)) + "]")
            )
    console.print(io_table)
    ops = Table(title="Operators", title_justify="left")
    ops.add_column("op")
    ops.add_column("count", justify="right")
    for op, count in desc.graph.op_histogram.most_common():
        ops.add_row(op, str(count))
    console.print(ops)
    if desc.graph.resizes:
        rz = Table(title="Resize nodes", title_justify="left")
        for col in ("name", "mode", "coordinates", "antialias", "output H×W", "size from", "ok"):
            rz.add_column(col)
        for r in desc.graph.resizes:
            rz.add_row(
                r.name,
                r.mode,
                r.coordinate_transformation_mode,
                str(r.antialias),
                f"{r.output_hw[0]}×{r.output_hw[1]}" if r.output_hw else "not constant",
                r.source,
                "[green]yes[/]" if r.ok else "[red]no[/]",
            )
        console.print(rz)
    if desc.metadata:
        meta = Table(title="Metadata", title_justify="left")
        meta.add_column("key")
        meta.add_column("value", overflow="fold")
        for k, v in desc.metadata.items():
            meta.add_row(k, escape(v))
        console.print(meta)
    if desc.graph.ok:
        console.print("[green]✓[/] static-graph checks pass")
    else:
        console.print("[red]✗ static-graph checks:[/]")
        for p in desc.graph.problems:
            console.print(f"  - {p}", highlight=False)


# --------------------------------------------------------------------------------------------
# precision: export --precision fp16, calibrate (INT8 Q/DQ)


def _export_reduced_precision(
    name: str,
    precision: str,
    output: Path | None,
    *,
    keep_fp32: list[str],
    default_keep: bool,
    check: bool,
    export_kwargs: dict[str, Any],
) -> None:
    """``export --precision fp16``: from a model name (FP32 + FP16) or an FP32 .onnx file."""
    from exporters.fp16 import DEFAULT_KEEP_FP32, convert_to_fp16, export_fp16

    if precision == "int8":
        raise DeployRanError(
            "INT8 needs calibration data, so it has its own command.",
            hint=f"Run `python cli.py export {name}` then `python cli.py calibrate {name}.onnx "
            "--data FOLDER`.",
        )
    if precision != "fp16":
        raise DeployRanError(
            f"Unknown --precision {precision!r}.", hint="Choose fp32 or fp16 (INT8: `calibrate`)."
        )
    ops = [*(DEFAULT_KEEP_FP32 if default_keep else []), *keep_fp32]
    ops = list(dict.fromkeys(ops))
    if name.endswith(".onnx") and Path(name).exists():
        with console.status(f"Converting {name} to FP16…") as status:
            result = convert_to_fp16(
                name,
                output,
                keep_fp32=ops,
                check=check,
                progress=lambda msg: status.update(f"FP16: {msg}…"),
            )
    else:
        with console.status(f"Exporting {name}…") as status:
            exported, result = export_fp16(
                name,
                output,
                keep_fp32=ops,
                check=check,
                progress=lambda msg: status.update(f"Exporting {name}: {msg}…"),
                **export_kwargs,
            )
        console.print(
            f"[green]✓[/] wrote [bold]{exported.path}[/] (FP32, "
            f"{exported.path.stat().st_size / 1e6:.1f} MB; worst relative L2 vs eager PyTorch "
            f"{max(c.rel_l2 for c in exported.parity):.2e})"
            if exported.parity
            else f"[green]✓[/] wrote [bold]{exported.path}[/] (FP32, parity skipped)"
        )
    console.print(
        f"[green]✓[/] wrote [bold]{result.path}[/] (FP16, {result.size_bytes / 1e6:.1f} MB, "
        f"{result.casts} cast(s) added) in {result.seconds:.1f} s"
    )
    console.print(
        f"  kept in FP32: op types {', '.join(result.keep_fp32) or '-'} "
        f"({len(result.kept_nodes)} node(s) in this graph); graph I/O stays FP32; "
        f"static-graph checks {'pass' if result.graph.ok else 'FAIL'}"
    )
    if result.checks:
        table = Table(title=f"FP16 (ONNX Runtime CPU) vs {result.reference}", title_justify="left")
        for col in ("output", "batch", "max abs", "relative L2", "top-1", "limit"):
            table.add_column(col, justify="right" if col != "output" else "left")
        for c in result.checks:
            table.add_row(
                c.output,
                str(c.batch),
                f"{c.max_abs:.2e}",
                f"{c.rel_l2:.2e}",
                "-" if c.top1 is None else f"{c.top1:.0%}",
                f"[green]pass[/] ({c.limit:.0e})" if c.ok else "[red]fail[/]",
            )
        console.print(table)
    else:
        console.print("[yellow]  FP16 check skipped (--skip-parity)[/]")


class _PhaseProgress:
    """A rich progress bar per calibration phase, created when the phase first reports."""

    LABELS = {
        "load": "decode + preprocess images",
        "collect": "calibrate (ONNX Runtime)",
        "thresholds": "entropy thresholds",
        "sensitivity": "sensitivity (one group at a time)",
        "auto-exclude": "auto-exclude",
        "check": "INT8 vs FP32 check",
    }

    def __init__(self, progress) -> None:
        self.progress = progress
        self.tasks: dict[str, Any] = {}

    def __call__(self, phase: str, done: int, total: int) -> None:
        if phase not in self.tasks:
            self.tasks[phase] = self.progress.add_task(self.LABELS.get(phase, phase), total=total)
        self.progress.update(self.tasks[phase], completed=done, total=total)


@command("calibrate")
def calibrate_cmd(
    model: Annotated[Path, typer.Argument(help="FP32 ONNX file (from `export`).")],
    data: Annotated[
        Optional[str],
        typer.Option(
            help="Image folder / glob / .txt list, preprocessed .npy/.npz (file.npz:key), or "
            "'synthetic'. Default: the built-in sample photos (demo only).",
        ),
    ] = None,
    method: Annotated[
        str, typer.Option(help="percentile | entropy | minmax (see the README's digits table).")
    ] = "percentile",
    percentile: Annotated[float, typer.Option(help="Percentile for --method percentile.")] = 99.99,
    bins: Annotated[
        Optional[int],
        typer.Option(
            help="Histogram bins over |x| (default 2048, as TensorRT's entropy calibrator)."
        ),
    ] = None,
    num_images: Annotated[int, typer.Option(help="Calibration images (seeded subset).")] = 512,
    batch: Annotated[int, typer.Option(help="Images per ONNX Runtime run.")] = 8,
    seed: Annotated[int, typer.Option(help="Seed of the subset and of synthetic data.")] = 0,
    exclude: Annotated[
        Optional[list[str]],
        typer.Option(
            help="Keep in FP32: node or group name patterns (stage3.*, stage1.module1, "
            "node_conv2d_12; repeatable or comma-separated), or 'auto'.",
        ),
    ] = None,
    target_agreement: Annotated[
        float, typer.Option(help="With --exclude auto: top-1 agreement with FP32 to reach.")
    ] = 0.99,
    include_attention: Annotated[
        bool,
        typer.Option(
            "--include-attention",
            help="Also quantize Sigmoid/Softmax/Resize and the attention-gate Mul inputs.",
        ),
    ] = False,
    sensitivity: Annotated[
        bool,
        typer.Option("--sensitivity", help="Quantize one group at a time: table + JSON."),
    ] = False,
    eval_images: Annotated[
        int,
        typer.Option(help="Calibration images (the first of the subset) for the FP32 comparisons."),
    ] = 200,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Neither read nor write the range cache.")
    ] = False,
    output: Annotated[
        Optional[Path], typer.Option("--output", "-o", help="Default MODEL.int8.onnx.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Calibrate an FP32 ONNX file and write an INT8 Q/DQ ONNX file (TensorRT's explicit INT8)."""
    from rich.panel import Panel
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from calibration.data import BUILTIN_NOTE
    from calibration.quantize import quantize_int8

    if data is None and not as_json:
        console.print(Panel(BUILTIN_NOTE, title="built-in calibration sample", style="yellow"))
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console if as_json else console,
        transient=as_json,
    ) as bar:
        result = quantize_int8(
            model,
            output,
            data=data,
            method=method,
            percentile=percentile,
            bins=bins,
            num_images=num_images,
            batch=batch,
            seed=seed,
            exclude=exclude or [],
            include_attention=include_attention,
            sensitivity=sensitivity,
            target_agreement=target_agreement,
            eval_images=eval_images,
            use_cache=not no_cache,
            progress=_PhaseProgress(bar),
        )
    if as_json:
        print(json.dumps(result.as_dict(), indent=2, default=str))
        return
    _print_quantize_result(result)


def _print_quantize_result(result) -> None:
    """The calibrate report: warnings, skipped files, cache, what was quantized, INT8 vs FP32."""
    from calibration.data import BUILTIN_NOTE, SYNTHETIC_NOTE

    for warning in result.warnings:
        if warning in (BUILTIN_NOTE,):
            continue
        style = "bold yellow" if warning == SYNTHETIC_NOTE else "yellow"
        console.print(f"[{style}]Warning:[/] {escape(warning)}", highlight=False)
    skipped = result.data.get("skipped") or []
    if skipped:
        console.print(f"[yellow]Skipped {len(skipped)} unreadable file(s):[/]")
        for item in skipped[:10]:
            console.print(f"  - {escape(item['file'])}: {escape(item['reason'])}", highlight=False)
        if len(skipped) > 10:
            console.print(f"  … and {len(skipped) - 10} more (see --json)")
    console.print(f"[cyan]Cache:[/] {escape(result.ranges.cache_note)}", highlight=False)
    kept: dict[str, int] = {}
    for _node, op, why in result.plan.kept_float:
        label = f"{op} (excluded)" if why == "excluded" else op
        kept[label] = kept.get(label, 0) + 1
    console.print(
        f"[green]✓[/] wrote [bold]{result.path}[/] ({result.size_bytes / 1e6:.1f} MB, from "
        f"{result.source_size_bytes / 1e6:.1f} MB) in {result.seconds['total']:.1f} s: "
        f"{result.method.label()} on {result.ranges.num_images} image(s), "
        f"{result.qdq['int8_weights']} INT8 weight tensors (per-channel), "
        f"{result.qdq['quantize']} activation Q/DQ pairs (per-tensor, zero point 0)"
    )
    console.print(
        "  kept in higher precision: "
        + (", ".join(f"{n}× {op}" for op, n in kept.items()) or "nothing")
        + (
            f"; excluded groups: {', '.join(result.plan.excluded_groups)}"
            if result.plan.excluded_groups
            else ""
        )
    )
    timing = ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items() if k != "total")
    console.print(f"  time: {timing}")
    table = Table(
        title=f"INT8 vs FP32 (ONNX Runtime CPU, {result.eval_images} of the calibration images)",
        title_justify="left",
    )
    for col in ("output", "relative L2", "cosine", "max abs", "top-1 agreement"):
        table.add_column(col, justify="right" if col != "output" else "left")
    for row in result.agreement:
        table.add_row(
            row.output,
            f"{row.rel_l2:.3e}",
            f"{row.cosine:.5f}",
            f"{row.max_abs:.3e}",
            "-" if row.top1 is None else f"{row.top1:.2%}",
        )
    console.print(table)
    report = result.sensitivity
    if report is not None:
        sens = Table(
            title=f"Sensitivity: each group quantized alone ({report.eval_images} images, "
            f"{report.method}); all INT8: relative L2 {report.all_int8.rel_l2:.3e}, top-1 "
            + ("-" if report.all_int8.top1 is None else f"{report.all_int8.top1:.2%}"),
            title_justify="left",
        )
        for col in ("group", "INT8 convs", "activations", "relative L2", "top-1", "rank"):
            sens.add_column(col, justify="right" if col != "group" else "left")
        for g in report.groups:
            sens.add_row(
                g.group,
                str(g.weight_nodes),
                str(g.activations),
                f"{g.rel_l2:.3e}",
                "-" if g.top1 is None else f"{g.top1:.2%}",
                str(g.rank),
            )
        console.print(sens)
        if report.target_agreement is not None:
            steps = Table(
                title=f"--exclude auto: target top-1 agreement {report.target_agreement:.2%}",
                title_justify="left",
            )
            for col in ("kept in FP32", "relative L2", "top-1"):
                steps.add_column(col, justify="right" if col != "kept in FP32" else "left")
            for step in report.steps:
                steps.add_row(
                    ", ".join(step.excluded) or "(nothing: all INT8)",
                    f"{step.rel_l2:.3e}",
                    "-" if step.top1 is None else f"{step.top1:.2%}",
                )
            console.print(steps)
            verdict = "[green]met[/]" if report.met_target else "[red]not met[/]"
            console.print(
                f"  target {verdict}; kept in FP32: {', '.join(report.excluded) or 'nothing'}"
            )
        if result.sensitivity_path:
            console.print(f"  sensitivity report: {result.sensitivity_path}")


# --------------------------------------------------------------------------------------------
# demo: the main job on a built-in default


@command("demo")
def demo_cmd(
    model: Annotated[str, typer.Option(help="Model to run the pipeline on.")] = "ran92",
    image_size: Annotated[
        Optional[int], typer.Option(help="Input H=W; default from the model spec.")
    ] = None,
    workdir: Annotated[Path, typer.Option(help="Folder for the artifacts and reports.")] = Path(
        "demo_out"
    ),
    runs: Annotated[
        int, typer.Option(help="Timed runs per backend for the latency comparison.")
    ] = 10,
    calibration_images: Annotated[
        int, typer.Option(help="Built-in calibration images for INT8 (a demo: 500+ in real use).")
    ] = 64,
) -> None:
    """The main job on a built-in default: export → FP16 → INT8 → verify → bench → engine (CPU)."""
    from deploy_ran.pipeline import run_demo

    workdir.mkdir(parents=True, exist_ok=True)
    run_demo(
        model,
        workdir,
        image_size=image_size,
        runs=runs,
        calibration_images=calibration_images,
        console=console,
    )


# --------------------------------------------------------------------------------------------
# visualize: attention maps overlaid on images


@command("visualize")
def visualize_cmd(
    source: Annotated[
        str, typer.Argument(help="Model name, or an ONNX file exported with --attention-maps.")
    ],
    images: Annotated[
        list[str], typer.Argument(help="Image files, folders, globs or .txt lists of paths.")
    ],
    checkpoint: Annotated[
        Optional[Path], typer.Option(help="Weights for a model name (.pt/.pth state_dict).")
    ] = None,
    image_size: Annotated[
        Optional[int], typer.Option(help="Input H=W for a model name; default from its spec.")
    ] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="PNG grid to write.")] = Path(
        "attention.png"
    ),
) -> None:
    """Overlay every attention map on the input images and write a PNG grid."""
    from deploy_ran.visualize import visualize

    with console.status(f"Computing attention maps of {source}…"):
        result = visualize(source, images, output, checkpoint=checkpoint, image_size=image_size)
    for note in result.notes:
        console.print(f"[yellow]Note:[/] {note}", highlight=False)
    table = Table(
        title=f"Attention maps ({result.backend}, {result.image_size}×{result.image_size} input)",
        title_justify="left",
    )
    for col in ("output", "shape per image", "min", "max"):
        table.add_column(col, justify="left" if col == "output" else "right")
    for index, amap in enumerate(result.items[0].maps):
        values = [item.maps[index].values for item in result.items]
        table.add_row(
            amap.name,
            escape("[" + ", ".join(map(str, amap.values.shape)) + "]"),
            f"{min(float(v.min()) for v in values):.3g}",
            f"{max(float(v.max()) for v in values):.3g}",
        )
    console.print(table)
    console.print(f"[green]✓[/] wrote [bold]{output}[/] ({len(result.items)} image(s))")


# verify · bench · infer: runners on any backend


def _split_list(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def _int_list(value: str, option: str) -> list[int]:
    try:
        return [int(v) for v in _split_list(value)]
    except ValueError:
        raise DeployRanError(
            f"{option} takes comma-separated integers, got {value!r}.",
            hint=f"e.g. {option} 1,8,32",
        ) from None


@command("verify")
def verify_cmd(
    reference: Annotated[str, typer.Argument(help="Model name, .onnx file or engine.")],
    candidate: Annotated[str, typer.Argument(help="Model name, .onnx file or engine.")],
    data: Annotated[
        Optional[Path],
        typer.Option(help="Images (folder, glob, .txt list) or a .npy/.npz; default: random."),
    ] = None,
    num_images: Annotated[
        Optional[int], typer.Option("--num-images", "-n", help="Inputs to use (random: 16).")
    ] = None,
    batch: Annotated[int, typer.Option(help="Batch size for running both sides.")] = 8,
    seed: Annotated[int, typer.Option(help="Seed of the random inputs.")] = 0,
    checkpoint: Annotated[
        Optional[Path], typer.Option(help="Weights for a model-name side (both, by default).")
    ] = None,
    candidate_checkpoint: Annotated[
        Optional[Path], typer.Option(help="Other weights for a model-name candidate.")
    ] = None,
    reference_precision: Annotated[
        Optional[str], typer.Option(help="PyTorch side: fp32 | fp16 | autocast.")
    ] = None,
    candidate_precision: Annotated[
        Optional[str], typer.Option(help="PyTorch side: fp32 | fp16 | autocast.")
    ] = None,
    image_size: Annotated[
        Optional[int], typer.Option(help="Input size of a model-name side (default: the file's).")
    ] = None,
    device: Annotated[str, typer.Option(help="cpu | cuda[:N].")] = "cpu",
    provider: Annotated[
        Optional[str], typer.Option(help="ONNX Runtime providers: cpu, cuda, tensorrt.")
    ] = None,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads per backend.")] = None,
    max_rel_l2: Annotated[Optional[float], typer.Option(help="Override: relative L2 ≤.")] = None,
    min_cosine: Annotated[Optional[float], typer.Option(help="Override: cosine ≥.")] = None,
    min_top1: Annotated[
        Optional[float], typer.Option(help="Override: top-1 agreement ≥ (0-1).")
    ] = None,
    min_top5: Annotated[Optional[float], typer.Option(help="Add: top-5 agreement ≥ (0-1).")] = None,
    min_psnr: Annotated[Optional[float], typer.Option(help="Add: PSNR ≥ (dB).")] = None,
    max_abs: Annotated[Optional[float], typer.Option(help="Add: max abs error ≤.")] = None,
    atol: Annotated[
        Optional[float], typer.Option(help="Add: |c-r| ≤ atol + rtol·|r| everywhere.")
    ] = None,
    rtol: Annotated[
        Optional[float], typer.Option(help="Relative part of the --atol check.")
    ] = None,
    show_worst: Annotated[int, typer.Option(help="Worst-matching inputs to name.")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    output: Annotated[
        Optional[Path], typer.Option("--output", "-o", help="Write JSON here.")
    ] = None,
) -> None:
    """Compare a candidate with a reference on the same inputs; exit code 1 when it fails."""
    from deploy_ran.fileio import atomic_write_text, check_writable
    from deploy_ran.tables import verify_tables
    from deploy_ran.verify import verify

    if output is not None:
        check_writable(output)
    criteria = {
        "max_rel_l2": max_rel_l2,
        "min_cosine": min_cosine,
        "min_top1": min_top1,
        "min_top5": min_top5,
        "min_psnr": min_psnr,
        "max_abs": max_abs,
        "atol": atol,
        "rtol": rtol,
    }
    with console.status("verifying…") as status:
        result = verify(
            reference,
            candidate,
            data=data,
            num_inputs=num_images,
            batch_size=batch,
            seed=seed,
            criteria=criteria,
            device=device,
            checkpoint=checkpoint,
            candidate_checkpoint=candidate_checkpoint,
            reference_precision=reference_precision,
            candidate_precision=candidate_precision,
            providers=provider,
            threads=threads,
            image_size=image_size,
            show_worst=show_worst,
            progress=lambda side, done, total: status.update(f"verifying: {side} {done}/{total}…"),
        )
    if output is not None:
        atomic_write_text(output, json.dumps(result.as_dict(), indent=2) + "\n")
    if as_json:
        print(json.dumps(result.as_dict(), indent=2))
    else:
        for table in verify_tables(result):
            console.print(table)
        for note in result.notes:
            console.print(f"[yellow]note:[/] {escape(note)}")
        for skipped in result.inputs["skipped"][:5]:
            console.print(f"[yellow]skipped:[/] {escape(skipped['error'])}")
        if result.passed:
            console.print(f"[green]✓ PASS[/] ({result.seconds:.1f} s)")
        else:
            failed = ", ".join(f"{c.output} {c.criterion}" for c in result.failed_checks)
            console.print(f"[red]✗ FAIL[/]: {escape(failed)}")
        if output is not None:
            console.print(f"wrote {output}")
    if not result.passed:
        raise typer.Exit(1)


@command("bench")
def bench_cmd(
    model: Annotated[str, typer.Argument(help="Model name (see `models`).")],
    backends: Annotated[
        Optional[str], typer.Option(help="Comma-separated: torch,ort,trt (default torch,ort).")
    ] = None,
    artifacts: Annotated[
        Optional[list[str]],
        typer.Option(
            help="Existing .onnx (fp32/fp16/int8) or .plan files; repeat or comma-separate."
        ),
    ] = None,
    batch_sizes: Annotated[str, typer.Option(help="Comma-separated batch sizes.")] = "1",
    warmup: Annotated[float, typer.Option(help="Warm-up seconds per row.")] = 1.0,
    duration: Annotated[float, typer.Option(help="Timed seconds per row.")] = 5.0,
    iterations: Annotated[
        Optional[int], typer.Option(help="Timed runs per row (instead of --duration).")
    ] = None,
    device: Annotated[str, typer.Option(help="cpu | cuda[:N].")] = "cpu",
    copies: Annotated[
        bool,
        typer.Option("--copies/--no-copies", help="GPU: include host↔device copies in the time."),
    ] = True,
    cuda_graphs: Annotated[
        bool, typer.Option("--cuda-graphs", help="Capture CUDA graphs where the backend can.")
    ] = False,
    interleave: Annotated[
        bool,
        typer.Option("--interleave", help="Backends take turns run by run (shared machines)."),
    ] = False,
    threads: Annotated[
        Optional[int], typer.Option(help="CPU threads for every backend (default: all cores).")
    ] = None,
    torch_precisions: Annotated[
        str, typer.Option(help="PyTorch rows: fp32,fp16,autocast.")
    ] = "fp32",
    image_size: Annotated[Optional[int], typer.Option(help="Input H=W.")] = None,
    checkpoint: Annotated[Optional[Path], typer.Option(help="Weights (.pt/.pth).")] = None,
    workdir: Annotated[
        Optional[Path], typer.Option(help="Keep the FP32 ONNX bench exports here.")
    ] = None,
    output: Annotated[
        Path,
        typer.Option("--output", "-o", help="Folder (names from the environment) or FILE.json."),
    ] = Path("bench_results"),
    no_plot: Annotated[bool, typer.Option("--no-plot", help="Skip the PNG.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Latency and throughput per backend × precision × batch size, with the environment."""
    from deploy_ran.bench import BenchSettings, run_benchmark
    from deploy_ran.tables import bench_table, environment_table

    settings = BenchSettings(
        model,
        backends=tuple(_split_list(backends)) or None,
        artifacts=tuple(a for item in (artifacts or []) for a in _split_list(item)),
        batch_sizes=tuple(_int_list(batch_sizes, "--batch-sizes")),
        warmup=warmup,
        duration=duration,
        iterations=iterations,
        device=device,
        copies=copies,
        cuda_graphs=cuda_graphs,
        interleave=interleave,
        threads=threads,
        torch_precisions=tuple(_split_list(torch_precisions)),
        image_size=image_size,
        checkpoint=checkpoint,
        workdir=workdir,
        output=output,
        plot=not no_plot,
    )
    with console.status(f"benchmarking {model}…") as status:
        result = run_benchmark(
            settings, progress=lambda msg: status.update(f"benchmarking: {escape(msg)}…")
        )
    if as_json:
        print(json.dumps(result.as_dict(), indent=2))
        return
    console.print(bench_table(result))
    console.print(environment_table(result))
    for note in result.notes:
        console.print(f"[yellow]note:[/] {escape(note)}")
    for kind, path in result.files.items():
        console.print(f"wrote {kind.upper()}: {escape(path)}")


@command("infer")
def infer_cmd(
    target: Annotated[str, typer.Argument(help="Model name, .onnx file or engine.")],
    images: Annotated[str, typer.Option(help="Folder, glob ('imgs/*.jpg') or .txt list.")],
    batch: Annotated[int, typer.Option(help="Images per batch.")] = 32,
    topk: Annotated[int, typer.Option(help="Classes per image.")] = 5,
    labels: Annotated[
        Optional[Path], typer.Option(help="Class names, one per line, in index order.")
    ] = None,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="predictions.jsonl or .csv.")
    ] = Path("predictions.jsonl"),
    resume: Annotated[
        bool, typer.Option("--resume", help="Skip images the output already holds; append.")
    ] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Start the output again.")] = False,
    workers: Annotated[
        Optional[int],
        typer.Option(
            help="Decode/preprocess processes (0: in the main process); with --ray: model "
            "workers (Ray actors, default: one per GPU, else 1)."
        ),
    ] = None,
    device: Annotated[str, typer.Option(help="cpu | cuda[:N].")] = "cpu",
    checkpoint: Annotated[Optional[Path], typer.Option(help="Weights for a model name.")] = None,
    precision: Annotated[
        Optional[str], typer.Option(help="PyTorch: fp32 | fp16 | autocast.")
    ] = None,
    provider: Annotated[
        Optional[str], typer.Option(help="ONNX Runtime providers: cpu, cuda, tensorrt.")
    ] = None,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads for the backend.")] = None,
    output_name: Annotated[
        Optional[str], typer.Option(help="Which output holds the logits (default: logits).")
    ] = None,
    # --- infer --ray (issue 14, part 3): same records, computed by Ray Data actors
    use_ray: Annotated[
        bool, typer.Option("--ray", help="Run on Ray Data (pip install 'deploy-ran\\[ray]').")
    ] = False,
    address: Annotated[
        Optional[str],
        typer.Option(help="With --ray: auto | HOST:PORT (default: RAY_ADDRESS, else local Ray)."),
    ] = None,
    gpus_per_worker: Annotated[
        Optional[float],
        typer.Option(help="With --ray: GPUs per worker (0.5 shares a GPU); needs --device cuda."),
    ] = None,
) -> None:
    """Top-k predictions for many images: batched, resumable, bad images recorded."""
    import time

    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from deploy_ran.infer import run_inference

    bar = Progress(
        TextColumn("[bold]infer"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    )
    task = bar.add_task("infer", total=None, rate="")
    first: list[float] = []  # (time, count) of the first written batch: the rate excludes start-up

    def progress(done: int, total: int) -> None:
        now = time.perf_counter()
        if not first:
            bar.start()  # only once the checks passed and images flow
            first.extend((now, done))
        rate = f"{(done - first[1]) / (now - first[0]):.1f} img/s" if now > first[0] else ""
        bar.update(task, completed=done, total=total, rate=rate)

    common = dict(
        batch_size=batch,
        topk=topk,
        labels=labels,
        resume=resume,
        overwrite=overwrite,
        workers=workers,
        device=device,
        checkpoint=checkpoint,
        precision=precision,
        providers=provider,
        threads=threads,
        output_name=output_name,
        progress=progress,
    )
    if not use_ray and (address is not None or gpus_per_worker is not None):
        raise DeployRanError(
            "--address and --gpus-per-worker apply to --ray.", hint="Add --ray, or drop them."
        )
    try:
        if use_ray:
            from deploy_ran.infer_ray import run_inference_ray

            result = run_inference_ray(
                target,
                images,
                output,
                address=address,
                gpus_per_worker=gpus_per_worker or 0.0,
                **common,
            )
        else:
            result = run_inference(target, images, output, **common)
    finally:
        bar.stop()
    how = (
        f"{result.workers} Ray workers"
        if use_ray
        else f"{result.workers} loader workers, backend busy {result.backend_busy:.0%} of the time"
    )
    console.print(
        f"[green]✓[/] {result.processed} image(s) in {result.seconds:.1f} s "
        f"({result.images_per_s:.1f} img/s, batch {result.batch_size}, {how}); {result.failed} "
        f"unreadable; {result.already_done} already in the output; wrote {escape(result.output)}"
    )


# --------------------------------------------------------------------------------------------
# doctor


@command("doctor")
def doctor_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Versions of the stack, CUDA availability, ONNX Runtime providers, TensorRT import."""
    from deploy_ran.environment import collect_environment

    env = collect_environment()
    if as_json:
        print(json.dumps(env, indent=2))
        return
    table = Table(title="deploy-ran doctor", title_justify="left")
    table.add_column("component")
    table.add_column("status", overflow="fold")
    for key, value in env.items():
        table.add_row(key, value if isinstance(value, str) else json.dumps(value))
    console.print(table)


# --------------------------------------------------------------------------------------------
# build-engine: ONNX (FP32 / FP16 / INT8 Q/DQ) → TensorRT plan


@command("build-engine")
def build_engine_cmd(
    target: Annotated[str, typer.Argument(help="Model name (exported first) or an .onnx file.")],
    fp16: Annotated[
        bool, typer.Option("--fp16", help="FP16 engine (from an FP16 ONNX made first).")
    ] = False,
    int8: Annotated[
        bool, typer.Option("--int8", help="INT8 engine (from a Q/DQ ONNX calibrated first).")
    ] = False,
    calib_data: Annotated[
        Optional[str],
        typer.Option(
            help="--int8: image folder / glob / list / .npy/.npz; default built-in sample."
        ),
    ] = None,
    method: Annotated[
        str, typer.Option(help="--int8: percentile | entropy | minmax.")
    ] = "percentile",
    percentile: Annotated[
        float, typer.Option(help="--int8 --method percentile: percentile.")
    ] = 99.99,
    num_images: Annotated[int, typer.Option(help="--int8: calibration images.")] = 512,
    calib_batch: Annotated[int, typer.Option(help="--int8: images per calibration run.")] = 8,
    checkpoint: Annotated[
        Optional[Path], typer.Option(help="Weights, when TARGET is a model name.")
    ] = None,
    image_size: Annotated[
        Optional[int], typer.Option(help="Input H=W, when TARGET is a model name.")
    ] = None,
    num_classes: Annotated[
        Optional[int], typer.Option(help="Classes, when TARGET is a model name.")
    ] = None,
    min_batch: Annotated[
        Optional[int], typer.Option(help="Profile: smallest batch (default 1).")
    ] = None,
    opt_batch: Annotated[
        Optional[int], typer.Option(help="Profile: batch TensorRT tunes for (default 8).")
    ] = None,
    max_batch: Annotated[
        Optional[int], typer.Option(help="Profile: largest batch (default 32).")
    ] = None,
    workspace: Annotated[
        Optional[int], typer.Option(help="Workspace limit in MiB (default: TensorRT's).")
    ] = None,
    opt_level: Annotated[int, typer.Option(help="Builder optimization level 0-5.")] = 3,
    timing_cache: Annotated[
        Optional[Path], typer.Option(help="Timing cache file, loaded and saved.")
    ] = None,
    allow_tf32: Annotated[
        bool, typer.Option("--allow-tf32", help="Allow TF32 (off: FP32 parity).")
    ] = False,
    version_compatible: Annotated[
        bool, typer.Option("--version-compatible", help="Plan runs on later TensorRT versions.")
    ] = False,
    hardware_compatibility: Annotated[
        str, typer.Option(help="none | ampere_plus | same_cc (10.16+).")
    ] = "none",
    layer_info: Annotated[
        bool, typer.Option("--layer-info", help="Per-layer report (JSON) and layer precisions.")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", help="Print TensorRT's log.")] = False,
    output: Annotated[
        Optional[Path], typer.Option("--output", "-o", help="Plan path; default <onnx>.plan.")
    ] = None,
) -> None:
    """Build a TensorRT engine: export / FP16 / INT8-calibrate as needed, then a strongly typed build.

    Exits 3 (after writing the precision ONNX) where TensorRT or a GPU is missing, printing the
    command that finishes the build on a GPU host.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from deploy_ran.trt_compat import EXIT_NO_TENSORRT, TensorRTUnavailable
    from exporters.prepare import prepare_onnx
    from exporters.tensorrt import EngineBuildOptions, build_engine, default_plan_path

    if fp16 and int8:
        raise DeployRanError("--fp16 and --int8 exclude each other.", hint="Pick one precision.")
    precision = "fp16" if fp16 else "int8" if int8 else None
    options = EngineBuildOptions(
        min_batch=min_batch,
        opt_batch=opt_batch,
        max_batch=max_batch,
        workspace_mib=workspace,
        optimization_level=opt_level,
        timing_cache=str(timing_cache) if timing_cache else None,
        allow_tf32=allow_tf32,
        version_compatible=version_compatible,
        hardware_compatibility=hardware_compatibility,
        layer_info=layer_info,
        verbose=verbose,
    )
    workdir = output.parent if output is not None else Path(".")
    calibration = dict(
        data=calib_data,
        method=method,
        percentile=percentile,
        num_images=num_images,
        batch=calib_batch,
    )
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        status = bar.add_task("preparing the ONNX file", total=None)
        prepared = prepare_onnx(
            target,
            precision or _onnx_or_fp32_precision(target),
            workdir=workdir,
            checkpoint=checkpoint,
            image_size=image_size,
            num_classes=num_classes,
            calibration=calibration,
            progress=lambda msg: bar.update(status, description=msg),
            calibration_progress=_PhaseProgress(bar),
        )
    for step in prepared.steps:
        console.print(f"[green]✓[/] {escape(step)}")
    if "int8" in prepared.results:
        _print_quantize_result(prepared.results["int8"])
    plan = output or default_plan_path(prepared.path)
    try:
        with console.status(f"Building the TensorRT engine from {prepared.path}…"):
            result = build_engine(
                prepared.path,
                plan,
                options,
                log=lambda level, msg: err_console.print(
                    f"[dim]TensorRT {level}:[/] {escape(msg)}"
                ),
            )
    except TensorRTUnavailable as exc:
        _print_error(exc)
        err_console.print(
            f"[bold]{prepared.path}[/] ({prepared.precision.upper()}) is ready. Finish on a GPU host:\n"
            f"  python cli.py build-engine {prepared.path} {_build_flags(options)}--output {plan}",
            highlight=False,
            soft_wrap=True,  # a command to copy must not be broken across lines
        )
        raise typer.Exit(EXIT_NO_TENSORRT) from None
    console.print(
        f"[green]✓[/] wrote [bold]{result.plan}[/] ({result.plan.stat().st_size / 1e6:.1f} MB, "
        f"{result.precision.upper()}, TensorRT {result.tensorrt_version}, {result.gpu['name']}) "
        f"in {result.seconds:.1f} s; metadata in {result.sidecar}"
    )
    for warning in result.warnings:
        console.print(f"[yellow]Warning:[/] {escape(warning)}")
    if result.layer_info is not None:
        table = Table(title=f"Layer precisions ({result.layer_info})", title_justify="left")
        table.add_column("precision")
        table.add_column("layers", justify="right")
        for name, count in sorted(result.layer_precisions.items(), key=lambda kv: -kv[1]):
            table.add_row(name, str(count))
        console.print(table)


def _onnx_or_fp32_precision(target: str) -> str:
    """Without --fp16/--int8: an ONNX file keeps its own precision; a model name builds FP32."""
    if target.lower().endswith(".onnx") and Path(target).exists():
        from exporters.prepare import precision_of_file

        return precision_of_file(target)
    return "fp32"


def _build_flags(options) -> str:
    """The build options as command-line flags, for the 'finish on a GPU host' command."""
    flags = []
    for name, flag in (
        ("min_batch", "--min-batch"),
        ("opt_batch", "--opt-batch"),
        ("max_batch", "--max-batch"),
        ("workspace_mib", "--workspace"),
        ("timing_cache", "--timing-cache"),
    ):
        value = getattr(options, name)
        if value is not None:
            flags.append(f"{flag} {value}")
    if options.optimization_level != 3:
        flags.append(f"--opt-level {options.optimization_level}")
    if options.hardware_compatibility != "none":
        flags.append(f"--hardware-compatibility {options.hardware_compatibility}")
    for name, flag in (
        ("allow_tf32", "--allow-tf32"),
        ("version_compatible", "--version-compatible"),
        ("layer_info", "--layer-info"),
    ):
        if getattr(options, name):
            flags.append(flag)
    return "".join(f"{f} " for f in flags)


# --------------------------------------------------------------------------------------------
# triton-repo: .onnx / .plan files (or a model name, exported first) → Triton model repository


def _onnx_for_target(
    target: str, folder: Path, checkpoint: Path | None, image_size: int | None
) -> Path:
    """A file target as it is; a model name exported to an FP32 ONNX in ``folder`` first.

    The one place ``triton-repo`` turns a model name into a file (the conversion layer's job).
    """
    from deploy_ran.models import is_model_name

    if not is_model_name(target) or Path(target).exists():
        if checkpoint is not None or image_size is not None:
            raise DeployRanError(
                f"--checkpoint/--image-size apply to model names, not to the file {target}.",
                hint="Drop them: an exported file already fixes its weights and size.",
            )
        return Path(target)
    from exporters.onnx import export_onnx

    return export_onnx(
        target, folder / f"{target}.onnx", checkpoint=checkpoint, image_size=image_size
    ).path


@command("triton-repo")
def triton_repo_cmd(
    targets: Annotated[
        list[str],
        typer.Argument(
            help=".onnx files (FP32/FP16/INT8 Q/DQ), .plan files with their "
            ".plan.json, or model names (exported to FP32 ONNX first)."
        ),
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Repository folder.")] = Path(
        "model_repository"
    ),
    name: Annotated[
        Optional[str], typer.Option(help="Model name (one target; default: from the file name).")
    ] = None,
    max_batch: Annotated[
        Optional[int],
        typer.Option(help="max_batch_size (default 32, never above a plan's profile; 0: none)."),
    ] = None,
    instances: Annotated[int, typer.Option(help="Model instances (instance_group count).")] = 1,
    kind: Annotated[str, typer.Option(help="Instance kind: gpu | cpu.")] = "gpu",
    max_queue_delay_us: Annotated[
        int, typer.Option(help="Dynamic batching: longest wait to fill a batch, in µs.")
    ] = 100,
    labels: Annotated[
        Optional[Path], typer.Option(help="Class names, one a line (labels.txt).")
    ] = None,
    preprocess: Annotated[
        bool,
        typer.Option(
            help="Add a Python-backend image decoder and an ensemble that take encoded images."
        ),
    ] = False,
    tensorrt_accelerator: Annotated[
        bool,
        typer.Option(
            help="ONNX files: run under ONNX Runtime's TensorRT provider "
            "(INT8 Q/DQ files get precision_mode INT8)."
        ),
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            help="Replace this command's files in existing model folders (other files are kept)."
        ),
    ] = False,
    checkpoint: Annotated[
        Optional[Path], typer.Option(help="Weights, when a target is a model name.")
    ] = None,
    image_size: Annotated[
        Optional[int], typer.Option(help="Input H=W, when a target is a model name.")
    ] = None,
) -> None:
    """Write a Triton Inference Server model repository (config.pbtxt through Triton's schema)."""
    import tempfile

    from exporters.triton import RepoOptions, write_repository

    options = RepoOptions(
        name=name,
        max_batch=max_batch,
        instances=instances,
        kind=kind.lower(),
        max_queue_delay_us=max_queue_delay_us,
        labels=labels,
        preprocess=preprocess,
        tensorrt_accelerator=tensorrt_accelerator,
        force=force,
    )
    options.check()  # before any export
    with tempfile.TemporaryDirectory(prefix="deploy-ran-triton-") as tmp:
        files = [_onnx_for_target(t, Path(tmp), checkpoint, image_size) for t in targets]
        with console.status("writing the repository"):
            result = write_repository(files, output, options)
    for model in result.models:
        console.print(f"[green]✓[/] wrote [bold]{result.repository / model}[/]")
    for note in result.notes:
        console.print(f"[yellow]Note:[/] {escape(note)}")
    model = result.models[0]
    console.print(
        f"Serve with tritonserver --model-repository={result.repository.resolve()} (README: "
        f"Triton); then check it: python cli.py verify MODEL triton://HOST:8000/{model}"
    )


def main() -> None:
    """Entry point of the ``deploy-ran`` console script."""
    app()


if __name__ == "__main__":
    sys.exit(main())
