"""ONNX (FP32, FP16 or INT8 Q/DQ) → TensorRT plan, with a sidecar JSON that describes it.

Networks are built strongly typed on TensorRT 10 and 11 (see :mod:`deploy_ran.trt_compat`), so
the precision of the engine is the precision of the ONNX it came from: make ``model.fp16.onnx`` or
``model.int8.onnx`` first (``export --precision fp16``, ``calibrate``), then build. The plan is a
plain serialized engine that ``trtexec --loadEngine`` and Triton accept; everything else a later
stage needs (input spec, profile, precision, TensorRT version, GPU, source ONNX hash, options) goes
into ``<plan>.json`` beside it, never into the plan.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import onnx

import deploy_ran
from deploy_ran.artifacts import ArtifactInfo, get_metadata, load_onnx, precision_of
from deploy_ran.errors import DeployRanError
from deploy_ran.fileio import atomic_path, check_writable, sha256_file
from deploy_ran.onnx_graph import graph_inputs
from deploy_ran.trt_compat import (
    SIDECAR_FORMAT,
    SIDECAR_VERSION,
    EngineError,
    TensorRTUnavailable,
    current_gpu,
    deserialize_engine,
    hardware_compatibility_level,
    import_tensorrt,
    make_logger,
    network_flags,
    read_sidecar,  # noqa: F401 - re-exported: plans and sidecars belong together
    sidecar_path,
)

MAX_OPTIMIZATION_LEVEL = 5


@dataclass
class EngineBuildOptions:
    """Everything that changes the engine; recorded in the sidecar."""

    min_batch: int | None = None  # None: 1, or the ONNX's static batch
    opt_batch: int | None = None  # None: 8 (clipped to the range), or the static batch
    max_batch: int | None = None  # None: 32, or the static batch
    workspace_mib: int | None = None  # None: TensorRT's default (the device's memory)
    optimization_level: int = 3  # TensorRT's default; 0 (fast build) … 5 (slowest, best)
    timing_cache: str | None = None
    allow_tf32: bool = False  # off so FP32 engines are comparable with eager FP32
    version_compatible: bool = False
    hardware_compatibility: str = "none"  # none | ampere_plus | same_cc
    layer_info: bool = False
    verbose: bool = False


@dataclass
class EngineBuildResult:
    plan: Path
    sidecar: Path
    layer_info: Path | None
    precision: str
    seconds: float
    tensorrt_version: str
    gpu: dict[str, str]
    layer_precisions: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def default_plan_path(onnx_path: str | Path) -> Path:
    """``ran92.int8.onnx`` → ``ran92.int8.plan``."""
    path = Path(onnx_path)
    return path.with_suffix(".plan")


@dataclass(frozen=True)
class OnnxInput:
    name: str
    shape: tuple  # ints, or str for symbolic dimensions
    dynamic_batch: bool


def onnx_input(model: onnx.ModelProto) -> OnnxInput:
    """The single image input of a deploy-ran ONNX file."""
    inputs = graph_inputs(model)
    if len(inputs) != 1:
        raise DeployRanError(
            f"The ONNX file has {len(inputs)} inputs; deploy-ran builds engines for one image input.",
            hint="Export the model with `python cli.py export NAME`.",
        )
    dims = inputs[0].type.tensor_type.shape.dim
    shape = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims)
    if len(shape) != 4 or not all(isinstance(d, int) for d in shape[1:]):
        raise DeployRanError(
            f"Input {inputs[0].name} has shape {list(shape)}; expected [batch, 3, H, W] with fixed H, W.",
            hint="Export the model with `python cli.py export NAME` (static image size).",
        )
    return OnnxInput(inputs[0].name, shape, not isinstance(shape[0], int))


DEFAULT_BATCH_PROFILE = (1, 8, 32)


def check_profile(inp: OnnxInput, options: EngineBuildOptions) -> tuple[tuple, tuple, tuple]:
    """Min/opt/max input shapes of the optimisation profile, checked against the ONNX input.

    A static-batch ONNX admits only its own batch; a dynamic one defaults to 1/8/32.
    """
    given = (options.min_batch, options.opt_batch, options.max_batch)
    rest = tuple(inp.shape[1:])
    if not inp.dynamic_batch:
        batch = inp.shape[0]
        if any(b is not None and b != batch for b in given):
            raise DeployRanError(
                f"The ONNX input has a static batch of {batch}, but the profile asks for "
                f"min/opt/max {'/'.join('-' if b is None else str(b) for b in given)}.",
                hint="Re-export without --static-batch for a batch range, or drop the batch options.",
            )
        return (batch, *rest), (batch, *rest), (batch, *rest)
    lo = given[0] if given[0] is not None else DEFAULT_BATCH_PROFILE[0]
    hi = given[2] if given[2] is not None else max(DEFAULT_BATCH_PROFILE[2], lo)
    opt = given[1] if given[1] is not None else min(max(DEFAULT_BATCH_PROFILE[1], lo), hi)
    if not 1 <= lo <= opt <= hi:
        raise DeployRanError(
            f"Batch profile min/opt/max {lo}/{opt}/{hi} is not ordered.",
            hint="Use 1 <= --min-batch <= --opt-batch <= --max-batch.",
        )
    return (lo, *rest), (opt, *rest), (hi, *rest)


def _parser_errors(parser: Any) -> list[str]:
    """Parser errors with the failing node and op, as the ONNX parser reports them."""
    errors = []
    for i in range(parser.num_errors):
        err = parser.get_error(i)
        where = (
            f"node {err.node()} ({err.node_name() or 'unnamed'}, op {err.node_operator() or '?'})"
        )
        errors.append(f"{where}: {err.desc()}")
    return errors


def summarize_layer_precisions(engine_info: dict) -> dict[str, int]:
    """Count layers by output precision from the engine inspector's JSON (DETAILED verbosity)."""
    counts: Counter = Counter()
    for layer in engine_info.get("Layers", []):
        if not isinstance(layer, dict):
            counts["unknown"] += 1
            continue
        formats = " ".join(str(o.get("Format/Datatype", "")) for o in layer.get("Outputs", []))
        text = formats.lower()
        if "int8" in text:
            counts["int8"] += 1
        elif "half" in text or "fp16" in text:
            counts["fp16"] += 1
        elif "float" in text or "fp32" in text:
            counts["fp32"] += 1
        elif "int32" in text or "int64" in text or "bool" in text:
            counts["int"] += 1
        else:
            counts["other"] += 1
    return dict(counts)


def build_engine(
    onnx_path: str | Path,
    plan_path: str | Path | None = None,
    options: EngineBuildOptions | None = None,
    log: Callable[[str, str], None] | None = None,
) -> EngineBuildResult:
    """Build a TensorRT plan from an ONNX file; write it and its sidecar atomically.

    Raises :class:`TensorRTUnavailable` (TensorRT or a GPU missing), :class:`EngineError` (parser
    or build failure, with the failing node and op) or :class:`DeployRanError` (bad options).
    The steps, each a function below: check the options and the file, create the builder, parse
    the network, configure the build (flags, profile), attach the timing cache, build, write the
    plan and its sidecar, then the layer report and the timing cache (after the plan is safe).
    """
    options = options or EngineBuildOptions()
    onnx_path = Path(onnx_path)
    plan_path = Path(plan_path) if plan_path else default_plan_path(onnx_path)
    _check_options(options)
    graph = load_onnx(onnx_path, load_weights=False)
    inp = onnx_input(graph)
    profile_shapes = check_profile(inp, options)
    check_writable(plan_path)
    check_writable(sidecar_path(plan_path))

    trt = import_tensorrt()
    gpu = current_gpu()
    logger = make_logger(trt, options.verbose, log)
    builder = _create_builder(trt, logger)
    started = time.perf_counter()
    network, _parser = _parse_network(trt, builder, logger, onnx_path)
    config = _builder_config(trt, builder, logger, options, inp, profile_shapes)
    cache_path = Path(options.timing_cache) if options.timing_cache else None
    warnings = _attach_timing_cache(config, logger, cache_path)
    plan_bytes = _build_plan(builder, network, config, logger, onnx_path)
    seconds = time.perf_counter() - started

    gpu_dict = (
        asdict(gpu)
        if gpu
        else {
            "name": "unknown (PyTorch sees no CUDA device)",
            "compute_capability": "unknown",
            "index": 0,
        }
    )
    sidecar = _sidecar(
        trt, graph, onnx_path, plan_path, plan_bytes, inp, profile_shapes, options, gpu_dict, seconds
    )
    # Temporary names first; the plan is renamed before its sidecar, so a sidecar never
    # describes a plan that is not there.
    with atomic_path(sidecar_path(plan_path)) as tmp_side, atomic_path(plan_path) as tmp_plan:
        tmp_side.write_text(json.dumps(sidecar, indent=2) + "\n", encoding="utf-8")
        tmp_plan.write_bytes(plan_bytes)
    # The layer report comes after the plan is safely written: a failure here costs the report,
    # never the (minutes-long) build.
    layer_info_path, layer_precisions = None, {}
    if options.layer_info:
        layer_info_path, layer_precisions = _write_layer_report(
            trt, logger, plan_bytes, options, inp, profile_shapes, plan_path, warnings
        )
    if cache_path is not None:
        _save_timing_cache(config, cache_path)
    return EngineBuildResult(
        plan=plan_path,
        sidecar=sidecar_path(plan_path),
        layer_info=layer_info_path,
        precision=sidecar["precision"],
        seconds=seconds,
        tensorrt_version=trt.__version__,
        gpu=gpu_dict,
        layer_precisions=layer_precisions,
        warnings=warnings,
    )


def _check_options(options: EngineBuildOptions) -> None:
    if not 0 <= options.optimization_level <= MAX_OPTIMIZATION_LEVEL:
        raise DeployRanError(
            f"Optimization level {options.optimization_level} is out of range.",
            hint=f"Use 0 (fastest build) to {MAX_OPTIMIZATION_LEVEL} (slowest build, best engine).",
        )
    if options.workspace_mib is not None and options.workspace_mib <= 0:
        raise DeployRanError(
            "--workspace must be a positive number of MiB.", hint="e.g. --workspace 4096."
        )


def _last_errors(logger: Any, default: str = "no details") -> str:
    return "; ".join(logger.errors()[-3:]) or default


def _create_builder(trt: Any, logger: Any) -> Any:
    """``trt.Builder``, or :class:`TensorRTUnavailable` when this host cannot make one."""
    try:
        builder = trt.Builder(logger)
    except (TypeError, RuntimeError):  # pybind11: "factory function returned nullptr"
        builder = None
    if builder is None:
        raise TensorRTUnavailable(
            f"TensorRT cannot create a builder on this host ({_last_errors(logger, 'no CUDA device')}).",
            hint="Run build-engine on a GPU server with the NVIDIA driver installed.",
        )
    return builder


def _parse_network(trt: Any, builder: Any, logger: Any, onnx_path: Path) -> tuple[Any, Any]:
    """The network definition parsed from the ONNX file, and its parser (parser errors name
    node and op)."""
    network = builder.create_network(network_flags(trt))
    if network is None:  # TensorRT returns None, not an exception
        raise EngineError(
            f"TensorRT could not create a network definition ({_last_errors(logger)}).",
            hint="Check the TensorRT installation (`python cli.py doctor`) and free device memory.",
        )
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = _parser_errors(parser) or logger.errors() or ["no details from the parser"]
        raise EngineError(
            f"TensorRT's ONNX parser rejected {onnx_path}:\n- " + "\n- ".join(errors),
            hint="Check `python cli.py inspect` on the file; unsupported ops must be replaced before export.",
        )
    return network, parser  # the parser stays alive until the build is done, as in TensorRT's samples


def _builder_config(
    trt: Any, builder: Any, logger: Any, options: EngineBuildOptions, inp: OnnxInput, shapes: tuple
) -> Any:
    """Builder config: workspace, optimisation level, TF32 (off unless asked), compatibility,
    profiling verbosity, and the one optimisation profile."""
    config = builder.create_builder_config()
    if options.workspace_mib is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mib << 20)
    config.builder_optimization_level = options.optimization_level
    if options.allow_tf32:
        config.set_flag(trt.BuilderFlag.TF32)
    else:
        config.clear_flag(trt.BuilderFlag.TF32)
    if options.version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    config.hardware_compatibility_level = hardware_compatibility_level(
        trt, options.hardware_compatibility
    )
    if options.layer_info:
        config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    profile = builder.create_optimization_profile()
    try:  # the bindings raise when TensorRT refuses the shapes
        profile.set_shape(inp.name, *shapes)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise EngineError(
            f"TensorRT refused the optimisation profile {[list(s) for s in shapes]} "
            f"for input {inp.name}: {exc}",
            hint="Use 1 <= --min-batch <= --opt-batch <= --max-batch.",
        ) from None
    if config.add_optimization_profile(profile) < 0:  # -1: an invalid profile, no exception
        raise EngineError(
            f"TensorRT rejected the optimisation profile for input {inp.name} ("
            f"{_last_errors(logger)}).",
            hint="Check --min-batch/--opt-batch/--max-batch against the ONNX input shape.",
        )
    return config


def _attach_timing_cache(config: Any, logger: Any, cache_path: Path | None) -> list[str]:
    """Attach the timing cache (read from ``cache_path`` when it exists); the warnings."""
    warnings: list[str] = []
    cache_bytes = b""
    if cache_path is not None and cache_path.exists():
        cache_bytes = cache_path.read_bytes()
    timing_cache = config.create_timing_cache(cache_bytes)
    if timing_cache is None and cache_bytes:
        warnings.append(f"timing cache {cache_path} is unreadable; starting a new one")
        timing_cache = config.create_timing_cache(b"")
    # False: a cache from another GPU or TensorRT version (its header does not match). It is not
    # used (ignore_mismatch=True would apply timings of another device, as trtexec refuses to by
    # default); a new cache is built and replaces the file.
    if not config.set_timing_cache(timing_cache, False):
        warnings.append(
            f"timing cache {cache_path} was made on another GPU or TensorRT version and cannot "
            "be used here; a new one replaces it"
        )
        timing_cache = config.create_timing_cache(b"")
        if timing_cache is None or not config.set_timing_cache(timing_cache, False):
            raise EngineError(
                f"TensorRT refused a new, empty timing cache ({_last_errors(logger)}).",
                hint="Build without --timing-cache.",
            )
    return warnings


def _build_plan(builder: Any, network: Any, config: Any, logger: Any, onnx_path: Path) -> bytes:
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        errors = logger.errors() or ["TensorRT returned no engine and logged no error"]
        raise EngineError(
            f"TensorRT could not build an engine from {onnx_path}:\n- " + "\n- ".join(errors[-10:]),
            hint="Try --workspace with more memory, a lower --opt-level, or --verbose for the full log.",
        )
    return bytes(memoryview(serialized))


def _sidecar(
    trt: Any,
    graph: onnx.ModelProto,
    onnx_path: Path,
    plan_path: Path,
    plan_bytes: bytes,
    inp: OnnxInput,
    shapes: tuple,
    options: EngineBuildOptions,
    gpu: dict,
    seconds: float,
) -> dict[str, Any]:
    """The ``.plan.json`` beside the plan: what it is, what built it, from which ONNX."""
    info = ArtifactInfo.from_props(get_metadata(graph))
    return {
        "format": SIDECAR_FORMAT,
        "format_version": SIDECAR_VERSION,
        "plan": plan_path.name,
        "plan_sha256": _sha256_bytes(plan_bytes),
        "model": info.model,
        "precision": precision_of(graph),
        "image_size": info.image_size,
        "num_classes": info.num_classes,
        "preprocessing": info.preprocessing,
        "outputs": info.outputs or [o.name for o in graph.graph.output],
        "input": {
            "name": inp.name,
            "dtype": "float32",
            "shape": [d if isinstance(d, int) else -1 for d in inp.shape],
            "profile": {"min": list(shapes[0]), "opt": list(shapes[1]), "max": list(shapes[2])},
        },
        "tensorrt_version": trt.__version__,
        "gpu": gpu,
        "source_onnx": {
            "path": str(onnx_path),
            "sha256": sha256_file(onnx_path),
            "metadata": get_metadata(graph),  # the toolkit's metadata_props, verbatim
        },
        "build_options": asdict(options),
        "build_seconds": round(seconds, 3),
        "built_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "deploy_ran_version": deploy_ran.__version__,
    }


def _write_layer_report(
    trt: Any,
    logger: Any,
    plan_bytes: bytes,
    options: EngineBuildOptions,
    inp: OnnxInput,
    shapes: tuple,
    plan_path: Path,
    warnings: list[str],
) -> tuple[Path | None, dict[str, int]]:
    """``PLAN.layers.json`` and the layer count per precision; a failure is a warning."""
    engine_info, problem = _inspect_engine(
        trt, logger, plan_bytes, options.version_compatible, inp.name, shapes[1]
    )
    if engine_info is None:
        warnings.append(f"no layer report: {problem}")
        return None, {}
    if problem:
        warnings.append(problem)
    path = Path(f"{plan_path}.layers.json")
    with atomic_path(path) as tmp_layers:
        tmp_layers.write_text(json.dumps(engine_info, indent=1) + "\n", encoding="utf-8")
    return path, summarize_layer_precisions(engine_info)


def _save_timing_cache(config: Any, cache_path: Path) -> None:
    cache = config.get_timing_cache()
    if cache is not None:
        with atomic_path(cache_path) as tmp_cache:
            tmp_cache.write_bytes(bytes(memoryview(cache.serialize())))


def _inspect_engine(
    trt: Any,
    logger: Any,
    plan_bytes: bytes,
    version_compatible: bool,
    input_name: str,
    shape: tuple,
) -> tuple[dict | None, str]:
    """The engine inspector's JSON, and a problem to report ("" when none).

    On a dynamic-batch engine the inspector can only give formats for concrete shapes: it is given
    an execution context with the input shape set (the profile's opt shape), as trtexec's
    ``--dumpLayerInfo`` and Polygraphy's ``inspect model`` do; without one every layer's format
    reads "N/A due to dynamic shapes".
    """
    _, engine = deserialize_engine(trt, logger, plan_bytes, version_compatible=version_compatible)
    if engine is None:
        return None, "TensorRT could not load the plan it built (" + (
            "; ".join(logger.errors()[-3:]) or "no details"
        ) + ")"
    inspector = engine.create_engine_inspector()
    problem = ""
    context = engine.create_execution_context()
    if context is not None and context.set_input_shape(input_name, shape):
        inspector.execution_context = context
    else:
        problem = (
            "layer formats of a dynamic-shape engine need an execution context; none could be made"
        )
    info = json.loads(inspector.get_engine_information(trt.LayerInformationFormat.JSON))
    return info, problem


def _sha256_bytes(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()
