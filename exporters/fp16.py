"""FP32 ONNX → FP16 ONNX: precision written into the artifact, checked before it is handed out.

TensorRT 11 builds only strongly typed networks, so an FP16 engine needs an ONNX file whose
tensors *are* FP16; a builder flag no longer does it. ``convert_to_fp16`` makes that file with ONNX
Runtime's maintained converter (``onnxruntime.transformers.float16``):

* weights and activations in FP16; the graph's inputs and outputs stay FP32, with a Cast at each
  edge, so callers feed and read the same arrays as for the FP32 file;
* a keep-in-FP32 list of op types (:data:`DEFAULT_KEEP_FP32`, extended with ``keep_fp32``) for
  ops whose FP16 arithmetic overflows or loses too much, each wrapped in Casts;
* the static-graph checks of the FP32 export (constant Resize sizes, static shapes) run again;
* the caller's check (``deploy_ran.compare.runner_checks``: ONNX Runtime against eager FP32 PyTorch or the FP32
  file) runs on the written file before it is renamed into place.

On the CPU, ONNX Runtime runs FP16 ops it has no FP16 kernel for in FP32 behind inserted casts,
so the check there sees the FP16 rounding of weights and of every tensor that crosses a cast, not
every FP16 rounding a GPU would do; the engine builder checks again on the GPU.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

from deploy_ran.artifacts import ArtifactInfo, get_metadata, load_onnx, precision_of, set_metadata
from deploy_ran.errors import DeployRanError, OnnxFileError
from deploy_ran.fileio import atomic_path, derived_output, sha256_file
from exporters.graph_checks import GraphReport, require_valid_graph

#: Op types kept in FP32 by default, and why. Reductions and norms are where FP16 fails on these
#: networks: a sum of squares over 1024 channels passes FP16's 65504 long before any single value
#: does, and means/variances over a feature map lose digits. Log-probabilities are the other:
#: TensorRT's ONNX importer builds LogSoftmax as Softmax then Log, so in FP16 every probability
#: below ~6e-8 becomes 0 and its log −inf (Attend-and-Rectify's ``log_probs``: 71 of 80 values
#: non-finite under float16-strict evaluation; ONNX Runtime on a CPU upcasts and hides it).
#: Everything else (Conv, BN, ReLU, Sigmoid, Resize, Mul, Add, Gemm) is safe in FP16 and is where
#: the speed is. A Softmax whose output feeds a Log is kept too (:func:`fragile_fp16_nodes`).
DEFAULT_KEEP_FP32: dict[str, str] = {
    "LogSoftmax": "imported by TensorRT as Softmax → Log: FP16 probabilities underflow, log → −inf",
    "Log": "log of an FP16 probability/activation that underflowed to 0 is −inf",
    "ReduceMean": "global average pool and the spatial-attention mean/variance: FP32 accumulation",
    "ReduceSum": "channel-attention L2 norm: a sum of squares overflows FP16's 65504",
    "ReduceSumSquare": "as ReduceSum",
    "ReduceL2": "as ReduceSum",
    "Sqrt": "normalisation denominators (tiny variances underflow in FP16)",
    "Pow": "squares inside normalisations overflow FP16",
}

@dataclass
class Fp16Result:
    """What :func:`convert_to_fp16` wrote and measured."""

    path: Path
    source: Path | None
    keep_fp32: list[str]
    kept_nodes: list[str]  # nodes left in FP32 (blocked op types and named nodes)
    casts: int
    seconds: float
    graph: GraphReport
    # What the caller's check returned (a comparison with the FP32 reference, see
    # deploy_ran.compare.runner_checks), or None when the conversion was not checked.
    check: Any = None
    size_bytes: int = 0
    source_size_bytes: int = 0


def require_fp32(model: onnx.ModelProto, path: str | Path, purpose: str) -> None:
    """Refuse an ONNX file that is already FP16 or INT8 (a second conversion compounds errors)."""
    found = precision_of(model)
    if found != "fp32":
        raise OnnxFileError(
            f"{path} is already a {found.upper()} model; {purpose} needs the FP32 ONNX file.",
            hint="Pass the FP32 export (`python cli.py export NAME` writes NAME.onnx).",
        )


def default_fp16_path(source: str | Path) -> Path:
    """``ran92.onnx`` → ``ran92.fp16.onnx``."""
    source = Path(source)
    return source.with_name(f"{source.stem}.fp16.onnx")


def fragile_fp16_nodes(model: onnx.ModelProto) -> list[str]:
    """Nodes that must stay FP32 whatever their op type's default: a Softmax feeding a Log.

    ``Log(Softmax(x))`` is LogSoftmax written out; in FP16 the Softmax's small probabilities are 0
    before the Log sees them, so keeping only the Log in FP32 is too late.
    """
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    return [
        n.name
        for n in model.graph.node
        if n.op_type == "Softmax"
        and any(c.op_type == "Log" for o in n.output for c in consumers.get(o, []))
    ]


def convert_model_to_fp16(
    model: onnx.ModelProto,
    keep_fp32: Iterable[str] | None = None,
    keep_fp32_nodes: Iterable[str] = (),
) -> onnx.ModelProto:
    """Convert an in-memory FP32 model to FP16 with FP32 graph I/O (no checks, no metadata).

    With the default keep-list (``keep_fp32=None`` or one that holds ``Log``), a Softmax feeding a
    Log also stays FP32 (:func:`fragile_fp16_nodes`).
    """
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    ops = list(DEFAULT_KEEP_FP32 if keep_fp32 is None else keep_fp32)
    block = sorted(set(DEFAULT_OP_BLOCK_LIST) | set(ops))
    if "Log" in ops:
        keep_fp32_nodes = [*keep_fp32_nodes, *fragile_fp16_nodes(model)]
    source = onnx.ModelProto()
    source.CopyFrom(model)  # the converter may edit its argument in place
    converted = convert_float_to_float16(
        source,
        keep_io_types=True,
        op_block_list=block,
        node_block_list=list(keep_fp32_nodes) or None,
    )
    _drop_cast_round_trips(converted)
    # The converter appends its Casts at the end of the node list; ONNX wants topological order.
    OnnxModel(converted).topological_sort()
    return converted


def _drop_cast_round_trips(model: onnx.ModelProto) -> None:
    """Remove FP32 → FP16 → FP32 Cast pairs, so a tensor between two kept ops stays FP32.

    ONNX Runtime's converter casts every tensor to FP16 on its way between two blocked nodes
    (``Softmax`` → *FP16* → ``Log``), which rounds exactly where the keep-list wanted FP32: a
    probability below ~6e-8 becomes 0 between the two FP32 ops. Consumers of the second Cast read
    the FP32 tensor instead; Casts nobody reads any more are removed.
    """
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {
        vi.name: vi.type.tensor_type.elem_type
        for vi in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]
    }
    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    outputs = {o.name for o in graph.output}

    def cast_to(node: onnx.NodeProto) -> int | None:
        return next((a.i for a in node.attribute if a.name == "to"), None)

    replace: dict[str, str] = {}
    for node in graph.node:
        if node.op_type != "Cast" or cast_to(node) != onnx.TensorProto.FLOAT:
            continue
        first = producer.get(node.input[0])
        if (
            first is not None
            and first.op_type == "Cast"
            and cast_to(first) == onnx.TensorProto.FLOAT16
            and types.get(first.input[0]) == onnx.TensorProto.FLOAT
            and node.output[0] not in outputs
        ):
            replace[node.output[0]] = first.input[0]
    if not replace:
        return
    for node in graph.node:
        for k, name in enumerate(node.input):
            if name in replace:
                node.input[k] = replace[name]
    for _ in range(2):  # the back-Casts, then forward Casts left without readers
        used = {i for n in graph.node for i in n.input} | outputs
        for node in [n for n in graph.node if n.op_type == "Cast" and n.output[0] not in used]:
            graph.node.remove(node)




def _input_shape(model: onnx.ModelProto) -> tuple[list[int], bool]:
    """(C, H, W) of the first graph input, and whether its batch dimension is fixed."""
    dims = model.graph.input[0].type.tensor_type.shape.dim
    values = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    if len(values) != 4 or any(v is None for v in values[1:]):
        raise OnnxFileError(
            f"Expected one NCHW image input with a static C, H, W; got {values}.",
            hint="Export the model with `python cli.py export NAME`.",
        )
    return [int(v) for v in values[1:]], values[0] is not None


def keep_fp32_ops(extra: Iterable[str] = (), *, defaults: bool = True) -> list[str]:
    """The op types kept in FP32: :data:`DEFAULT_KEEP_FP32` (unless ``defaults=False``) + ``extra``.

    This is the one meaning of ``keep_fp32`` in the toolkit, for the CLI's ``--keep-fp32`` and for
    Python callers alike: extra op types *add to* the protected defaults; dropping the defaults
    takes an explicit ``defaults=False``.
    """
    ops = [*(DEFAULT_KEEP_FP32 if defaults else ()), *extra]
    unknown = [op for op in ops if not onnx.defs.has(op)]
    if unknown:
        raise DeployRanError(
            f"keep_fp32 takes ONNX op types (e.g. ReduceMean, Softmax); got {', '.join(unknown)}.",
            hint="Op type names are case-sensitive, as in `python cli.py inspect FILE`.",
        )
    return list(dict.fromkeys(ops))


def convert_to_fp16(
    onnx_path: str | Path,
    output: str | Path | None = None,
    *,
    keep_fp32: Iterable[str] = (),
    default_keep_fp32: bool = True,
    keep_fp32_nodes: Iterable[str] = (),
    check: Callable[[Path], Any] | None = None,
    progress: Callable[[str], None] | None = None,
) -> Fp16Result:
    """Convert the FP32 ONNX file at ``onnx_path`` to FP16 (default ``<stem>.fp16.onnx``).

    ``keep_fp32`` adds op types to :data:`DEFAULT_KEEP_FP32` (see :func:`keep_fp32_ops`);
    ``keep_fp32_nodes`` names single nodes to leave in FP32. ``check(written_file)`` runs on the
    complete file under its temporary name before it is renamed into place (``deploy_ran.compare.runner_checks``
    compares it with the FP32 reference); whatever it raises aborts the conversion and nothing is
    written.
    """
    say = progress or (lambda _msg: None)
    started = time.perf_counter()
    source = Path(onnx_path)
    output = derived_output(source, output, default_fp16_path(source), "FP16")
    model = load_onnx(source)
    require_fp32(model, source, "FP16 conversion")
    ops = keep_fp32_ops(keep_fp32, defaults=default_keep_fp32)
    node_names = {n.name for n in model.graph.node}
    missing = [n for n in keep_fp32_nodes if n not in node_names]
    if missing:
        raise DeployRanError(
            f"No node named {', '.join(missing)} in {source}.",
            hint="`python cli.py inspect FILE --json` lists the graph; node names look like node_conv2d_12.",
        )
    input_shape, static_batch = _input_shape(model)

    say("converting to FP16")
    fp16 = convert_model_to_fp16(model, ops, keep_fp32_nodes)
    info = ArtifactInfo.from_props(get_metadata(model))
    info.precision = "fp16"
    info.extra.update(
        {
            "fp16_keep_fp32_ops": json.dumps(ops),
            "fp16_keep_fp32_nodes": json.dumps(list(keep_fp32_nodes)),
            "fp16_converter": "onnxruntime.transformers.float16 (keep_io_types=True)",
            "source_onnx_sha256": sha256_file(source),
        }
    )
    set_metadata(fp16, info.to_props())

    say("checking the FP16 graph")
    report = require_valid_graph(
        fp16,
        static_batch,
        "the FP16 graph",
        hint="Nothing was written. Please report the model and options.",
    )

    checked = None
    with atomic_path(output) as tmp:
        tmp.write_bytes(fp16.SerializeToString())
        if check is not None:
            say("comparing FP16 with its FP32 reference")
            checked = check(tmp)
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST

    blocked = set(DEFAULT_OP_BLOCK_LIST) | set(ops)
    kept = [
        n.name for n in fp16.graph.node if n.op_type in blocked or n.name in set(keep_fp32_nodes)
    ]
    return Fp16Result(
        path=output,
        source=source,
        keep_fp32=ops,
        kept_nodes=kept,
        casts=sum(1 for n in fp16.graph.node if n.op_type == "Cast")
        - sum(1 for n in model.graph.node if n.op_type == "Cast"),
        seconds=time.perf_counter() - started,
        graph=report,
        check=checked,
        size_bytes=output.stat().st_size,
        source_size_bytes=source.stat().st_size,
    )
