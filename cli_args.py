"""The command line's option groups, declared once and shared by every command that takes them.

Used only by ``cli.py`` (Polygraphy's idea: one declaration per option group, so ``--device`` or
``--batch`` means and checks the same thing everywhere). Every value is validated where it is
parsed, and a refusal names the allowed range: ``Invalid value for '--batch': must be an integer
from 1 to 4096, got 0.`` (exit code 2). Zero is a value like any other, never "unset": options
that can be unset default to ``None``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from deploy_ran.device import Device, DeviceError
from exporters.opsets import MIN_OPSET  # the exporter's own value, not a copy

# Sane maxima: far beyond any real use, small enough to refuse a typo before it costs memory.
MAX_BATCH = 4096
MAX_IMAGE_SIZE = 4096
MAX_IMAGES = 1_000_000
MAX_CLASSES = 100_000
MAX_THREADS = 1024
MAX_SECONDS = 86_400.0


# --------------------------------------------------------------------------------------------
# value parsers: a callable str → value that raises typer.BadParameter with the allowed values


def _fail(message: str) -> None:
    raise typer.BadParameter(message)


class Number:
    """An int or a finite float within bounds; the refusal says which values are allowed."""

    def __init__(
        self,
        kind: type = int,
        lo: float | None = None,
        hi: float | None = None,
        *,
        lo_open: bool = False,
        hi_fn: Callable[[], int] | None = None,
    ) -> None:
        self.kind, self.lo, self.hi, self.lo_open = kind, lo, hi, lo_open
        self.hi_fn = hi_fn  # a maximum known only at run time (the installed onnx's opset)

    def describe(self) -> str:
        hi = self.hi_fn() if self.hi_fn else self.hi
        what = "an integer" if self.kind is int else "a number"
        if self.lo is not None and hi is not None:
            if self.kind is int:
                return f"{what} from {self.lo:,} to {hi:,}"
            return f"{what} in {'(' if self.lo_open else '['}{self.lo:g}, {hi:g}]"
        if self.lo is not None:
            return f"{what} {'>' if self.lo_open else '≥'} {self.lo:g}"
        return f"a finite {'integer' if self.kind is int else 'number'}"

    def __call__(self, value: Any) -> Any:
        if isinstance(value, self.kind) and not isinstance(value, bool):
            number = value
        else:
            try:
                number = self.kind(str(value).strip())
            except ValueError:
                _fail(f"must be {self.describe()}, got {value!r}.")
        if isinstance(number, float) and not math.isfinite(number):
            _fail(f"must be {self.describe()}, got {value}.")
        hi = self.hi_fn() if self.hi_fn else self.hi
        too_low = self.lo is not None and (number <= self.lo if self.lo_open else number < self.lo)
        if too_low or (hi is not None and number > hi):
            _fail(f"must be {self.describe()}, got {value}.")
        return number


class Choice:
    """One of a few words (case-insensitive); the refusal lists them."""

    def __init__(self, *values: str) -> None:
        self.values = values

    def __call__(self, value: Any) -> str:
        text = str(value).strip().lower()
        if text not in self.values:
            _fail(f"{value!r} is not one of {', '.join(map(repr, self.values))}.")
        return text


class ListOf:
    """A comma-separated list whose items are each checked by ``item``."""

    def __init__(self, item: Callable[[Any], Any], what: str) -> None:
        self.item, self.what = item, what

    def __call__(self, value: Any) -> list:
        if isinstance(value, list):
            return value
        items = [v.strip() for v in str(value).split(",") if v.strip()]
        if not items:
            _fail(f"takes comma-separated {self.what}, got {value!r}.")
        try:
            return [self.item(v) for v in items]
        except typer.BadParameter as exc:
            _fail(f"takes comma-separated {self.what}; {exc.message}")
        raise AssertionError("unreachable")


def device(value: Any) -> str | None:
    """``cpu``, ``cuda`` or ``cuda:N``, checked by :class:`deploy_ran.device.Device` (the one parser)."""
    if value is None:
        return None
    try:
        return str(Device.parse(value))
    except DeviceError as exc:
        _fail(f"{exc.message} {exc.hint or ''}".strip())
    raise AssertionError("unreachable")


PROVIDER_SHORT = ("cpu", "cuda", "tensorrt", "trt", "openvino", "dml", "coreml")


def providers(value: Any) -> str:
    """ONNX Runtime execution providers: short names or full ``...ExecutionProvider`` names."""
    items = [v.strip() for v in str(value).split(",") if v.strip()]
    bad = [
        v for v in items if v.lower() not in PROVIDER_SHORT and not v.endswith("ExecutionProvider")
    ]
    if not items or bad:
        _fail(
            f"takes comma-separated providers from {', '.join(PROVIDER_SHORT)} (or full "
            f"...ExecutionProvider names), got {value!r}."
        )
    return str(value)


def abn_outputs(value: Any) -> tuple[str, ...]:
    """``--outputs``: checked by the model's own parser, refused at parse time."""
    from deploy_ran.errors import DeployRanError
    from deploy_ran.models.abn import parse_outputs

    try:
        return parse_outputs(str(value))
    except DeployRanError as exc:
        _fail(f"{exc.message} {exc.hint or ''}".strip())
    raise AssertionError("unreachable")


def _max_opset() -> int:
    import onnx.defs

    return int(onnx.defs.onnx_opset_version())


TORCH_PRECISIONS = ("fp32", "fp16", "autocast")  # deploy_ran.runners.torch_runner
TORCH_LAYOUTS = ("default", "nchw", "channels_last")  # deploy_ran.runners.torch_runner
COUNT = Number(int, 1, MAX_IMAGES)
BATCH = Number(int, 1, MAX_BATCH)
SIZE = Number(int, 1, MAX_IMAGE_SIZE)
FRACTION = Number(float, 0.0, 1.0)
NONNEG = Number(float, 0.0, None)
SECONDS = Number(float, 0.0, MAX_SECONDS)


def opt(*decls: str, help: str, parser: Callable[[Any], Any] | None = None, **kw: Any) -> Any:
    """``typer.Option`` with a checking parser."""
    return typer.Option(*decls, help=help, parser=parser, **kw)


def Opt(kind: Any, help: str, parser: Callable[[Any], Any] | None = None, *decls: str) -> Any:  # noqa: N802
    """An option declaration to reuse: ``Annotated[kind, Option(*decls, help, parser)]``."""
    return Annotated[kind, typer.Option(*decls, help=help, parser=parser)]


def Flag(name: str, help: str) -> Any:  # noqa: N802
    """An on/off switch (``--json``)."""
    return Annotated[bool, typer.Option(name, help=help)]


def Batch(help: str) -> Any:  # noqa: N802
    return Opt(int, f"{help} (1-{MAX_BATCH}).", BATCH)


def Output(kind: Any, help: str) -> Any:  # noqa: N802
    """``--output/-o``, shown under the Output heading of every command's help."""
    return Annotated[kind, typer.Option("--output", "-o", help=help, rich_help_panel="Output")]


OptPath, OptInt, OptStr, OptFloat = Optional[Path], Optional[int], Optional[str], Optional[float]

# --------------------------------------------------------------------------------------------
# shared options (one declaration each)

AsJson = Flag("--json", "Print JSON instead of tables.")
DeviceOpt = Opt(OptStr, "cpu | cuda | cuda:N (default: cpu; cuda for an engine).", device)
ProviderOpt = Opt(
    OptStr, "ONNX Runtime providers, comma-separated: cpu, cuda, tensorrt.", providers
)
ThreadsOpt = Opt(OptInt, f"CPU threads per backend (1-{MAX_THREADS}).", Number(int, 1, MAX_THREADS))
TorchPrecisionOpt = Opt(OptStr, "PyTorch side: fp32 | fp16 | autocast.", Choice(*TORCH_PRECISIONS))
SeedOpt = Opt(int, "Seed of the random inputs / of the subset.", Number(int, 0, 2**32 - 1))
CheckpointOpt = Opt(OptPath, "Weights (.pt/.pth state_dict) for a model name.")
ImageSizeOpt = Opt(OptInt, f"Input H=W (1-{MAX_IMAGE_SIZE}); default from the model or file.", SIZE)
NumClassesOpt = Opt(
    OptInt, "Classifier size; default from the checkpoint or spec.", Number(int, 1, MAX_CLASSES)
)
CountOpt = Opt(
    OptInt, f"Inputs to use, 1-{MAX_IMAGES:,} (random: 16).", COUNT, "--num-images", "-n"
)
WorkdirOpt = Opt(OptPath, "Keep the FP32 ONNX bench exports here.")

# model options (export)
AttentionOpt = Opt(
    OptStr, "RAN attention: mixed | channel | spatial.", Choice("mixed", "channel", "spatial")
)
ArlOpt = Annotated[
    Optional[bool],
    typer.Option("--arl/--nal", help="RAN fusion: (1+M)·T (ARL) or M·T (NAL).", show_default=False),
]
MaskOpt = Opt(
    OptStr, "RAN mask: encoder_decoder | local_conv.", Choice("encoder_decoder", "local_conv")
)
VariantOpt = Opt(OptStr, "RAN arithmetic: paper | port.", Choice("paper", "port"))
AttentionMapsOpt = Flag("--attention-maps", "Also output every attention map.")
OutputsOpt = Opt(
    OptStr, "ABN outputs, comma-separated: logits, attention_logits, attention.", abn_outputs
)


def model_options(
    attention: str | None,
    arl: bool | None,
    mask: str | None,
    variant: str | None,
    attention_maps: bool = False,
    outputs: tuple | None = None,
) -> dict[str, Any]:
    """Model options given on the command line; unset ones are left to the model's defaults."""
    given = {"attention": attention, "attention_residual": arl, "mask": mask, "variant": variant}
    options = {k: v for k, v in {**given, "outputs": outputs}.items() if v is not None}
    if attention_maps:
        options["return_attention"] = True
    return options


# export
StaticBatchOpt = Flag("--static-batch", "Fixed batch (no Shape ops in the graph).")
OpsetOpt = Opt(
    int,
    f"ONNX opset ({MIN_OPSET} up to the newest the installed onnx knows).",
    Number(int, MIN_OPSET, None, hi_fn=_max_opset),
)
NoSimplifyOpt = Flag("--no-simplify", "Skip onnxslim.")
SkipParityOpt = Flag("--skip-parity", "Do not compare with the reference (not recommended).")
ExportPrecisionOpt = Opt(
    str,
    "fp32, or fp16 (also writes the FP32 file; NAME may be an FP32 .onnx file). INT8: see `calibrate`.",
    Choice("fp32", "fp16", "int8"),
)
KeepFp32Opt = Opt(
    Optional[list[str]],
    "FP16: op type to keep in FP32 (repeatable; added to the defaults).",
    None,
    "--keep-fp32",
)
NoDefaultKeepOpt = Flag(
    "--no-default-keep-fp32", "FP16: do not keep the default ops (reductions, Sqrt, Pow) in FP32."
)

# calibration
CalibDataOpt = Opt(
    OptStr,
    "Image folder / glob / .txt list, preprocessed .npy/.npz (file.npz:key), or 'synthetic'. "
    "Default: the built-in sample photos (a demo, not real calibration data).",
)
MethodOpt = Opt(
    str,
    "percentile | entropy | minmax (see the README's digits table).",
    Choice("percentile", "entropy", "minmax"),
)
PercentileOpt = Opt(
    float,
    "Percentile for --method percentile, in (50, 100].",
    Number(float, 50.0, 100.0, lo_open=True),
)
BinsOpt = Opt(
    OptInt,
    "Histogram bins over |x|, 256-1048576 (default 2048, as TensorRT's entropy calibrator).",
    Number(int, 256, 1 << 20),
)
CalibImagesOpt = Opt(int, f"Calibration images, a seeded subset (1-{MAX_IMAGES:,}).", COUNT)
EvalImagesOpt = Opt(
    int,
    f"Calibration images (the first of the subset) for the FP32 comparisons (1-{MAX_IMAGES:,}).",
    COUNT,
)
ExcludeOpt = Opt(
    Optional[list[str]],
    "Keep in FP32: node or group name patterns (stage3.*, stage1.module1, node_conv2d_12; repeatable or comma-separated), or 'auto'.",
)
TargetAgreementOpt = Opt(
    float,
    "With --exclude auto: top-1 agreement with FP32 to reach, in (0, 1].",
    Number(float, 0.0, 1.0, lo_open=True),
)
IncludeAttentionOpt = Flag(
    "--include-attention", "Also quantize Sigmoid/Softmax/Resize and the attention-gate Mul inputs."
)
SensitivityOpt = Flag("--sensitivity", "Quantize one group at a time: table + JSON.")
NoCacheOpt = Flag("--no-cache", "Neither read nor write the range cache.")
FloatPrecisionOpt = Opt(
    str,
    "INT8: precision of the part left unquantized: fp16 (default, as NVIDIA's tools) | fp32 (FP32 I/O either way).",
    Choice("fp16", "fp32"),
)
PlacementOpt = Opt(
    str,
    "INT8: where Q/DQ go: trt (default; BN, MaxPool, Resize, gate Mul inputs too, for TensorRT's fusions) | conservative (Conv/Gemm and residual-Add inputs only).",
    Choice("trt", "conservative"),
)
AllowFailingOpt = Flag(
    "--allow-failing", "Write the INT8 file even when it fails verify's INT8 criteria (warned)."
)
CalibDeviceOpt = Opt(str, "Collect ranges on cpu | cuda | cuda:N (ORT's CUDA provider).", device)

# TensorRT build
Fp16Opt = Flag("--fp16", "FP16 engine (from an FP16 ONNX made first).")
Int8Opt = Flag("--int8", "INT8 engine (from a Q/DQ ONNX calibrated first).")
MinBatchOpt = Opt(OptInt, f"Profile: smallest batch, 1-{MAX_BATCH} (default 1).", BATCH)
OptBatchOpt = Opt(OptInt, f"Profile: batch TensorRT tunes for, 1-{MAX_BATCH} (default 8).", BATCH)
MaxBatchOpt = Opt(OptInt, f"Profile: largest batch, 1-{MAX_BATCH} (default 32).", BATCH)
WorkspaceOpt = Opt(
    OptInt, "Workspace limit in MiB, 1-1048576 (default: TensorRT's).", Number(int, 1, 1 << 20)
)
OptLevelOpt = Opt(int, "Builder optimization level 0-5.", Number(int, 0, 5))
TimingCacheOpt = Opt(OptPath, "Timing cache file, loaded and saved.")
Tf32Opt = Flag("--allow-tf32", "Allow TF32 (off: FP32 parity).")
CalibTf32Opt = Flag("--calib-allow-tf32", "Calibration on CUDA: allow TF32 (off: FP32 ranges).")
VersionCompatibleOpt = Flag("--version-compatible", "Plan runs on later TensorRT versions.")
HardwareOpt = Opt(
    str, "none | ampere_plus | same_cc (10.16+).", Choice("none", "ampere_plus", "same_cc")
)
LayerInfoOpt = Flag("--layer-info", "Per-layer report (JSON) and layer precisions.")
VerboseOpt = Flag("--verbose", "Print TensorRT's log.")


def check_profile(**batches: int | None) -> None:
    """``--min-batch ≤ --opt-batch ≤ --max-batch`` among those given, checked before any work."""
    given = [(f"--{k.replace('_', '-')}", v) for k, v in batches.items() if v is not None]
    if any(a[1] > b[1] for a, b in zip(given, given[1:])):
        raise typer.BadParameter(
            "the profile must satisfy --min-batch ≤ --opt-batch ≤ --max-batch, got "
            + ", ".join(f"{f} {v}" for f, v in given)
            + "."
        )


# demo · visualize · infer
RunsOpt = Opt(
    int, "Timed runs per backend for the latency comparison (1-100000).", Number(int, 1, 100_000)
)
DemoImagesOpt = Opt(
    int,
    "Built-in calibration images for INT8 (a demo: 500+ in real use; 1-100000).",
    Number(int, 1, 100_000),
)
ImagesArg = Annotated[
    list[str], typer.Argument(help="Image files, folders, globs or .txt lists of paths.")
]
ImagesOpt = Opt(str, "Folder, glob ('imgs/*.jpg') or .txt list.")
TopkOpt = Opt(int, "Classes per image (1-1000).", Number(int, 1, 1000))
LabelsOpt = Opt(OptPath, "Class names, one per line, in index order.")
ResumeOpt = Flag("--resume", "Skip images the output already holds; append.")
OverwriteOpt = Flag("--overwrite", "Start the output again.")
WorkersOpt = Opt(
    OptInt, "Decode/preprocess processes, 0-256 (0: in the main process).", Number(int, 0, 256)
)
OutputNameOpt = Opt(OptStr, "Which output holds the logits (default: logits).")
RayOpt = Flag("--ray", "Run on Ray Data: one runner per actor (pip install 'deploy-ran\\[ray]').")
RayAddressOpt = Opt(OptStr, "With --ray: auto | HOST:PORT (default: RAY_ADDRESS, else a local Ray).")
GpusPerWorkerOpt = Opt(
    OptFloat, "With --ray: GPUs per actor, 0-8 (0.5 shares a GPU; needs --device cuda).",
    Number(float, 0.0, 8.0),
)

# triton-repo: Triton's model repository (config.pbtxt through Triton's own schema)
RepoOutputOpt = Opt(Path, "Repository folder.", None, "--output", "-o")
RepoNameOpt = Opt(OptStr, "Model name (one target; default: from the file name).")
RepoMaxBatchOpt = Opt(
    OptInt, "max_batch_size, 0-4096 (default 32, never above a plan's profile; 0: none).",
    Number(int, 0, MAX_BATCH),
)
InstancesOpt = Opt(int, "Model instances (instance_group count, 1-64).", Number(int, 1, 64))
KindOpt = Opt(
    str, "Instance kind: auto (GPU where the server has one) | gpu | cpu.", Choice("auto", "gpu", "cpu")
)
RepoThreadsOpt = Opt(
    OptInt, "CPU instances of an ONNX model: ONNX Runtime intra-op threads each (1-1024).",
    Number(int, 1, 1024), "--threads",
)
MaxQueueSizeOpt = Opt(
    int, "Requests waiting before Triton rejects more (bounded queue, 1-1,000,000).",
    Number(int, 1, 1_000_000),
)
TrtCachePathOpt = Opt(
    OptStr, "--tensorrt-accelerator: engine/timing cache folder on the server (persistent volume).",
)
TrtWorkspaceOpt = Opt(
    int, "--tensorrt-accelerator: TensorRT workspace in MiB (1-1,048,576).", Number(int, 1, 1 << 20)
)
QueueDelayOpt = Opt(
    int, "Dynamic batching: longest wait to fill a batch, in µs (0-10,000,000).",
    Number(int, 0, 10_000_000),
)
PreprocessOpt = Flag("--preprocess", "Add a Python-backend image decoder and an ensemble.")
TrtAcceleratorOpt = Flag(
    "--tensorrt-accelerator", "ONNX: run under ORT's TensorRT provider (Q/DQ: precision_mode INT8)."
)
ReplaceFp32Opt = Flag(
    "--force", "Replace an existing NAME.onnx that differs from this request (a matching one is reused)."
)
ForceOpt = Flag("--force", "Replace this command's files in existing model folders (others kept).")
ReplaceDifferingOpt = Flag(
    "--force", "Replace an existing NAME.onnx (.fp16/.int8) that differs from this request."
)

# evaluate: labelled data
EvalDataOpt = Opt(
    str,
    "Labelled images: a VAL/<class>/* folder, a path,label .csv/.tsv, or an .npz with x and y "
    "(file.npz:test reads x_test, y_test).",
    None,
    "--data",
)
BenchDataOpt = Opt(
    OptStr,
    "Also measure each row's top-1 on labelled images (folder VAL/<class>/*, path,label "
    ".csv/.tsv, or .npz x/y) and its Δ vs eager PyTorch FP32.",
    None,
    "--data",
)
ReferenceOpt = Opt(OptStr, "Target the others are compared with (default: the first).")
EvalCountOpt = Opt(
    OptInt, f"Evaluate the first N samples only (1-{MAX_IMAGES:,}).", COUNT, "--num-images", "-n"
)
PlotOpt = Opt(OptPath, "Write a PNG: accuracy with intervals, confusion matrices (<= 50 classes).")
EvalWorkersOpt = Opt(
    OptInt, "Image decoding threads (1-256; default: up to 4).", Number(int, 1, 256), "--workers"
)

# verify: data, weights and thresholds (override or add criteria)
VerifyDataOpt = Opt(OptPath, "Images (folder, glob, .txt list) or a .npy/.npz; default: random.")
CandidateCheckpointOpt = Opt(OptPath, "Other weights for a model-name candidate.")
ShowWorstOpt = Opt(int, "Worst-matching inputs to name (0-1000).", Number(int, 0, 1000))
MaxRelL2Opt = Opt(OptFloat, "Override: relative L2 ≤ (≥ 0).", NONNEG)
MinCosineOpt = Opt(OptFloat, "Override: cosine ≥ (in [-1, 1]).", Number(float, -1.0, 1.0))
MinTop1Opt = Opt(OptFloat, "Override: top-1 agreement ≥ (in [0, 1]).", FRACTION)
MinTop5Opt = Opt(OptFloat, "Add: top-5 agreement ≥ (in [0, 1]).", FRACTION)
MinPsnrOpt = Opt(OptFloat, "Add: PSNR ≥ (dB).", Number(float))
MaxAbsOpt = Opt(OptFloat, "Add: max abs error ≤ (≥ 0).", NONNEG)
AtolOpt = Opt(OptFloat, "Add: |c-r| ≤ atol + rtol·|r| everywhere (≥ 0).", NONNEG)
RtolOpt = Opt(OptFloat, "Relative part of the --atol check (≥ 0).", NONNEG)

# bench
def backend(value: Any) -> str:
    """A registered backend kind, read from the runner registry when the flag is given (the
    registry loads the backends, so ``--help`` does not pay for it)."""
    from deploy_ran.runners import list_backends

    return Choice(*list_backends())(value)


BackendsOpt = Opt(
    OptStr,
    "Comma-separated backends: torch, ort, trt, ... (default torch,ort).",
    ListOf(backend, "backends"),
)
ArtifactsOpt = Opt(
    Optional[list[str]], "Existing .onnx (fp32/fp16/int8) or .plan files; repeat or comma-separate."
)
BatchSizesOpt = Opt(
    str,
    f"Batch sizes, comma-separated (each 1-{MAX_BATCH}): one row per backend and batch.",
    ListOf(BATCH, f"integers (positive batch sizes, 1-{MAX_BATCH})"),
)
WarmupOpt = Opt(float, "Warm-up seconds per row (0-86400).", SECONDS)
DurationOpt = Opt(
    float, "Timed seconds per row (0-86400, > 0).", Number(float, 0.0, MAX_SECONDS, lo_open=True)
)
IterationsOpt = Opt(
    OptInt, "Timed runs per row, 1-10000000 (instead of --duration).", Number(int, 1, 10_000_000)
)
CopiesOpt = Annotated[
    bool, typer.Option("--copies/--no-copies", help="GPU: include host↔device copies in the time.")
]
CudaGraphsOpt = Flag("--cuda-graphs", "Capture CUDA graphs where the backend can.")
InterleaveOpt = Flag("--interleave", "Backends take turns run by run (shared machines).")
TorchPrecisionsOpt = Opt(
    str, "PyTorch rows: fp32,fp16,autocast.", ListOf(Choice(*TORCH_PRECISIONS), "precisions")
)
NoPlotOpt = Flag("--no-plot", "Skip the PNG.")
TorchModesOpt = Opt(
    str,
    "PyTorch rows per precision: eager,compile (torch.compile; compile time reported apart).",
    ListOf(Choice("eager", "compile"), "modes"),
)
TorchLayoutsOpt = Opt(
    str,
    "PyTorch rows per precision, one per layout: default (channels_last, except fp32 on CUDA: "
    "NCHW), nchw, channels_last; e.g. nchw,channels_last side by side.",
    ListOf(Choice(*TORCH_LAYOUTS), "layouts"),
)


def key_values(value: Any) -> dict[str, str]:
    """``KEY=VALUE,KEY=VALUE`` → a dict (ONNX Runtime provider options)."""
    if isinstance(value, dict):
        return value
    pairs = [p.strip() for p in str(value).split(",") if p.strip()]
    bad = [p for p in pairs if "=" not in p or not p.split("=", 1)[0].strip()]
    if not pairs or bad:
        _fail(f"takes KEY=VALUE pairs separated by commas, got {value!r}.")
    return {k.strip(): v.strip() for k, v in (p.split("=", 1) for p in pairs)}


OrtCudaOptionsOpt = Opt(
    OptStr,
    "ORT CUDA provider options KEY=VALUE,... over the per-precision defaults (prefer_nhwc, "
    "cudnn_conv_algo_search=EXHAUSTIVE|HEURISTIC|DEFAULT, cudnn_conv_use_max_workspace).",
    key_values,
)
LoaderOpt = Flag("--loader", "Also time one infer loader worker on 12-MP JPEGs (full vs reduced).")
