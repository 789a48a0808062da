"""``config.pbtxt`` built through Triton's own schema, then checked against the artifact.

Every config is a ``tritonclient.grpc.model_config_pb2.ModelConfig`` message, written with
protobuf's text format: a misspelt field or an enum value Triton does not know fails here, in
Python, instead of when a server loads the repository. After writing, the text is parsed back and
its inputs and outputs are compared with what the file itself declares.

Choices (see the README's Triton section for why):

* ``max_batch_size``: 0 for a static-batch file (its dims are then the full shape); otherwise
  ``--max-batch`` or 32, inside a plan's optimisation profile (never above its max batch, and
  ``--max-batch`` below its minimum is refused); ``dims`` leave the batch out.
* ``dynamic_batching { max_queue_delay_microseconds }`` without ``preferred_batch_size``:
  Triton's docs advise against preferred sizes except for plans with several profiles; and a
  bounded ``default_queue_policy`` (``max_queue_size``, REJECT): an overloaded server answers
  "busy" instead of queueing without bound until every request times out.
* zero-data ``model_warmup`` so the first request does not pay for lazy set-up: at batch 1, or
  for a plan at its profile's min and opt batch (a batch outside the profile fails the warm-up
  and so the load).
* ``instance_group`` kind ``KIND_AUTO`` by default (GPU where the server has one, else CPU), so a
  config written on one host loads on another; ``--kind gpu``/``cpu`` pin it. CPU instances of an
  ONNX model get ``intra_op_thread_count`` (``--threads``) and ``inter_op_thread_count`` 1:
  without them every instance takes every core.
* the artifact's metadata as the JSON string parameter ``deploy_ran``; ``TritonRunner`` reads it
  to know the model, preprocessing and class count of a served model.
* ``--tensorrt-accelerator``: ONNX Runtime's TensorRT execution provider with the precision of
  the file (``INT8`` for a Q/DQ ONNX, no calibration table: the scales are in the Q/DQ nodes),
  an engine and timing cache (``--trt-cache-path``; without one every restart rebuilds), an
  explicit profile (min 1, opt, max = ``max_batch_size``; without one every new batch shape
  rebuilds) and a workspace limit. Parameter names are those of Triton's ONNX Runtime backend.
"""

from __future__ import annotations

import importlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exporters.triton.artifact import Artifact, TensorIO, TritonRepoError

DEFAULT_MAX_BATCH = 32
DEFAULT_QUEUE_DELAY_US = 100
#: Requests waiting per model before Triton rejects new ones (bounded: see the module docstring).
DEFAULT_MAX_QUEUE_SIZE = 256
#: ONNX Runtime TensorRT accelerator: workspace (MiB) and engine-cache folder on the server.
DEFAULT_TRT_WORKSPACE_MB = 1024
DEFAULT_TRT_CACHE_ROOT = "/tmp/deploy-ran-ort-trt-cache"
#: The accelerator profile's opt batch: 8, or max_batch_size when smaller (as build-engine's).
DEFAULT_TRT_OPT_BATCH = 8
METADATA_PARAMETER = "deploy_ran"
PREPROCESSING_PARAMETER = "preprocessing"
IMAGE_INPUT = "IMAGE"
KINDS = {"auto": "KIND_AUTO", "gpu": "KIND_GPU", "cpu": "KIND_CPU"}

# Triton's model name is its folder name, used in URLs and metric labels: keep it to a safe set.
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


def schema() -> Any:
    """``tritonclient.grpc.model_config_pb2``, or a clear error naming the extra to install."""
    try:
        return importlib.import_module("tritonclient.grpc.model_config_pb2")
    except ImportError as exc:
        raise TritonRepoError(
            f"Triton's config schema is not importable ({exc}).",
            hint='Install the Triton extra: pip install -e ".[triton]" (tritonclient[http,grpc]).',
        ) from None


def text_format() -> Any:
    from google.protobuf import text_format as tf

    return tf


def check_model_name(name: str) -> str:
    """A name Triton accepts as a model (folder) name, or a clear error."""
    if not _NAME.match(name or "") or name in (".", "..") or name.endswith("."):
        raise TritonRepoError(
            f"{name!r} cannot be a Triton model name: the name is the model's folder and part of "
            "every request URL.",
            hint="Use letters, digits, '_', '-' and '.' (not first), at most 128 characters, "
            "e.g. --name ran92_int8.",
        )
    return name


@dataclass
class RepoOptions:
    """What ``triton-repo`` was asked for (CLI options, one-to-one)."""

    name: str | None = None
    max_batch: int | None = None
    instances: int = 1
    kind: str = "auto"
    max_queue_delay_us: int = DEFAULT_QUEUE_DELAY_US
    labels: Path | None = None
    preprocess: bool = False
    tensorrt_accelerator: bool = False
    force: bool = False
    threads: int | None = None  # intra-op threads per CPU instance (ONNX Runtime backend)
    max_queue_size: int = DEFAULT_MAX_QUEUE_SIZE
    trt_cache_path: str | None = None  # default: DEFAULT_TRT_CACHE_ROOT/<model name>
    trt_workspace_mb: int = DEFAULT_TRT_WORKSPACE_MB

    def check(self) -> None:
        if self.kind not in KINDS:
            raise TritonRepoError(
                f"--kind must be one of {', '.join(KINDS)}, got {self.kind!r}.",
                hint="--kind auto (GPU where the server has one), gpu or cpu.",
            )
        if self.threads is not None and self.threads < 1:
            raise TritonRepoError(
                f"--threads must be at least 1, got {self.threads}.",
                hint="E.g. --threads 4 (cores per CPU instance).",
            )
        if self.threads is not None and self.kind == "gpu":
            raise TritonRepoError(
                "--threads sets CPU instances' thread counts; --kind gpu has none.",
                hint="Use --kind cpu (or auto) with --threads, or drop --threads.",
            )
        if self.max_queue_size < 1:
            raise TritonRepoError(
                f"--max-queue-size must be at least 1, got {self.max_queue_size}.",
                hint=f"--max-queue-size {DEFAULT_MAX_QUEUE_SIZE} (a bound keeps an overloaded "
                "server answering).",
            )
        if self.trt_workspace_mb < 1:
            raise TritonRepoError(
                f"--trt-workspace must be at least 1 MiB, got {self.trt_workspace_mb}.",
                hint=f"--trt-workspace {DEFAULT_TRT_WORKSPACE_MB}",
            )
        if not self.tensorrt_accelerator and (
            self.trt_cache_path is not None or self.trt_workspace_mb != DEFAULT_TRT_WORKSPACE_MB
        ):
            raise TritonRepoError(
                "--trt-cache-path and --trt-workspace apply to --tensorrt-accelerator.",
                hint="Add --tensorrt-accelerator, or drop them.",
            )
        if self.instances < 1:
            raise TritonRepoError(
                f"--instances must be at least 1, got {self.instances}.", hint="--instances 1"
            )
        if self.max_queue_delay_us < 0:
            raise TritonRepoError(
                f"--max-queue-delay-us must be ≥ 0, got {self.max_queue_delay_us}.",
                hint=f"--max-queue-delay-us {DEFAULT_QUEUE_DELAY_US}",
            )
        if self.max_batch is not None and self.max_batch < 0:
            raise TritonRepoError(
                f"--max-batch must be ≥ 0, got {self.max_batch}.",
                hint="0 turns batching off; 8–64 suits image classifiers.",
            )
        if self.tensorrt_accelerator and self.kind == "cpu":
            raise TritonRepoError(
                "--tensorrt-accelerator runs ONNX Runtime's TensorRT provider, which needs a GPU "
                "instance (--kind gpu or auto).",
                hint="Drop --tensorrt-accelerator, or use --kind gpu (or auto).",
            )


def max_batch_size(artifact: Artifact, options: RepoOptions) -> int:
    """Triton's ``max_batch_size`` for this artifact (see the module docstring)."""
    wanted = options.max_batch
    if not artifact.batched:
        if wanted:
            static = artifact.inputs[0].shape[0] if artifact.inputs else "?"
            raise TritonRepoError(
                f"{artifact.path} has a static batch ({static}); Triton cannot batch requests "
                f"for it, so --max-batch {wanted} is impossible.",
                hint="Drop --max-batch (it becomes 0), or export without --static-batch.",
            )
        return 0
    limit = artifact.max_batch_limit
    lowest = artifact.profile_batches[0] if artifact.profile_batches else 1
    if wanted is None:
        chosen = min(DEFAULT_MAX_BATCH, limit) if limit else DEFAULT_MAX_BATCH
        return max(chosen, lowest)
    if limit is not None and wanted > limit:
        raise TritonRepoError(
            f"--max-batch {wanted} is above the engine's profile max batch {limit} "
            f"({artifact.path}).",
            hint=f"Use --max-batch {limit} or less, or rebuild with --max-batch {wanted}.",
        )
    if wanted < lowest:
        raise TritonRepoError(
            f"--max-batch {wanted} is below the engine's profile minimum batch {lowest} "
            f"({artifact.path}): no batch Triton could send would fit the engine.",
            hint=f"Use --max-batch {lowest} to {limit}, or rebuild the engine with --min-batch 1.",
        )
    return wanted


def _dims(tensor: TensorIO, batching: bool) -> list[int]:
    return list(tensor.shape[1:] if batching else tensor.shape)


def _add_io(collection: Any, tensor: TensorIO, batching: bool, mc: Any) -> Any:
    entry = collection.add()
    entry.name = tensor.name
    entry.data_type = mc.DataType.Value(tensor.data_type)
    entry.dims.extend(_dims(tensor, batching))
    return entry


def classification_output(artifact: Artifact) -> str | None:
    """The output labels belong to: ``logits`` when present, else the first output."""
    if not artifact.outputs:
        return None
    names = [o.name for o in artifact.outputs]
    return "logits" if "logits" in names else names[0]


def model_config(
    artifact: Artifact, name: str, options: RepoOptions, labels: bool = False
) -> Any:
    """The ``ModelConfig`` message of the served model itself."""
    mc = schema()
    batch = max_batch_size(artifact, options)
    cfg = mc.ModelConfig(name=check_model_name(name), platform=artifact.platform)
    cfg.max_batch_size = batch
    batching = batch > 0
    if artifact.kind == "plan" and options.kind == "cpu":
        raise TritonRepoError(
            "A TensorRT plan runs only on a GPU instance.",
            hint="Use --kind auto (the default) or gpu for .plan files.",
        )
    if artifact.outputs is not None:
        for tensor in artifact.inputs:
            _add_io(cfg.input, tensor, batching, mc)
        for tensor in artifact.outputs:
            entry = _add_io(cfg.output, tensor, batching, mc)
            if labels and tensor.name == classification_output(artifact):
                entry.label_filename = "labels.txt"
    if batching:
        cfg.dynamic_batching.max_queue_delay_microseconds = options.max_queue_delay_us
        _bound_queue(cfg, options, mc)
    _add_instances(cfg, artifact, options, mc)
    _add_warmup(cfg, artifact, batching, mc)
    cfg.parameters[METADATA_PARAMETER].string_value = json.dumps(
        artifact.metadata, sort_keys=True, default=str
    )
    if options.tensorrt_accelerator:
        _add_tensorrt_accelerator(cfg, artifact, name, options)
    return cfg


def _bound_queue(cfg: Any, options: RepoOptions, mc: Any) -> None:
    """At most ``max_queue_size`` requests wait; more are rejected at once (Triton's REJECT)."""
    policy = cfg.dynamic_batching.default_queue_policy
    policy.max_queue_size = options.max_queue_size
    policy.timeout_action = mc.ModelQueuePolicy.TimeoutAction.Value("REJECT")


def _add_instances(cfg: Any, artifact: Artifact, options: RepoOptions, mc: Any) -> None:
    """One instance group of the asked kind; CPU-capable ONNX instances get thread counts."""
    if artifact.kind == "plan" and options.threads is not None:
        raise TritonRepoError(
            "--threads sets ONNX Runtime's CPU threads; a TensorRT plan runs on the GPU.",
            hint="Drop --threads for .plan files.",
        )
    group = cfg.instance_group.add()
    group.kind = mc.ModelInstanceGroup.Kind.Value(KINDS[instance_kind(artifact, options)])
    group.count = options.instances
    if artifact.kind == "onnx" and options.kind != "gpu" and options.threads is not None:
        # Triton's ONNX Runtime backend parameters (used by CPU instances; GPU ones ignore them).
        cfg.parameters["intra_op_thread_count"].string_value = str(options.threads)
        cfg.parameters["inter_op_thread_count"].string_value = "1"


def instance_kind(artifact: Artifact, options: RepoOptions) -> str:
    """``auto`` stays KIND_AUTO (GPU where the server has one, else CPU) for a plain ONNX model;
    a plan and an ONNX model under the TensorRT accelerator only run on a GPU, so they are
    written for one (KIND_GPU) rather than left to fail obscurely on a CPU instance."""
    if options.kind == "auto" and (artifact.kind == "plan" or options.tensorrt_accelerator):
        return "gpu"
    return options.kind


def warmup_batches(artifact: Artifact, batching: bool) -> list[int]:
    """Warm-up batch sizes inside what the file accepts: a plan's profile min and opt, else 1."""
    if not batching:
        return [1]
    if artifact.profile_batches:
        low, opt, _ = artifact.profile_batches
        return sorted({low, opt})
    return [1]


def _add_warmup(cfg: Any, artifact: Artifact, batching: bool, mc: Any) -> None:
    """Zero-data requests at :func:`warmup_batches`, when every input has a fixed size."""
    if not artifact.inputs or any(-1 in _dims(t, batching) for t in artifact.inputs):
        return
    for batch in warmup_batches(artifact, batching):
        if batching and batch > cfg.max_batch_size:
            continue
        warmup = cfg.model_warmup.add()
        warmup.name = f"zeros_batch{batch}"
        warmup.batch_size = batch
        for tensor in artifact.inputs:
            sample = warmup.inputs[tensor.name]
            sample.data_type = mc.DataType.Value(tensor.data_type)
            sample.dims.extend(_dims(tensor, batching))
            sample.zero_data = True


def trt_cache_path(name: str, options: RepoOptions) -> str:
    """Where the server keeps the accelerator's engines (a path on the server)."""
    return options.trt_cache_path or f"{DEFAULT_TRT_CACHE_ROOT}/{name}"


def _add_tensorrt_accelerator(cfg: Any, artifact: Artifact, name: str, options: RepoOptions) -> None:
    """ONNX Runtime's TensorRT provider: precision, caches, explicit profile and workspace."""
    if artifact.kind == "plan":
        raise TritonRepoError(
            "--tensorrt-accelerator applies to ONNX files; a plan already is a TensorRT engine.",
            hint="Drop --tensorrt-accelerator for .plan files.",
        )
    accel = cfg.optimization.execution_accelerators.gpu_execution_accelerator.add()
    accel.name = "tensorrt"
    if artifact.precision == "int8":
        # Explicit quantization: the Q/DQ nodes carry the scales, so no calibration table.
        accel.parameters["precision_mode"] = "INT8"
    elif artifact.precision == "fp16":
        accel.parameters["precision_mode"] = "FP16"
    cache = trt_cache_path(name, options)
    accel.parameters["max_workspace_size_bytes"] = str(options.trt_workspace_mb * 1024 * 1024)
    accel.parameters["trt_engine_cache_enable"] = "1"
    accel.parameters["trt_engine_cache_path"] = cache
    accel.parameters["trt_timing_cache_enable"] = "1"
    accel.parameters["trt_timing_cache_path"] = cache
    top = cfg.max_batch_size
    if top > 0 and artifact.inputs and all(-1 not in t.shape[1:] for t in artifact.inputs):
        shapes = {"min": 1, "opt": min(DEFAULT_TRT_OPT_BATCH, top), "max": top}
        for key, batch in shapes.items():
            accel.parameters[f"trt_profile_{key}_shapes"] = ",".join(
                f"{t.name}:" + "x".join(str(d) for d in (batch, *t.shape[1:])) for t in artifact.inputs
            )


def preprocess_config(artifact: Artifact, name: str, options: RepoOptions) -> Any:
    """Python-backend model: encoded image bytes → the model's input tensor."""
    mc = schema()
    (tensor,) = artifact.inputs
    cfg = mc.ModelConfig(name=check_model_name(name), backend="python")
    cfg.max_batch_size = max_batch_size(artifact, options)
    image = cfg.input.add(name=IMAGE_INPUT, data_type=mc.DataType.Value("TYPE_STRING"))
    image.dims.append(1)
    _add_io(cfg.output, tensor, True, mc)
    if cfg.max_batch_size > 0:
        cfg.dynamic_batching.max_queue_delay_microseconds = options.max_queue_delay_us
    group = cfg.instance_group.add()
    group.kind = mc.ModelInstanceGroup.Kind.Value("KIND_CPU")  # PIL decodes on the CPU
    group.count = options.instances
    cfg.parameters[PREPROCESSING_PARAMETER].string_value = json.dumps(
        {**artifact.preprocessing, "output": tensor.name}, sort_keys=True
    )
    return cfg


def ensemble_config(
    artifact: Artifact, name: str, model: str, preprocess: str, options: RepoOptions
) -> Any:
    """Ensemble: ``IMAGE`` (encoded bytes) → preprocess model → the model → every output."""
    mc = schema()
    (tensor,) = artifact.inputs
    cfg = mc.ModelConfig(name=check_model_name(name), platform="ensemble")
    cfg.max_batch_size = max_batch_size(artifact, options)
    image = cfg.input.add(name=IMAGE_INPUT, data_type=mc.DataType.Value("TYPE_STRING"))
    image.dims.append(1)
    for out in artifact.outputs or []:
        _add_io(cfg.output, out, True, mc)
    first = cfg.ensemble_scheduling.step.add(model_name=preprocess, model_version=-1)
    first.input_map[IMAGE_INPUT] = IMAGE_INPUT
    first.output_map[tensor.name] = "preprocessed_image"
    second = cfg.ensemble_scheduling.step.add(model_name=model, model_version=-1)
    second.input_map[tensor.name] = "preprocessed_image"
    for out in artifact.outputs or []:
        second.output_map[out.name] = out.name
    cfg.parameters[METADATA_PARAMETER].string_value = json.dumps(
        artifact.metadata, sort_keys=True, default=str
    )
    return cfg


def to_text(cfg: Any) -> str:
    """``config.pbtxt`` text of a ``ModelConfig``."""
    return text_format().MessageToString(cfg)


def parse(text: str) -> Any:
    """Parse ``config.pbtxt`` text with Triton's schema (raises on unknown fields or enums)."""
    mc = schema()
    return text_format().Parse(text, mc.ModelConfig())


def cross_check(text: str, artifact: Artifact) -> Any:
    """Parse the written config back and compare its tensors with the file's own declaration."""
    mc = schema()
    cfg = parse(text)
    if artifact.outputs is None:
        return cfg
    batching = cfg.max_batch_size > 0
    problems = []

    def compare(kind: str, declared: list[TensorIO], written: Any) -> None:
        got = {e.name: (mc.DataType.Name(e.data_type), list(e.dims)) for e in written}
        for tensor in declared:
            want = (tensor.data_type, _dims(tensor, batching))
            if got.get(tensor.name) != want:
                problems.append(f"{kind} {tensor.name}: file {want}, config {got.get(tensor.name)}")
        extra = set(got) - {t.name for t in declared}
        if extra:
            problems.append(f"{kind}s not in the file: {sorted(extra)}")

    compare("input", artifact.inputs, cfg.input)
    compare("output", artifact.outputs, cfg.output)
    if artifact.kind == "plan" and batching and artifact.max_batch_limit is not None:
        if cfg.max_batch_size > artifact.max_batch_limit:
            problems.append(
                f"max_batch_size {cfg.max_batch_size} > profile max {artifact.max_batch_limit}"
            )
    if problems:
        raise TritonRepoError(
            f"The config written for {artifact.path} disagrees with the file: "
            + "; ".join(problems),
            hint="This is a bug in deploy-ran's Triton writer; please report it.",
        )
    return cfg
