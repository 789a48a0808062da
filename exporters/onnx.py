"""PyTorch → FP32 ONNX, checked before it is handed out.

``export_onnx`` builds the model from the registry, exports it with PyTorch's ONNX exporter
(``torch.export``-based), simplifies it with onnxslim, makes every Resize's output size a graph
constant, runs the static graph checks and ``onnx.checker``'s full check, writes the toolkit's
metadata, and finally runs the written file in ONNX Runtime against eager PyTorch. Only when all of
that passes is the temporary file renamed to the requested path: a failed export leaves nothing
behind, and an existing file at the destination is untouched.
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper

import deploy_ran
from deploy_ran.artifacts import PRODUCER, ArtifactInfo, set_metadata
from deploy_ran.errors import DeployRanError, ExportError
from deploy_ran.fileio import atomic_path, check_writable, sha256_file
from deploy_ran.models import INIT_SEED, create_model, get_spec
from exporters.graph_checks import GraphReport, require_valid_graph
from exporters.opsets import DEFAULT_OPSET, MIN_OPSET

INPUT_NAME = "input"
BATCH_DIM = "batch"


@dataclass
class ExportResult:
    """What ``export_onnx`` wrote and measured."""

    path: Path
    model: str
    image_size: int
    opset: int
    dynamic_batch: bool
    batch: int
    input_name: str
    output_names: list[str]
    seconds: float
    graph: GraphReport
    # What the caller's check returned (a comparison of eager PyTorch with this file, see
    # deploy_ran.compare.runner_checks), or None when the export was not checked.
    check: Any = None
    simplified: bool = True
    nodes_before_simplify: int = 0
    nodes_after_simplify: int = 0
    info: ArtifactInfo | None = None
    # The eager module that was exported (weights included), so a later stage (the FP16
    # conversion) can compare against the very same PyTorch model. Not part of the report.
    eager: torch.nn.Module | None = field(default=None, repr=False, compare=False)


def _quiet() -> contextlib.ExitStack:
    """Silence the exporter's progress prints and warnings; errors still raise."""
    stack = contextlib.ExitStack()
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    stack.callback(logger.setLevel, level)
    return stack


def torch_to_onnx(
    model: torch.nn.Module,
    example: torch.Tensor,
    output_names: list[str],
    dynamic_batch: bool,
    opset: int,
) -> onnx.ModelProto:
    """Run PyTorch's exporter and return the ModelProto (weights embedded, no external data)."""
    dynamic_shapes = None
    if dynamic_batch:
        dynamic_shapes = {"x": {0: torch.export.Dim(BATCH_DIM, min=1, max=4096)}}
    try:
        with _quiet():
            program = torch.onnx.export(
                model,
                (example,),
                dynamo=True,
                input_names=[INPUT_NAME],
                output_names=output_names,
                opset_version=opset,
                dynamic_shapes=dynamic_shapes,
                external_data=False,
                optimize=True,
                verbose=False,
            )
    except Exception as exc:
        raise ExportError(
            f"PyTorch's ONNX exporter failed: {type(exc).__name__}: {str(exc).splitlines()[0]}",
            hint="Run with a different --opset or report the model and options that failed.",
        ) from exc
    return program.model_proto


def simplify(model: onnx.ModelProto) -> onnx.ModelProto:
    """onnxslim: constant folding, dead-node removal and fusions ONNX Runtime/TensorRT like.
    Without onnxslim installed (a bare GPU host) this is a clear error naming the way round it,
    not a ModuleNotFoundError from deep inside the export."""
    try:
        import onnxslim
    except ImportError:
        raise ExportError(
            "onnxslim is not installed, and export simplifies the graph with it.",
            hint="pip install onnxslim (a dependency of deploy-ran), or export without "
            "simplification (simplify=False).",
            param="simplify",
        ) from None

    with _quiet():
        return onnxslim.slim(model)


def canonicalize_resizes(model: onnx.ModelProto) -> int:
    """Make each Resize's ``sizes`` depend on nothing but the batch dimension and constants.

    The exporter emits ``sizes = Concat(Shape(x)[0:2], [H, W])``. The channel count is static, so
    this rewrites it to ``Concat(Shape(x)[0:1], [C, H, W])``; with a static batch onnxslim has
    already folded ``sizes`` to a constant. Returns the number of Resize nodes rewritten.
    """
    graph = model.graph
    inferred = onnx.shape_inference.infer_shapes(model)
    dims = {
        vi.name: [
            d.dim_value if d.HasField("dim_value") else None for d in vi.type.tensor_type.shape.dim
        ]
        for vi in list(inferred.graph.value_info) + list(inferred.graph.input)
    }
    producers = {o: n for n in graph.node for o in n.output}
    initializers = {i.name: i for i in graph.initializer}
    rewritten = 0
    for node in list(graph.node):
        if node.op_type != "Resize" or len(node.input) < 4 or not node.input[3]:
            continue
        concat = producers.get(node.input[3])
        if concat is None or concat.op_type != "Concat" or len(concat.input) != 2:
            continue
        shape_node = producers.get(concat.input[0])
        const_name = concat.input[1]
        if shape_node is None or shape_node.op_type != "Shape" or const_name not in initializers:
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in shape_node.attribute}
        if attrs.get("start", 0) != 0 or attrs.get("end") != 2:
            continue
        channels = (dims.get(node.input[0]) or [None, None])[1]
        if not channels:
            continue
        hw = numpy_helper.to_array(initializers[const_name]).astype(np.int64)
        new_shape = helper.make_node(
            "Shape",
            [shape_node.input[0]],
            [f"{node.output[0]}_batch"],
            start=0,
            end=1,
            name=f"{node.name or node.output[0]}_batch_shape",
        )
        const = numpy_helper.from_array(
            np.concatenate([[channels], hw]).astype(np.int64), name=f"{node.output[0]}_chw"
        )
        graph.initializer.append(const)
        del concat.input[:]
        concat.input.extend([new_shape.output[0], const.name])
        graph.node.insert(list(graph.node).index(concat), new_shape)
        rewritten += 1
    # Drop Shape/initializers left without consumers.
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    for n in [n for n in graph.node if n.op_type == "Shape" and n.output[0] not in used]:
        graph.node.remove(n)
    used = {i for n in graph.node for i in n.input}
    for init in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(init)
    return rewritten


def record_resize_shapes(model: onnx.ModelProto) -> int:
    """Write each Resize's output shape (batch, C, H, W) into the graph's value_info.

    The shapes recorded at export time predate :func:`canonicalize_resizes`, so on a dynamic-batch
    file the first Resize's output was recorded (a second time) as four unknown dimensions (TensorRT and Netron
    then show an unknown shape there). Shape inference with data propagation reads the constant
    C, H, W from the rewritten ``sizes``; the batch dimension is copied from the Resize's input so
    it keeps its name. Returns the number of shapes recorded.
    """
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.value_info[:]
    try:
        inferred = onnx.shape_inference.infer_shapes(probe, data_prop=True)
    except Exception:  # noqa: BLE001 - recording shapes is best effort; the graph checks decide
        return 0
    known = {vi.name: vi for vi in [*inferred.graph.value_info, *model.graph.input]}
    known.update({vi.name: vi for vi in model.graph.value_info})
    fresh = {vi.name: vi for vi in inferred.graph.value_info}
    recorded = 0
    for node in model.graph.node:
        if node.op_type != "Resize" or node.output[0] not in fresh:
            continue
        dims = fresh[node.output[0]].type.tensor_type.shape.dim
        source = known.get(node.input[0])
        if source is None or len(dims) != 4 or not all(d.HasField("dim_value") for d in dims[1:]):
            continue
        batch = source.type.tensor_type.shape.dim[0]
        # The exporter may have recorded the tensor twice (a stale unknown shape among them).
        for stale in [vi for vi in model.graph.value_info if vi.name == node.output[0]]:
            model.graph.value_info.remove(stale)
        target = model.graph.value_info.add()
        target.name = node.output[0]
        target.type.tensor_type.elem_type = fresh[node.output[0]].type.tensor_type.elem_type
        shape = target.type.tensor_type.shape
        del shape.dim[:]
        shape.dim.add().CopyFrom(batch)
        for d in dims[1:]:
            shape.dim.add().dim_value = d.dim_value
        recorded += 1
    return recorded


def name_batch_dim(model: onnx.ModelProto, dynamic_batch: bool) -> None:
    """Call the leading dimension of every graph input/output ``batch`` (or keep it fixed)."""
    for vi in list(model.graph.input) + list(model.graph.output):
        dims = vi.type.tensor_type.shape.dim
        if dims and dynamic_batch:
            dims[0].Clear()
            dims[0].dim_param = BATCH_DIM


def build_info(
    name: str,
    image_size: int,
    num_classes: int,
    options: dict[str, Any],
    checkpoint: str | Path | None,
    output_names: list[str],
    dynamic_batch: bool,
    opset: int,
) -> ArtifactInfo:
    spec = get_spec(name)
    return ArtifactInfo(
        model=name,
        image_size=image_size,
        num_classes=num_classes,
        mean=list(spec.mean),
        std=list(spec.std),
        precision="fp32",
        dynamic_batch=dynamic_batch,
        options={**spec.options, **options},
        preprocessing=spec.preprocessing(image_size),
        outputs=output_names,
        checkpoint_sha256=sha256_file(checkpoint) if checkpoint else None,
        init_seed=None if checkpoint else INIT_SEED,
        extra={
            "producer_version": deploy_ran.__version__,
            "opset": str(opset),
            "torch_version": torch.__version__,
            "reference": spec.reference,
        },
    )


def export_onnx(
    name: str,
    output: str | Path | None = None,
    *,
    checkpoint: str | Path | None = None,
    image_size: int | None = None,
    num_classes: int | None = None,
    batch: int = 1,
    static_batch: bool = False,
    opset: int = DEFAULT_OPSET,
    simplify_graph: bool = True,
    check: Callable[[torch.nn.Module, Path], Any] | None = None,
    progress: Callable[[str], None] | None = None,
    **options: Any,
) -> ExportResult:
    """Export a registered model to a checked FP32 ONNX file (default ``NAME.onnx``).

    ``check(eager_model, written_file)`` runs on the complete file under its temporary name, before
    it is renamed into place (:class:`deploy_ran.compare.runner_checks.RunnerChecks` compares eager PyTorch with
    ONNX Runtime); whatever it raises aborts the export. Raises :class:`ExportError` (graph
    checks) or another :class:`DeployRanError` for bad input; in every case nothing is written.
    """
    say = progress or (lambda _msg: None)
    get_spec(name)  # an unknown name fails here, before any work
    if batch < 1:
        raise DeployRanError(f"batch must be at least 1, got {batch}.", hint="E.g. batch=1.")
    max_opset = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= max_opset:
        raise DeployRanError(
            f"opset must be between {MIN_OPSET} and {max_opset} (this onnx's newest), got {opset}.",
            hint=f"Use opset {DEFAULT_OPSET} (TensorRT 10 and ONNX Runtime both read it).",
        )
    output = Path(output or f"{name}.onnx")
    check_writable(output)  # fail before the slow part

    started = time.perf_counter()
    say(f"building {name}")
    model = create_model(
        name, num_classes=num_classes, image_size=image_size, checkpoint=checkpoint, **options
    )
    size = model.image_size[0] if isinstance(model.image_size, tuple) else model.image_size
    output_names = list(getattr(model, "output_names", ["logits"]))
    dynamic = not static_batch
    trace_batch = max(batch, 2) if dynamic else batch  # a batch of 1 would be specialised away
    example = torch.randn(trace_batch, 3, size, size)

    say("exporting with torch.onnx (dynamo)")
    proto = torch_to_onnx(model, example, output_names, dynamic, opset)
    nodes_before = len(proto.graph.node)
    if simplify_graph:
        say("simplifying with onnxslim")
        proto = simplify(proto)
    canonicalize_resizes(proto)
    name_batch_dim(proto, dynamic)
    record_resize_shapes(proto)
    proto.producer_name = PRODUCER
    proto.producer_version = deploy_ran.__version__
    info = build_info(
        name, size, model.num_classes, options, checkpoint, output_names, dynamic, opset
    )
    set_metadata(proto, info.to_props())

    say("checking the graph")
    report = require_valid_graph(
        proto,
        static_batch,
        f"the exported graph of {name}",
        hint="This is a bug in the model definition or exporter; please report it.",
    )

    model_bytes = proto.SerializeToString()
    checked = None
    with atomic_path(output) as tmp:
        tmp.write_bytes(model_bytes)
        if check is not None:
            say("comparing ONNX Runtime with eager PyTorch")
            checked = check(model, tmp)
    seconds = time.perf_counter() - started
    return ExportResult(
        path=output,
        model=name,
        image_size=size,
        opset=opset,
        dynamic_batch=dynamic,
        batch=batch,
        input_name=INPUT_NAME,
        output_names=output_names,
        seconds=seconds,
        graph=report,
        check=checked,
        simplified=simplify_graph,
        nodes_before_simplify=nodes_before,
        nodes_after_simplify=len(proto.graph.node),
        info=info,
        eager=model,
    )
