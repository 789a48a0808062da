"""``config.pbtxt`` built through Triton's own schema, then checked against the artifact.

Every config is a ``tritonclient.grpc.model_config_pb2.ModelConfig`` message, written with
protobuf's text format: a misspelt field or an enum value Triton does not know fails here, in
Python, instead of when a server loads the repository. After writing, the text is parsed back and
its inputs and outputs are compared with what the file itself declares.

Choices (see the README's Triton section for why):

* ``max_batch_size``: 0 for a static-batch file (its dims are then the full shape); otherwise
  ``--max-batch`` or 32, never above a plan's profile max batch; ``dims`` leave the batch out.
* ``dynamic_batching { max_queue_delay_microseconds }`` without ``preferred_batch_size``:
  Triton's docs advise against preferred sizes except for plans with several profiles.
* a zero-data ``model_warmup`` at batch 1, so the first request does not pay for lazy set-up.
* the artifact's metadata as the JSON string parameter ``deploy_ran``; ``TritonRunner`` reads it
  to know the model, preprocessing and class count of a served model.
* an INT8 Q/DQ ONNX with ``--tensorrt-accelerator``: ONNX Runtime's TensorRT execution provider
  with ``precision_mode INT8`` and no calibration table (the scales are in the Q/DQ nodes).
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
METADATA_PARAMETER = "deploy_ran"
PREPROCESSING_PARAMETER = "preprocessing"
IMAGE_INPUT = "IMAGE"
KINDS = {"gpu": "KIND_GPU", "cpu": "KIND_CPU"}

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
    kind: str = "gpu"
    max_queue_delay_us: int = DEFAULT_QUEUE_DELAY_US
    labels: Path | None = None
    preprocess: bool = False
    tensorrt_accelerator: bool = False
    force: bool = False

    def check(self) -> None:
        if self.kind not in KINDS:
            raise TritonRepoError(
                f"--kind must be one of {', '.join(KINDS)}, got {self.kind!r}.",
                hint="--kind gpu on a GPU server, --kind cpu elsewhere.",
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
        if self.tensorrt_accelerator and self.kind != "gpu":
            raise TritonRepoError(
                "--tensorrt-accelerator runs ONNX Runtime's TensorRT provider, which needs "
                "--kind gpu.",
                hint="Drop --tensorrt-accelerator or use --kind gpu.",
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
    if wanted is None:
        return min(DEFAULT_MAX_BATCH, limit) if limit else DEFAULT_MAX_BATCH
    if limit is not None and wanted > limit:
        raise TritonRepoError(
            f"--max-batch {wanted} is above the engine's profile max batch {limit} "
            f"({artifact.path}).",
            hint=f"Use --max-batch {limit} or less, or rebuild with --max-batch {wanted}.",
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
    if artifact.kind == "plan" and options.kind != "gpu":
        raise TritonRepoError(
            "A TensorRT plan runs only on a GPU instance.",
            hint="Use --kind gpu (the default) for .plan files.",
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
    group = cfg.instance_group.add()
    group.kind = mc.ModelInstanceGroup.Kind.Value(KINDS[options.kind])
    group.count = options.instances
    _add_warmup(cfg, artifact, batching, mc)
    cfg.parameters[METADATA_PARAMETER].string_value = json.dumps(
        artifact.metadata, sort_keys=True, default=str
    )
    if options.tensorrt_accelerator:
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
    return cfg


def _add_warmup(cfg: Any, artifact: Artifact, batching: bool, mc: Any) -> None:
    """One zero-data request at batch 1, when every input has a fixed size."""
    if not artifact.inputs or any(-1 in _dims(t, batching) for t in artifact.inputs):
        return
    warmup = cfg.model_warmup.add()
    warmup.name = "zeros_batch1"
    warmup.batch_size = 1
    for tensor in artifact.inputs:
        sample = warmup.inputs[tensor.name]
        sample.data_type = mc.DataType.Value(tensor.data_type)
        sample.dims.extend(_dims(tensor, batching))
        sample.zero_data = True


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
