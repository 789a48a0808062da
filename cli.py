"""deploy-ran command line: ``python cli.py COMMAND`` or the installed ``deploy-ran COMMAND``.

Parsing, progress and printing only. Options are declared once in :mod:`cli_args` (``o.``) and
checked where parsed; option groups (:mod:`cli_options`) build the library's configs; each command
calls the library and prints what :mod:`deploy_ran.tables` renders through :mod:`cli_render`.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Annotated, Any

if __name__ == "__main__" or Path(sys.argv[0]).name == "deploy-ran":  # imports take seconds:
    __import__("deploy_ran.signals").signals.exit_on_signal_while_loading()  # signals end quietly

import typer
from rich.markup import escape

import cli_args as o
import cli_render as render
from cli_options import GroupValues, groups
from cli_options.calibration import BUILD_ENGINE_OLD_NAMES, CALIBRATE_OLD_NAMES, CALIBRATION
from cli_options.criteria import CRITERIA
from cli_options.engine import ENGINE, finish_flags
from cli_options.evaluate import EVALUATE
from cli_options.model import EXPORT, MODEL
from cli_options.paths import existing as _file
from cli_options.runner import RAY, RUNNER
from cli_options.triton import TRITON_REPO
from cli_render import Progress, console, err_console, print_error, show
from deploy_ran.errors import DeployRanError
from deploy_ran.fileio import json_text, refuse_output_over_inputs
from deploy_ran.signals import run_cli

app = typer.Typer(
    name="deploy-ran",
    help="Take attention CNNs from PyTorch to ONNX, ONNX Runtime and TensorRT.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


def command(name: str, flags: dict[str, str] | None = None, on: typer.Typer = app):
    """``app.command`` that turns a :class:`DeployRanError` (or a signal) into a message and its
    exit code (:func:`cli_render.errors_as_exit_codes`).

    ``flags`` maps the library's parameter names to this command's flags where no parameter or
    group field of the command carries the name (``batch_size`` → ``--batch``); hints are
    rendered in flags through it (:mod:`cli_options.hints`).
    """

    def decorate(fn):
        if not hasattr(fn, "group_params"):
            fn = groups()(fn)  # every command: the typed-flag checks and hint spellings need it

        @functools.wraps(fn)
        def wrapper(*a: Any, **k: Any):
            with render.errors_as_exit_codes(flags):
                return fn(*a, **k)

        return on.command(name)(wrapper)

    return decorate


# --------------------------------------------------------------------------------------------
# models · inspect · doctor


@command("models")
def models_cmd(
    pattern: Annotated[
        str, typer.Argument(help="Part of a name ('resnet') or a shell pattern ('ran*_cifar').")
    ] = "*",
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
        show(models_report(specs))


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
        show(inspect_report(desc))


@command("doctor")
def doctor_cmd(as_json: o.AsJson = False) -> None:
    """Versions of the stack, CUDA, ONNX Runtime providers, TensorRT; a verdict and next steps."""
    from deploy_ran.environment import collect_environment, diagnose
    from deploy_ran.tables import doctor_table

    env = collect_environment()
    if as_json:
        print(json.dumps({**env, **diagnose(env)}, indent=2))
    else:
        render.doctor(doctor_table(env), diagnose(env))


# --------------------------------------------------------------------------------------------
# conversions: export (FP32 / FP16), calibrate (INT8 Q/DQ), build-engine


@command("export", flags={"overwrite_intermediate": "--force"})
@groups(export=EXPORT)
def export_cmd(
    name: Annotated[str, typer.Argument(help="Model name (see `models`), or an FP32 .onnx file.")],
    export: GroupValues,
    output: o.Output(o.OptPath, "Output path; default NAME.onnx.") = None,
    skip_parity: o.SkipParityOpt = False,
    precision: o.ExportPrecisionOpt = "fp32",
    keep_fp32: o.KeepFp32Opt = None,
    no_default_keep_fp32: o.NoDefaultKeepOpt = False,
    force: o.ReplaceDifferingOpt = False,
) -> None:
    """Export a model to a checked ONNX file (FP32 or FP16) with static-size bilinear upsampling."""
    if precision == "int8":
        raise DeployRanError(
            "INT8 needs calibration data, so it has its own command.",
            hint=f"Run `python cli.py export {name}` then `python cli.py calibrate {name}.onnx "
            "--calib-data FOLDER`.",
        )
    if precision != "fp16" and (keep_fp32 or no_default_keep_fp32):
        raise DeployRanError(
            "--keep-fp32 and --no-default-keep-fp32 apply to --precision fp16 only.",
            hint="Add --precision fp16, or leave them out.",
        )
    checkpoint = export.config.checkpoint
    refuse_output_over_inputs({"output": output}, {"checkpoint": checkpoint, "source": _file(name)})
    from deploy_ran.compare.runner_checks import RunnerChecks
    from deploy_ran.convert import Fp16Config, convert

    fp16 = Fp16Config(keep_fp32=tuple(keep_fp32 or ()), default_keep_fp32=not no_default_keep_fp32)
    with Progress(f"exporting {name}") as progress:
        result = convert(
            name, precision, output=output, export=export.config, fp16=fp16,
            checks=None if skip_parity else RunnerChecks(), progress=progress.say,
            overwrite_intermediate=force,
        )  # fmt: skip
    render.conversion(result, name, "export")


@command("calibrate")
@groups(calib=(CALIBRATION, CALIBRATE_OLD_NAMES))
def calibrate_cmd(
    model: Annotated[Path, typer.Argument(help="FP32 ONNX file (from `export`).")],
    calib: GroupValues,
    output: o.Output(o.OptPath, "Default MODEL.int8.onnx.") = None,
    as_json: o.AsJson = False,
) -> None:
    """Calibrate an FP32 ONNX file and write an INT8 Q/DQ ONNX file (TensorRT's explicit INT8)."""
    config = calib.config
    refuse_output_over_inputs({"output": output}, {"model": model, "data": _file(config.data)})
    from calibration.data import BUILTIN_NOTE
    from deploy_ran.compare.runner_checks import RunnerChecks
    from deploy_ran.convert import convert

    if config.data is None and not as_json:
        err_console.print(f"[yellow]built-in calibration sample:[/] {escape(BUILTIN_NOTE)}")
    with Progress(f"calibrating {model}", quiet=as_json) as progress:
        result = convert(
            model, "int8", output=output, calibration=config, checks=RunnerChecks(),
            progress=progress.say, calibration_progress=progress.phase,
        )  # fmt: skip
    render.conversion(result, model, "calibrate", show_report=not as_json)
    if as_json:
        print(json_text(result.int8.as_dict()), end="")


@command("build-engine", flags={"overwrite_intermediate": "--force"})
@groups(model=MODEL, calib=(CALIBRATION, BUILD_ENGINE_OLD_NAMES), engine=ENGINE)
def build_engine_cmd(
    target: Annotated[str, typer.Argument(help="Model name (exported first) or an .onnx file.")],
    model: GroupValues,
    calib: GroupValues,
    engine: GroupValues,
    fp16: o.Fp16Opt = False,
    int8: o.Int8Opt = False,
    output: o.Output(o.OptPath, "Plan path; default <onnx>.plan.") = None,
    force: o.ReplaceFp32Opt = False,
) -> None:
    """Build a TensorRT engine: export / FP16 / INT8-calibrate as needed, then a strongly typed build.

    Exits 3 (after writing the precision ONNX) where TensorRT or a GPU is missing, printing the
    command that finishes the build on a GPU host.
    """
    if fp16 and int8:
        raise DeployRanError("--fp16 and --int8 exclude each other.", hint="Pick one precision.")
    calib.refuse_unless(int8, "--int8")
    checkpoint, data = model.config.checkpoint, calib.config.data
    inputs = {"target": _file(target), "checkpoint": checkpoint, "data": _file(data)}
    refuse_output_over_inputs(
        {"output": output}, {**inputs, "timing_cache": engine.config.timing_cache}
    )
    from deploy_ran.compare.runner_checks import RunnerChecks
    from deploy_ran.convert import EngineUnavailable, convert
    from deploy_ran.trt_compat import EXIT_NO_TENSORRT

    with Progress(f"building {target}") as progress:
        try:
            result = convert(
                target, "fp16" if fp16 else "int8" if int8 else None, export=model.config,
                calibration=calib.config, checks=RunnerChecks(),
                workdir=output.parent if output is not None else Path("."), engine=engine.config,
                overwrite_intermediate=force,
                plan=output, progress=progress.say, calibration_progress=progress.phase,
                engine_log=lambda lvl, msg: err_console.print(f"[dim]TensorRT {lvl}:[/] {escape(msg)}"),
            )  # fmt: skip
        except EngineUnavailable as exc:
            result = exc.result
            print_error(exc)
    if not render.engine_build(result, output, finish_flags(engine.config)):
        raise typer.Exit(EXIT_NO_TENSORRT)


# --------------------------------------------------------------------------------------------
# demo · visualize


@command("demo")
@groups(renamed={"calib_images": "--calibration-images", "iterations": "--runs"})
def demo_cmd(
    model: o.Opt(str, "Model to run the pipeline on.") = "ran92",
    image_size: o.ImageSizeOpt = None,
    workdir: o.Opt(Path, "Folder for the artifacts and reports.") = Path("demo_out"),
    iterations: o.RunsOpt = 10,
    calib_images: o.DemoImagesOpt = 64,
) -> None:
    """The main job on a built-in default: export → FP16 → INT8 → verify → bench → engine (CPU)."""
    from deploy_ran.pipeline import run_demo

    workdir.mkdir(parents=True, exist_ok=True)
    options = dict(image_size=image_size, runs=iterations, calibration_images=calib_images)
    run_demo(model, workdir, console=console, step=Progress, **options)


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

    with Progress(f"computing attention maps of {source}"):
        result = visualize(source, images, output, checkpoint=checkpoint, image_size=image_size)
    show(attention_report(result, output))


# --------------------------------------------------------------------------------------------
# verify · bench · infer: runners on any backend


@command("verify", flags={"num_inputs": "-n", "batch_size": "--batch"})
@groups(runner=RUNNER, criteria=CRITERIA)
def verify_cmd(
    reference: Annotated[str, typer.Argument(help="Model name, .onnx file or engine.")],
    candidate: Annotated[str, typer.Argument(help="Model name, .onnx file or engine.")],
    runner: GroupValues,
    criteria: GroupValues,
    data: o.VerifyDataOpt = None,
    num_images: o.CountOpt = None,
    batch: o.Batch("Batch size for running both sides") = 8,
    seed: o.SeedOpt = 0,
    checkpoint: o.CheckpointOpt = None,
    candidate_checkpoint: o.CandidateCheckpointOpt = None,
    reference_precision: o.TorchPrecisionOpt = None,
    candidate_precision: o.TorchPrecisionOpt = None,
    image_size: o.ImageSizeOpt = None,
    show_worst: o.ShowWorstOpt = 5,
    allow_tf32: o.Tf32Opt = False,
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
    with Progress("verifying", quiet=as_json) as progress:
        result = verify(
            reference, candidate, data=data, num_inputs=num_images, batch_size=batch, seed=seed,
            criteria=criteria.config, reference_precision=reference_precision,
            candidate_precision=candidate_precision, image_size=image_size,
            show_worst=show_worst, allow_tf32=allow_tf32, **weights, **runner.config,
            progress=lambda side, done, total: progress.say(f"{side} {done}/{total}"),
        )  # fmt: skip
    if output is not None:
        atomic_write_text(output, json_text(result.as_dict()))
    if as_json:
        print(json_text(result.as_dict()), end="")
    else:
        show(verify_report(result, output))
    if not result.passed:
        raise typer.Exit(1)


@command("evaluate", flags={"batch_size": "--batch", "max_images": "--num-images"})
@groups(evaluate=EVALUATE, runner=RUNNER)
def evaluate_cmd(
    targets: Annotated[list[str], typer.Argument(help="Model names, .onnx, engines, triton://.")],
    evaluate: GroupValues,
    runner: GroupValues,
    data: o.EvalDataOpt,
    checkpoint: o.CheckpointOpt = None,
    image_size: o.ImageSizeOpt = None,
    output: o.Output(o.OptPath, "Write the JSON here.") = None,
    plot: o.PlotOpt = None,
    as_json: o.AsJson = False,
) -> None:
    """Top-1/top-5, per-class accuracy and calibration on labelled data; each target against the
    first (or --reference): Δ top-1 with a 95 % interval and an exact McNemar p-value."""
    from deploy_ran.evaluate import evaluate as run_evaluate
    from deploy_ran.evaluate.output import check_outputs, write_outputs
    from deploy_ran.tables import evaluate_report

    config = {**evaluate.config, "checkpoint": checkpoint, "image_size": image_size}
    inputs = {"data": _file(data), "labels": config.get("labels"), "checkpoint": checkpoint}
    check_outputs(output, plot, {**{t: _file(t) for t in targets}, **inputs})
    with render.InferBar(quiet=as_json, label="evaluate") as progress:
        result = run_evaluate(targets, data, progress=progress, **config, **runner.config)
    files = write_outputs(result, output, plot)
    if as_json:
        print(json_text(result.as_dict()), end="")
    else:
        show(evaluate_report(result, files))


@command("bench")
@groups(renamed={"batch": "--batch-sizes"})
def bench_cmd(
    model: Annotated[str, typer.Argument(help="Model name, .onnx file, engine or triton:// URL.")],
    backends: o.BackendsOpt = None,
    artifacts: o.ArtifactsOpt = None,
    batch: o.BatchSizesOpt = "1",
    warmup: o.WarmupOpt = 1.0,
    duration: o.DurationOpt = 5.0,
    iterations: o.IterationsOpt = None,
    device: o.DeviceOpt = None,
    copies: o.CopiesOpt = True,
    cuda_graphs: o.CudaGraphsOpt = False,
    interleave: o.InterleaveOpt = False,
    threads: o.ThreadsOpt = None,
    torch_precisions: o.TorchPrecisionsOpt = "fp32",
    torch_modes: o.TorchModesOpt = "eager",
    torch_layouts: o.TorchLayoutsOpt = "default",
    ort_cuda_options: o.OrtCudaOptionsOpt = None,
    allow_tf32: o.Tf32Opt = False,
    loader: o.LoaderOpt = False,
    image_size: o.ImageSizeOpt = None,
    checkpoint: o.CheckpointOpt = None,
    workdir: o.WorkdirOpt = None,
    output: o.Output(Path, "Folder (names from the environment) or FILE.json.") = Path(
        "bench_results"
    ),
    no_plot: o.NoPlotOpt = False,
    data: o.BenchDataOpt = None,
    labels: o.LabelsOpt = None,
    as_json: o.AsJson = False,
) -> None:
    """Latency and throughput per backend × precision × batch size, with the environment (and
    top-1 on labelled --data)."""
    from deploy_ran.bench import BenchSettings, run_benchmark
    from deploy_ran.tables import bench_report

    artifact_list = [a.strip() for item in (artifacts or []) for a in item.split(",") if a.strip()]
    files = {f"artifact {a}": _file(a) for a in artifact_list}
    inputs = {"checkpoint": checkpoint, "data": _file(data), "labels": labels, **files}
    refuse_output_over_inputs({"output": output}, inputs)
    settings = BenchSettings(
        model, backends=backends, artifacts=artifact_list, batch_sizes=batch,
        warmup=warmup, duration=duration, iterations=iterations, device=device, copies=copies,
        cuda_graphs=cuda_graphs, interleave=interleave, threads=threads, allow_tf32=allow_tf32,
        torch_precisions=torch_precisions, image_size=image_size, checkpoint=checkpoint,
        workdir=workdir, output=output, plot=not no_plot, torch_modes=torch_modes,
        torch_layouts=torch_layouts, ort_cuda_options=ort_cuda_options, loader=loader,
        data=data, labels=labels,
    )  # fmt: skip
    with Progress(f"benchmarking {model}", quiet=as_json) as progress:
        result = run_benchmark(
            settings, progress=progress.say, row_done=lambda r: progress.done(render.bench_row(r))
        )
    if as_json:
        print(json_text(result.as_dict()), end="")
    else:
        show(bench_report(result))


@command("infer", flags={"batch_size": "--batch"})
@groups(runner=RUNNER, ray=RAY)
def infer_cmd(
    target: Annotated[str, typer.Argument(help="Model name, .onnx file or engine.")],
    images: o.ImagesOpt,
    runner: GroupValues,
    ray: GroupValues,
    batch: o.Batch("Images per batch") = 32,
    topk: o.TopkOpt = 5,
    labels: o.LabelsOpt = None,
    output: o.Output(Path, "predictions.jsonl or .csv.") = Path("predictions.jsonl"),
    resume: o.ResumeOpt = False,
    overwrite: o.OverwriteOpt = False,
    workers: o.WorkersOpt = None,
    checkpoint: o.CheckpointOpt = None,
    precision: o.TorchPrecisionOpt = None,
    output_name: o.OutputNameOpt = None,
) -> None:
    """Top-k predictions for many images: batched, resumable, bad images recorded."""
    from deploy_ran.infer import run_inference
    from deploy_ran.tables import infer_summary

    run, extra = run_inference, {}
    if ray.config.pop("ray"):
        from deploy_ran.infer.ray import run_inference_ray as run

        extra = {"address": None, "gpus_per_worker": 0.0, **ray.config}
    with render.InferBar() as progress:
        result = run(
            target, images, output, **extra, batch_size=batch, topk=topk, labels=labels,
            resume=resume, overwrite=overwrite, workers=workers, checkpoint=checkpoint,
            precision=precision, output_name=output_name, progress=progress, **runner.config,
        )  # fmt: skip
    if not render.infer_result(infer_summary(result), result):
        raise typer.Exit(1)


@command("triton-repo")
@groups(model=MODEL, repo=TRITON_REPO)
def triton_repo_cmd(
    targets: Annotated[list[str], typer.Argument(help=".onnx / .plan / model names.")],
    model: GroupValues,
    repo: GroupValues,
    output: o.RepoOutputOpt = Path("model_repository"),
) -> None:
    """Write a Triton Inference Server model repository (config.pbtxt through Triton's schema)."""
    from deploy_ran.compare.runner_checks import RunnerChecks
    from deploy_ran.convert import convert
    from deploy_ran.fileio import temp_dir
    from deploy_ran.tables import triton_summary
    from exporters.triton import write_repository

    options = repo.config
    options.check()  # before any export
    with temp_dir("deploy-ran-triton-") as tmp, Progress("writing the repository") as say:
        export, checks = model.config, RunnerChecks()
        files = [
            convert(t, export=export, checks=checks, workdir=tmp, progress=say).path
            for t in targets
        ]
        result = write_repository(files, output, options)
    show(triton_summary(result))


def main() -> None:
    """Entry point of the ``deploy-ran`` console script."""
    run_cli(app)  # SIGTERM unwinds like Ctrl-C: temp files are removed


if __name__ == "__main__":
    sys.exit(main())
