"""deploy-ran command line: ``python cli.py COMMAND`` or the installed ``deploy-ran COMMAND``.

Parsing, progress and printing only. Options are declared once in :mod:`cli_args` (``o.``) and
checked where parsed; each command builds the library's config, calls the library (``deploy_ran``,
``exporters``, ``calibration``) and prints what :mod:`deploy_ran.tables` renders.
"""

from __future__ import annotations

import functools
import json
import signal
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

import cli_args as o
from deploy_ran.errors import DeployRanError, system_error
from deploy_ran.fileio import json_text, refuse_output_over_inputs
from deploy_ran.signals import install_signal_handlers, stop_signal

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


def _print_error(exc: DeployRanError, flags: dict[str, str] | None = None) -> None:
    """The message and hint, escaped (a path ``a[1].onnx`` is text, not markup)."""
    where = f" ({o.flags_for(exc.param, flags or {})})" if getattr(exc, "param", None) else ""
    err_console.print(f"[bold red]Error{escape(where)}:[/] {escape(exc.message)}", highlight=False)
    if exc.hint:
        err_console.print(f"[yellow]Hint:[/] {escape(exc.hint)}", highlight=False)


def _tolerant_streams() -> None:
    """Print names that are not UTF-8 (``caf\xe9.png`` from a latin-1 system) as escapes
    instead of failing on them: a file name is the user's, not a reason to crash."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            try:
                reconfigure(errors="backslashreplace")
            except (ValueError, OSError):
                pass


def _stop_on_signal(exc: BaseException) -> None:
    """Exit ``128 + signal`` (130 SIGINT, 143 SIGTERM) with one message when a signal stopped the
    run, whatever exception it surfaced as; clean-up already ran while the stack unwound."""
    signum = stop_signal(exc)
    if signum is None:
        return
    name = signal.Signals(signum).name
    err_console.print(
        f"[yellow]Stopped by {name}; temporary files were removed, outputs left as they were.[/]",
        highlight=False,
    )
    raise typer.Exit(128 + signum) from None


def command(name: str, flags: dict[str, str] | None = None):
    """``app.command`` that turns a :class:`DeployRanError` into a message and its exit code.

    ``flags`` maps the library's parameter names to this command's flags where they are not
    simply ``--param-name`` (``batch_size`` → ``--batch``).
    """

    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*a: Any, **k: Any):
            _tolerant_streams()
            try:
                return fn(*a, **k)
            except (KeyboardInterrupt, DeployRanError, OSError, MemoryError) as exc:
                _stop_on_signal(exc)  # a signal wins over the error a library made of it
                if isinstance(exc, KeyboardInterrupt):
                    raise
                error = exc if isinstance(exc, DeployRanError) else system_error(exc)
                if error is None:
                    raise
                _print_error(error, flags)
                raise typer.Exit(error.exit_code) from None
            except Exception as exc:
                _stop_on_signal(exc)
                raise

        return app.command(name)(wrapper)

    return decorate


def _show(items: Iterable[Any]) -> None:
    for item in items:
        console.print(item, highlight=False)


def _file(text: str | Path | None) -> Path | None:
    """``text`` as a path when it names an existing file or folder (a model name does not)."""
    if text is None:
        return None
    for path in (Path(text), Path(str(text).rsplit(":", 1)[0])):  # data.npz:key names data.npz
        if path.exists():
            return path
    return None


def _show_conversion(result: Any, source: Any, command: str, show: bool = True) -> None:
    """Print a conversion's reports; refuse one that had nothing to do (already that precision)."""
    if result.export is None and result.fp16 is None and result.int8 is None:
        raise DeployRanError(
            f"{source} is already a {result.precision.upper()} model; {command} starts from a "
            "model name or the FP32 ONNX file.",
            hint="Pass the FP32 export (`python cli.py export NAME` writes NAME.onnx).",
        )
    if show:
        from deploy_ran.tables import conversion_report

        _show(conversion_report(result))


# --------------------------------------------------------------------------------------------
# models · inspect · doctor


@command("models")
def models_cmd(
    pattern: Annotated[str, typer.Argument(help="Shell-style filter, e.g. 'ran*_cifar'.")] = "*",
    as_json: o.AsJson = False,
) -> None:
    """List the model zoo: input size, parameters, multiply-adds, reference."""
    from deploy_ran.models import get_spec, list_models
    from deploy_ran.tables import model_rows, models_report

    names = list_models(pattern)
    if not names:
        raise DeployRanError(
            f"No model matches {pattern!r}.", hint="Run `python cli.py models` to list every model."
        )
    specs = [get_spec(n) for n in names]
    if as_json:
        print(json.dumps(model_rows(specs), indent=2))
    else:
        _show(models_report(specs))


@command("inspect")
def inspect_cmd(
    path: Annotated[Path, typer.Argument(help="An ONNX file.")], as_json: o.AsJson = False
) -> None:
    """Describe an ONNX file: I/O, opset, op histogram, every Resize, metadata."""
    from deploy_ran.tables import inspect_report
    from exporters.inspect import inspect_onnx

    desc = inspect_onnx(path)
    if as_json:
        print(json_text(desc.as_dict()), end="")
    else:
        _show(inspect_report(desc))


@command("doctor")
def doctor_cmd(as_json: o.AsJson = False) -> None:
    """Versions of the stack, CUDA availability, ONNX Runtime providers, TensorRT import."""
    from deploy_ran.environment import collect_environment
    from deploy_ran.tables import doctor_table

    env = collect_environment()
    if as_json:
        print(json.dumps(env, indent=2))
    else:
        console.print(doctor_table(env))


# --------------------------------------------------------------------------------------------
# conversions: export (FP32 / FP16), calibrate (INT8 Q/DQ), build-engine


@command("export", flags={"simplify": "--no-simplify"})
def export_cmd(
    name: Annotated[str, typer.Argument(help="Model name (see `models`), or an FP32 .onnx file.")],
    checkpoint: o.CheckpointOpt = None,
    image_size: o.ImageSizeOpt = None,
    num_classes: o.NumClassesOpt = None,
    batch: o.Batch("Example batch; the fixed batch with --static-batch") = 1,
    static_batch: o.StaticBatchOpt = False,
    opset: o.OpsetOpt = 18,
    no_simplify: o.NoSimplifyOpt = False,
    output: o.Output(o.OptPath, "Output path; default NAME.onnx.") = None,
    attention: o.AttentionOpt = None,
    attention_residual: o.ArlOpt = None,
    mask: o.MaskOpt = None,
    variant: o.VariantOpt = None,
    attention_maps: o.AttentionMapsOpt = False,
    outputs: o.OutputsOpt = None,
    skip_parity: o.SkipParityOpt = False,
    precision: o.ExportPrecisionOpt = "fp32",
    keep_fp32: o.KeepFp32Opt = None,
    no_default_keep_fp32: o.NoDefaultKeepOpt = False,
) -> None:
    """Export a model to a checked ONNX file (FP32 or FP16) with static-size bilinear upsampling."""
    if precision == "int8":
        raise DeployRanError(
            "INT8 needs calibration data, so it has its own command.",
            hint=f"Run `python cli.py export {name}` then `python cli.py calibrate {name}.onnx "
            "--data FOLDER`.",
        )
    refuse_output_over_inputs({"output": output}, {"checkpoint": checkpoint, "source": _file(name)})
    from deploy_ran.checks import RunnerChecks
    from deploy_ran.convert import ExportConfig, Fp16Config, convert

    options = o.model_options(attention, attention_residual, mask, variant, attention_maps, outputs)
    export = ExportConfig(
        checkpoint=checkpoint,
        image_size=image_size,
        num_classes=num_classes,
        batch=batch,
        static_batch=static_batch,
        opset=opset,
        simplify=not no_simplify,
        options=options,
    )
    fp16 = Fp16Config(keep_fp32=tuple(keep_fp32 or ()), default_keep_fp32=not no_default_keep_fp32)
    with console.status(f"Exporting {escape(name)}…") as status:
        result = convert(
            name,
            precision,
            output=output,
            export=export,
            fp16=fp16,
            checks=None if skip_parity else RunnerChecks(),
            progress=lambda msg: status.update(f"{escape(name)}: {escape(msg)}…"),
        )
    _show_conversion(result, name, "export")


@command("calibrate", flags={"use_cache": "--no-cache"})
def calibrate_cmd(
    model: Annotated[Path, typer.Argument(help="FP32 ONNX file (from `export`).")],
    data: o.DataOpt = None,
    method: o.MethodOpt = "percentile",
    percentile: o.PercentileOpt = 99.99,
    bins: o.BinsOpt = None,
    num_images: o.CalibImagesOpt = 512,
    batch: o.Batch("Images per ONNX Runtime run") = 8,
    seed: o.SeedOpt = 0,
    exclude: o.ExcludeOpt = None,
    target_agreement: o.TargetAgreementOpt = 0.99,
    include_attention: o.IncludeAttentionOpt = False,
    sensitivity: o.SensitivityOpt = False,
    eval_images: o.EvalImagesOpt = 200,
    no_cache: o.NoCacheOpt = False,
    device: o.CalibDeviceOpt = "cpu",
    float_precision: o.FloatPrecisionOpt = "fp32",
    allow_failing: o.AllowFailingOpt = False,
    output: o.Output(o.OptPath, "Default MODEL.int8.onnx.") = None,
    as_json: o.Flag("--json", "Print the report as JSON.") = False,
) -> None:
    """Calibrate an FP32 ONNX file and write an INT8 Q/DQ ONNX file (TensorRT's explicit INT8)."""
    refuse_output_over_inputs({"output": output}, {"model": model, "data": _file(data)})
    from calibration.data import BUILTIN_NOTE
    from deploy_ran.checks import RunnerChecks
    from deploy_ran.convert import CalibrationConfig, convert

    calibration = CalibrationConfig(
        data=data,
        method=method,
        percentile=percentile,
        bins=bins,
        num_images=num_images,
        batch=batch,
        seed=seed,
        exclude=tuple(exclude or ()),
        include_attention=include_attention,
        sensitivity=sensitivity,
        target_agreement=target_agreement,
        eval_images=eval_images,
        use_cache=not no_cache,
        device=device,
        float_precision=float_precision,
        require_pass=not allow_failing,
    )
    if data is None and not as_json:
        from rich.panel import Panel

        console.print(
            Panel(escape(BUILTIN_NOTE), title="built-in calibration sample", style="yellow")
        )
    with o.phase_bar(err_console if as_json else console, transient=as_json) as bar:
        result = convert(
            model,
            "int8",
            output=output,
            calibration=calibration,
            checks=RunnerChecks(),
            calibration_progress=o.PhaseProgress(bar),
        )
    _show_conversion(result, model, "calibrate", show=not as_json)
    if as_json:
        print(json_text(result.int8.as_dict()), end="")


@command("build-engine", flags={"data": "--calib-data", "batch": "--calib-batch"})
def build_engine_cmd(
    target: Annotated[str, typer.Argument(help="Model name (exported first) or an .onnx file.")],
    fp16: o.Fp16Opt = False,
    int8: o.Int8Opt = False,
    calib_data: o.CalibDataOpt = None,
    method: o.MethodOpt = "percentile",
    percentile: o.PercentileOpt = 99.99,
    num_images: o.CalibImagesOpt = 512,
    calib_batch: o.Batch("--int8: images per calibration run") = 8,
    calib_device: o.CalibDeviceOpt = "cpu",
    float_precision: o.FloatPrecisionOpt = "fp32",
    checkpoint: o.CheckpointOpt = None,
    image_size: o.ImageSizeOpt = None,
    num_classes: o.NumClassesOpt = None,
    min_batch: o.MinBatchOpt = None,
    opt_batch: o.OptBatchOpt = None,
    max_batch: o.MaxBatchOpt = None,
    workspace: o.WorkspaceOpt = None,
    opt_level: o.OptLevelOpt = 3,
    timing_cache: o.TimingCacheOpt = None,
    allow_tf32: o.Tf32Opt = False,
    version_compatible: o.VersionCompatibleOpt = False,
    hardware_compatibility: o.HardwareOpt = "none",
    layer_info: o.LayerInfoOpt = False,
    verbose: o.VerboseOpt = False,
    output: o.Output(o.OptPath, "Plan path; default <onnx>.plan.") = None,
) -> None:
    """Build a TensorRT engine: export / FP16 / INT8-calibrate as needed, then a strongly typed build.

    Exits 3 (after writing the precision ONNX) where TensorRT or a GPU is missing, printing the
    command that finishes the build on a GPU host.
    """
    if fp16 and int8:
        raise DeployRanError("--fp16 and --int8 exclude each other.", hint="Pick one precision.")
    o.check_profile(min_batch=min_batch, opt_batch=opt_batch, max_batch=max_batch)
    inputs = {"target": _file(target), "checkpoint": checkpoint, "data": _file(calib_data)}
    refuse_output_over_inputs({"output": output}, {**inputs, "timing_cache": timing_cache})
    from deploy_ran.checks import RunnerChecks
    from deploy_ran.convert import CalibrationConfig, EngineUnavailable, ExportConfig, convert
    from deploy_ran.tables import engine_report, quantize_report
    from deploy_ran.trt_compat import EXIT_NO_TENSORRT
    from exporters.tensorrt import EngineBuildOptions

    options = EngineBuildOptions(
        min_batch, opt_batch, max_batch, workspace, opt_level,
        str(timing_cache) if timing_cache else None, allow_tf32, version_compatible,
        hardware_compatibility, layer_info, verbose,
    )  # fmt: skip
    calibration = CalibrationConfig(
        calib_data, method, percentile, num_images=num_images, batch=calib_batch,
        device=calib_device, float_precision=float_precision,
    )  # fmt: skip
    with o.phase_bar(console) as bar:
        status = bar.add_task("preparing the ONNX file", total=None)
        try:
            result = convert(
                target,
                "fp16" if fp16 else "int8" if int8 else None,
                export=ExportConfig(checkpoint, image_size, num_classes),
                calibration=calibration,
                checks=RunnerChecks(),
                workdir=output.parent if output is not None else Path("."),
                engine=options,
                plan=output,
                engine_log=lambda lvl, msg: err_console.print(f"[dim]TensorRT {lvl}:[/] {escape(msg)}"),
                progress=lambda msg: bar.update(status, description=escape(msg)),
                calibration_progress=o.PhaseProgress(bar),
            )
        except EngineUnavailable as exc:
            result = exc.result
            _print_error(exc)
    _show(f"[green]✓[/] {escape(step)}" for step in result.steps)
    if result.int8 is not None:
        _show(quantize_report(result.int8))
    if result.engine is None:
        plan = output or result.path.with_suffix(".plan")
        finish = f"python cli.py build-engine {result.path} {o.build_flags(options)}--output {plan}"
        err_console.print(
            f"[bold]{escape(str(result.path))}[/] ({result.precision.upper()}) is ready. "
            f"Finish on a GPU host:\n  {escape(finish)}",
            highlight=False,
            soft_wrap=True,  # a command to copy must not be broken across lines
        )
        raise typer.Exit(EXIT_NO_TENSORRT)
    _show(engine_report(result.engine))


# --------------------------------------------------------------------------------------------
# demo · visualize


@command("demo")
def demo_cmd(
    model: o.Opt(str, "Model to run the pipeline on.") = "ran92",
    image_size: o.ImageSizeOpt = None,
    workdir: o.Opt(Path, "Folder for the artifacts and reports.") = Path("demo_out"),
    runs: o.RunsOpt = 10,
    calibration_images: o.DemoImagesOpt = 64,
) -> None:
    """The main job on a built-in default: export → FP16 → INT8 → verify → bench → engine (CPU)."""
    from deploy_ran.pipeline import run_demo

    workdir.mkdir(parents=True, exist_ok=True)
    options = dict(image_size=image_size, runs=runs, calibration_images=calibration_images)
    run_demo(model, workdir, console=console, **options)


@command("visualize")
def visualize_cmd(
    source: Annotated[
        str, typer.Argument(help="Model name, or an ONNX file exported with --attention-maps.")
    ],
    images: o.ImagesArg,
    checkpoint: o.CheckpointOpt = None,
    image_size: o.ImageSizeOpt = None,
    output: o.Output(Path, "PNG grid to write.") = Path("attention.png"),
) -> None:
    """Overlay every attention map on the input images and write a PNG grid."""
    from deploy_ran.tables import attention_report
    from deploy_ran.visualize import visualize

    with console.status(f"Computing attention maps of {escape(source)}…"):
        result = visualize(source, images, output, checkpoint=checkpoint, image_size=image_size)
    _show(attention_report(result, output))


# --------------------------------------------------------------------------------------------
# verify · bench · infer: runners on any backend


@command("verify", flags={"num_inputs": "-n", "batch_size": "--batch", "providers": "--provider"})
def verify_cmd(
    reference: Annotated[str, typer.Argument(help="Model name, .onnx file or engine.")],
    candidate: Annotated[str, typer.Argument(help="Model name, .onnx file or engine.")],
    data: o.VerifyDataOpt = None,
    num_images: o.CountOpt = None,
    batch: o.Batch("Batch size for running both sides") = 8,
    seed: o.SeedOpt = 0,
    checkpoint: o.CheckpointOpt = None,
    candidate_checkpoint: o.CandidateCheckpointOpt = None,
    reference_precision: o.TorchPrecisionOpt = None,
    candidate_precision: o.TorchPrecisionOpt = None,
    image_size: o.ImageSizeOpt = None,
    device: o.DeviceOpt = "cpu",
    provider: o.ProviderOpt = None,
    threads: o.ThreadsOpt = None,
    max_rel_l2: o.MaxRelL2Opt = None,
    min_cosine: o.MinCosineOpt = None,
    min_top1: o.MinTop1Opt = None,
    min_top5: o.MinTop5Opt = None,
    min_psnr: o.MinPsnrOpt = None,
    max_abs: o.MaxAbsOpt = None,
    atol: o.AtolOpt = None,
    rtol: o.RtolOpt = None,
    show_worst: o.ShowWorstOpt = 5,
    as_json: o.AsJson = False,
    output: o.Output(o.OptPath, "Write JSON here.") = None,
) -> None:
    """Compare a candidate with a reference on the same inputs; exit code 1 when it fails."""
    from deploy_ran.fileio import atomic_write_text, check_writable
    from deploy_ran.tables import verify_report
    from deploy_ran.verify import verify

    sides = {"reference": _file(reference), "candidate": _file(candidate), "data": _file(data)}
    weights = {"checkpoint": checkpoint, "candidate_checkpoint": candidate_checkpoint}
    refuse_output_over_inputs({"output": output}, {**sides, **weights})
    if output is not None:
        check_writable(output)
    criteria = dict(
        max_rel_l2=max_rel_l2, min_cosine=min_cosine, min_top1=min_top1, min_top5=min_top5,
        min_psnr=min_psnr, max_abs=max_abs, atol=atol, rtol=rtol,
    )  # fmt: skip
    with console.status("verifying…") as status:
        result = verify(
            reference, candidate, data=data, num_inputs=num_images, batch_size=batch, seed=seed,
            criteria=criteria, device=device, reference_precision=reference_precision,
            candidate_precision=candidate_precision, providers=provider, threads=threads,
            image_size=image_size, show_worst=show_worst, **weights,
            progress=lambda side, done, total: status.update(f"verifying: {side} {done}/{total}…"),
        )  # fmt: skip
    if output is not None:
        atomic_write_text(output, json_text(result.as_dict()))
    if as_json:
        print(json_text(result.as_dict()), end="")
    else:
        _show(verify_report(result, output))
    if not result.passed:
        raise typer.Exit(1)


@command("bench")
def bench_cmd(
    model: Annotated[str, typer.Argument(help="Model name (see `models`).")],
    backends: o.BackendsOpt = None,
    artifacts: o.ArtifactsOpt = None,
    batch_sizes: o.BatchSizesOpt = "1",
    warmup: o.WarmupOpt = 1.0,
    duration: o.DurationOpt = 5.0,
    iterations: o.IterationsOpt = None,
    device: o.DeviceOpt = "cpu",
    copies: o.CopiesOpt = True,
    cuda_graphs: o.CudaGraphsOpt = False,
    interleave: o.InterleaveOpt = False,
    threads: o.ThreadsOpt = None,
    torch_precisions: o.TorchPrecisionsOpt = "fp32",
    torch_modes: o.TorchModesOpt = "eager",
    torch_layouts: o.TorchLayoutsOpt = "default",
    ort_cuda_options: o.OrtCudaOptionsOpt = None,
    loader: o.LoaderOpt = False,
    image_size: o.ImageSizeOpt = None,
    checkpoint: o.CheckpointOpt = None,
    workdir: o.WorkdirOpt = None,
    output: o.Output(Path, "Folder (names from the environment) or FILE.json.") = Path(
        "bench_results"
    ),
    no_plot: o.NoPlotOpt = False,
    as_json: o.AsJson = False,
) -> None:
    """Latency and throughput per backend × precision × batch size, with the environment."""
    from deploy_ran.bench import BenchSettings, run_benchmark
    from deploy_ran.tables import bench_report

    artifact_list = [a.strip() for item in (artifacts or []) for a in item.split(",") if a.strip()]
    files = {f"artifact {a}": _file(a) for a in artifact_list}
    refuse_output_over_inputs({"output": output}, {"checkpoint": checkpoint, **files})
    with console.status(f"benchmarking {escape(model)}…") as status:
        settings = BenchSettings(
            model, backends=backends, artifacts=artifact_list, batch_sizes=batch_sizes,
            warmup=warmup, duration=duration, iterations=iterations, device=device, copies=copies,
            cuda_graphs=cuda_graphs, interleave=interleave, threads=threads,
            torch_precisions=torch_precisions, image_size=image_size, checkpoint=checkpoint,
            workdir=workdir, output=output, plot=not no_plot, torch_modes=torch_modes,
            torch_layouts=torch_layouts, ort_cuda_options=ort_cuda_options,
            loader=loader,
        )  # fmt: skip
        result = run_benchmark(
            settings, progress=lambda msg: status.update(f"benchmarking: {escape(msg)}…")
        )
    if as_json:
        print(json_text(result.as_dict()), end="")
    else:
        _show(bench_report(result))


@command("infer", flags={"batch_size": "--batch", "providers": "--provider"})
def infer_cmd(
    target: Annotated[str, typer.Argument(help="Model name, .onnx file or engine.")],
    images: o.ImagesOpt,
    batch: o.Batch("Images per batch") = 32,
    topk: o.TopkOpt = 5,
    labels: o.LabelsOpt = None,
    output: o.Output(Path, "predictions.jsonl or .csv.") = Path("predictions.jsonl"),
    resume: o.ResumeOpt = False,
    overwrite: o.OverwriteOpt = False,
    workers: o.WorkersOpt = None,
    device: o.DeviceOpt = "cpu",
    checkpoint: o.CheckpointOpt = None,
    precision: o.TorchPrecisionOpt = None,
    provider: o.ProviderOpt = None,
    threads: o.ThreadsOpt = None,
    output_name: o.OutputNameOpt = None,
    ray: o.RayOpt = False,
    address: o.RayAddressOpt = None,
    gpus_per_worker: o.GpusPerWorkerOpt = None,
) -> None:
    """Top-k predictions for many images: batched, resumable, bad images recorded."""
    from deploy_ran.infer import run_inference
    from deploy_ran.tables import infer_summary

    if not ray and (address is not None or gpus_per_worker is not None):
        raise DeployRanError("--address and --gpus-per-worker apply to --ray.", hint="Add --ray.")
    run, extra = run_inference, {}
    if ray:
        from deploy_ran.infer_ray import run_inference_ray as run

        extra = {"address": address, "gpus_per_worker": gpus_per_worker or 0.0}
    with o.InferBar(console) as progress:
        result = run(
            target, images, output, **extra, batch_size=batch, topk=topk, labels=labels,
            resume=resume, overwrite=overwrite, workers=workers, device=device,
            checkpoint=checkpoint, precision=precision, providers=provider, threads=threads,
            output_name=output_name, progress=progress,
        )  # fmt: skip
    console.print(infer_summary(result), highlight=False)
    if not getattr(result, "ok", True):  # NaN/inf logits: recorded as errors, not as predictions
        err_console.print(f"[red]{result.model_errors} image(s) gave NaN/inf logits.[/]")
        raise typer.Exit(1)


@command("triton-repo", flags={"max_batch": "--max-batch"})
def triton_repo_cmd(
    targets: Annotated[list[str], typer.Argument(help=".onnx / .plan (+ .plan.json) / model names.")],
    output: o.RepoOutputOpt = Path("model_repository"),
    name: o.RepoNameOpt = None,
    max_batch: o.RepoMaxBatchOpt = None,
    instances: o.InstancesOpt = 1,
    kind: o.KindOpt = "gpu",
    max_queue_delay_us: o.QueueDelayOpt = 100,
    labels: o.LabelsOpt = None,
    preprocess: o.PreprocessOpt = False,
    tensorrt_accelerator: o.TrtAcceleratorOpt = False,
    force: o.ForceOpt = False,
    checkpoint: o.CheckpointOpt = None,
    image_size: o.ImageSizeOpt = None,
) -> None:
    """Write a Triton Inference Server model repository (config.pbtxt through Triton's schema)."""
    from deploy_ran.checks import RunnerChecks
    from deploy_ran.convert import ExportConfig, convert
    from deploy_ran.fileio import temp_dir
    from deploy_ran.tables import triton_summary
    from exporters.triton import RepoOptions, write_repository

    options = RepoOptions(
        name, max_batch, instances, kind, max_queue_delay_us, labels, preprocess,
        tensorrt_accelerator, force,
    )  # fmt: skip
    options.check()  # before any export
    export = ExportConfig(checkpoint=checkpoint, image_size=image_size)
    with temp_dir("deploy-ran-triton-") as tmp, console.status("writing the repository"):
        files = [convert(t, export=export, checks=RunnerChecks(), workdir=tmp).path for t in targets]
        result = write_repository(files, output, options)
    _show(triton_summary(result))


def main() -> None:
    """Entry point of the ``deploy-ran`` console script."""
    install_signal_handlers()  # SIGTERM unwinds like Ctrl-C: temp files are removed
    app()


if __name__ == "__main__":
    sys.exit(main())
