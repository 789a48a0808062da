"""FP32 ONNX → FP16 ONNX: precision written into the artifact, checked before it is handed out.

TensorRT 11 builds only strongly typed networks, so an FP16 engine needs an ONNX file whose
tensors *are* FP16; a builder flag no longer does it. ``convert_to_fp16`` makes that file with ONNX
Runtime's maintained converter (``onnxruntime.transformers.float16``):

* weights and activations in FP16; the graph's inputs and outputs stay FP32, with a Cast at each
  edge, so callers feed and read the same arrays as for the FP32 file;
* a keep-in-FP32 list of op types (:data:`DEFAULT_KEEP_FP32`, overridable) for ops whose FP16
  arithmetic overflows or loses too much, each wrapped in Casts;
* the static-graph checks of the FP32 export (constant Resize sizes, static shapes) run again;
* ONNX Runtime (CPU) runs the FP16 file against a reference (eager FP32 PyTorch when called from
  :func:`export_fp16`, the FP32 ONNX file otherwise) and refuses outputs that drift too far or
  overflow.

On the CPU, ONNX Runtime runs FP16 ops it has no FP16 kernel for in FP32 behind inserted casts,
so the check there sees the FP16 rounding of weights and of every tensor that crosses a cast, not
every FP16 rounding a GPU would do; the engine builder checks again on the GPU.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from deploy_ran.artifacts import ArtifactInfo, get_metadata, load_onnx, precision_of, set_metadata
from deploy_ran.errors import DeployRanError, OnnxFileError, ParityError
from deploy_ran.fileio import atomic_path, check_writable, derived_output, sha256_file
from deploy_ran.metrics import compare
from exporters.graph_checks import GraphReport, require_valid_graph

#: Op types kept in FP32 by default, and why. Reductions and norms are where FP16 fails on these
#: networks: a sum of squares over 1024 channels passes FP16's 65504 long before any single value
#: does, and means/variances over a feature map lose digits. Everything else (Conv, BN, ReLU,
#: Sigmoid, Resize, Mul, Add, Gemm) is safe in FP16 and is where the speed is.
DEFAULT_KEEP_FP32: dict[str, str] = {
    "ReduceMean": "global average pool and the spatial-attention mean/variance: FP32 accumulation",
    "ReduceSum": "channel-attention L2 norm: a sum of squares overflows FP16's 65504",
    "ReduceSumSquare": "as ReduceSum",
    "ReduceL2": "as ReduceSum",
    "Sqrt": "normalisation denominators (tiny variances underflow in FP16)",
    "Pow": "squares inside normalisations overflow FP16",
}

#: Relative L2 limit of FP16 outputs against the FP32 reference; beyond it nothing is written.
FP16_REL_L2 = 1e-2


@dataclass
class Fp16Check:
    """FP16 ONNX Runtime outputs against the FP32 reference, for one output and batch size."""

    batch: int
    output: str
    max_abs: float
    rel_l2: float
    top1: float | None
    finite: bool
    limit: float = FP16_REL_L2

    @property
    def ok(self) -> bool:
        return self.finite and self.rel_l2 <= self.limit


@dataclass
class Fp16Result:
    """What :func:`convert_to_fp16` wrote and measured."""

    path: Path
    source: Path | None
    reference: str  # "eager PyTorch (FP32)" or "ONNX Runtime on <source>"
    keep_fp32: list[str]
    kept_nodes: list[str]  # nodes left in FP32 (blocked op types and named nodes)
    casts: int
    seconds: float
    graph: GraphReport
    checks: list[Fp16Check] = field(default_factory=list)
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


def convert_model_to_fp16(
    model: onnx.ModelProto,
    keep_fp32: Iterable[str] | None = None,
    keep_fp32_nodes: Iterable[str] = (),
) -> onnx.ModelProto:
    """Convert an in-memory FP32 model to FP16 with FP32 graph I/O (no checks, no metadata)."""
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    ops = list(DEFAULT_KEEP_FP32 if keep_fp32 is None else keep_fp32)
    block = sorted(set(DEFAULT_OP_BLOCK_LIST) | set(ops))
    source = onnx.ModelProto()
    source.CopyFrom(model)  # the converter may edit its argument in place
    converted = convert_float_to_float16(
        source,
        keep_io_types=True,
        op_block_list=block,
        node_block_list=list(keep_fp32_nodes) or None,
    )
    # The converter appends its Casts at the end of the node list; ONNX wants topological order.
    OnnxModel(converted).topological_sort()
    return converted


Reference = Callable[[np.ndarray], list[np.ndarray]]


def ort_reference(model: onnx.ModelProto | str | Path) -> Reference:
    """A reference that runs an ONNX model (bytes, proto or path) in ONNX Runtime on the CPU."""
    import onnxruntime as ort

    if isinstance(model, onnx.ModelProto):
        model = model.SerializeToString()
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(
        model if isinstance(model, bytes) else str(model), opts, providers=["CPUExecutionProvider"]
    )
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})


def check_fp16(
    fp16: onnx.ModelProto,
    reference: Reference,
    input_shape: Sequence[int],
    batches: Sequence[int],
    output_names: Sequence[str],
    limit: float = FP16_REL_L2,
    seed: int = 0,
) -> list[Fp16Check]:
    """Run the FP16 model in ONNX Runtime and compare every output with ``reference``."""
    candidate = ort_reference(fp16)
    rng = np.random.default_rng(seed)
    checks = []
    for batch in batches:
        x = rng.standard_normal((batch, *input_shape), dtype=np.float32)
        refs, outs = reference(x), candidate(x)
        for name, ref, out in zip(output_names, refs, outs):
            finite = bool(np.isfinite(out).all())
            agreement = compare(ref, np.nan_to_num(out), classification=name == "logits")
            checks.append(
                Fp16Check(
                    batch=batch,
                    output=name,
                    max_abs=agreement.max_abs,
                    rel_l2=agreement.rel_l2,
                    top1=agreement.top1,
                    finite=finite,
                    limit=limit,
                )
            )
    return checks


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


def convert_to_fp16(
    onnx_path: str | Path,
    output: str | Path | None = None,
    *,
    keep_fp32: Iterable[str] | None = None,
    keep_fp32_nodes: Iterable[str] = (),
    reference: Reference | None = None,
    reference_name: str | None = None,
    check: bool = True,
    limit: float = FP16_REL_L2,
    progress: Callable[[str], None] | None = None,
) -> Fp16Result:
    """Convert the FP32 ONNX file at ``onnx_path`` to FP16 (default ``<stem>.fp16.onnx``).

    ``keep_fp32`` replaces :data:`DEFAULT_KEEP_FP32` (op types left in FP32); ``keep_fp32_nodes``
    names single nodes to leave in FP32. ``reference`` maps an FP32 input batch to the expected
    outputs; by default the source file is run in ONNX Runtime. Raises :class:`ParityError` (and
    writes nothing) when an output is not finite or drifts beyond relative L2 ``limit``.
    """
    say = progress or (lambda _msg: None)
    started = time.perf_counter()
    source = Path(onnx_path)
    output = derived_output(source, output, default_fp16_path(source), "FP16")
    model = load_onnx(source)
    require_fp32(model, source, "FP16 conversion")
    ops = list(DEFAULT_KEEP_FP32 if keep_fp32 is None else keep_fp32)
    unknown = [op for op in ops if not onnx.defs.has(op)]
    if unknown:
        raise DeployRanError(
            f"--keep-fp32 takes ONNX op types (e.g. ReduceMean, Softmax); got {', '.join(unknown)}.",
            hint="Op type names are case-sensitive, as in `python cli.py inspect FILE`.",
        )
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

    output_names = [o.name for o in fp16.graph.output]
    checks: list[Fp16Check] = []
    if check:
        ref = reference or ort_reference(model)
        ref_name = reference_name or (
            "eager PyTorch (FP32)" if reference else f"ONNX Runtime on {source.name} (FP32)"
        )
        batches = [1] if static_batch else [1, 3]
        if static_batch:
            batches = [int(model.graph.input[0].type.tensor_type.shape.dim[0].dim_value)]
        say(f"comparing FP16 (ONNX Runtime) with {ref_name}")
        checks = check_fp16(fp16, ref, input_shape, batches, output_names, limit=limit)
        bad = [c for c in checks if not c.ok]
        if bad:
            worst = max(bad, key=lambda c: (not c.finite, c.rel_l2))
            why = (
                "is not finite (FP16 overflow)"
                if not worst.finite
                else f"has relative L2 {worst.rel_l2:.2e} (limit {limit:.0e})"
            )
            raise ParityError(
                f"The FP16 model drifts from {ref_name}: output {worst.output!r} at batch "
                f"{worst.batch} {why}.",
                hint="Nothing was written. Keep the offending ops in FP32 with --keep-fp32 OP "
                "(see `inspect`'s op list), or deploy the FP32/INT8 file.",
            )
    else:
        ref_name = "not checked"

    with atomic_path(output) as tmp:
        tmp.write_bytes(fp16.SerializeToString())
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST

    blocked = set(DEFAULT_OP_BLOCK_LIST) | set(ops)
    kept = [
        n.name for n in fp16.graph.node if n.op_type in blocked or n.name in set(keep_fp32_nodes)
    ]
    return Fp16Result(
        path=output,
        source=source,
        reference=ref_name,
        keep_fp32=ops,
        kept_nodes=kept,
        casts=sum(1 for n in fp16.graph.node if n.op_type == "Cast")
        - sum(1 for n in model.graph.node if n.op_type == "Cast"),
        seconds=time.perf_counter() - started,
        graph=report,
        checks=checks,
        size_bytes=output.stat().st_size,
        source_size_bytes=source.stat().st_size,
    )


def fp32_path_for(fp16_output: str | Path) -> Path:
    """Where ``export --precision fp16`` puts the FP32 file it converts from.

    ``ran92.fp16.onnx`` → ``ran92.onnx``; any other name ``x.onnx`` → ``x.fp32.onnx``.
    """
    out = Path(fp16_output)
    if out.name.endswith(".fp16.onnx"):
        return out.with_name(out.name[: -len(".fp16.onnx")] + ".onnx")
    return out.with_name(f"{out.stem}.fp32.onnx")


def export_fp16(
    name: str,
    output: str | Path | None = None,
    *,
    fp32_output: str | Path | None = None,
    keep_fp32: Iterable[str] | None = None,
    keep_fp32_nodes: Iterable[str] = (),
    check: bool = True,
    progress: Callable[[str], None] | None = None,
    **export_kwargs: Any,
) -> tuple[Any, Fp16Result]:
    """Export ``name`` to FP32 ONNX (checked), then to FP16 checked against eager FP32 PyTorch.

    Writes ``NAME.onnx`` and ``NAME.fp16.onnx`` by default. Returns ``(ExportResult,
    Fp16Result)``. ``export_kwargs`` are :func:`exporters.onnx.export_onnx`'s.
    """
    from exporters.onnx import export_onnx

    output = Path(output or f"{name}.fp16.onnx")
    fp32 = Path(fp32_output) if fp32_output else fp32_path_for(output)
    check_writable(output)
    check_writable(fp32)
    exported = export_onnx(name, fp32, progress=progress, **export_kwargs)
    reference = None
    if check:
        import torch

        model = exported.eager

        def reference(x: np.ndarray) -> list[np.ndarray]:
            with torch.no_grad():
                out = model(torch.from_numpy(x))
            outs = [out] if isinstance(out, torch.Tensor) else list(out)
            return [o.numpy() for o in outs]

    result = convert_to_fp16(
        fp32,
        output,
        keep_fp32=keep_fp32,
        keep_fp32_nodes=keep_fp32_nodes,
        reference=reference,
        reference_name="eager PyTorch (FP32)" if check else None,
        check=check,
        progress=progress,
    )
    return exported, result
