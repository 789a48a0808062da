"""Static checks of an exported graph: the promises the toolkit makes about its ONNX files.

* Every Resize is bilinear with ``align_corners``, no antialias, stretch policy, and resizes to an
  H×W that is a constant of the graph: a constant ``sizes``/``scales`` input, or ``sizes`` built
  only from the batch dimension (``Shape`` of a tensor, elements before H) and constants. TensorRT
  then builds the resize at build time; nothing about the spatial size is decided at run time.
* Shape inference leaves every tensor's shape static except its leading batch dimension.
* With a static batch, the graph holds no ``Shape`` op at all.

The checks run on the written file; the exporter refuses to finish when one fails.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import numpy_helper

RESIZE_REQUIREMENTS = {
    "mode": "linear",
    "coordinate_transformation_mode": "align_corners",
    "antialias": 0,
    "keep_aspect_ratio_policy": "stretch",
}
_RESIZE_DEFAULTS = {
    "mode": "nearest",
    "coordinate_transformation_mode": "half_pixel",
    "antialias": 0,
    "keep_aspect_ratio_policy": "stretch",
}


@dataclass
class ResizeInfo:
    """One Resize node as the checks saw it."""

    name: str
    mode: str
    coordinate_transformation_mode: str
    antialias: int
    keep_aspect_ratio_policy: str
    output_hw: tuple[int, int] | None  # None when not a graph constant
    source: str  # "constant sizes", "batch dim + constant sizes", "constant scales", or why not
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class GraphReport:
    """Result of :func:`check_graph`."""

    resizes: list[ResizeInfo]
    dynamic_tensors: list[str]  # tensors with a non-batch dim that is not a fixed number
    shape_ops: int
    op_histogram: Counter
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def _attrs(node: onnx.NodeProto) -> dict:
    out = {}
    for a in node.attribute:
        v = onnx.helper.get_attribute_value(a)
        out[a.name] = v.decode() if isinstance(v, bytes) else v
    return out


class _ConstantFinder:
    """Resolve a tensor name to a constant array when it is an initializer or a Constant node."""

    def __init__(self, graph: onnx.GraphProto) -> None:
        self.initializers = {i.name: i for i in graph.initializer}
        self.producers = {o: n for n in graph.node for o in n.output}

    def constant(self, name: str) -> np.ndarray | None:
        if name in self.initializers:
            return numpy_helper.to_array(self.initializers[name])
        node = self.producers.get(name)
        if node is not None and node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    return numpy_helper.to_array(a.t)
                if a.name in ("value_ints", "value_int", "value_floats", "value_float"):
                    return np.asarray(onnx.helper.get_attribute_value(a))
        return None


def _resize_target(
    node: onnx.NodeProto, finder: _ConstantFinder, input_rank: int | None
) -> tuple[tuple[int, int] | None, str]:
    """Constant output H×W of a Resize, and how it was established (or why it is not constant)."""
    sizes = node.input[3] if len(node.input) > 3 else ""
    scales = node.input[2] if len(node.input) > 2 else ""
    if sizes:
        const = finder.constant(sizes)
        if const is not None:
            return (int(const[-2]), int(const[-1])), "constant sizes"
        producer = finder.producers.get(sizes)
        if producer is None or producer.op_type != "Concat":
            kind = producer.op_type if producer is not None else "a graph input"
            return None, f"sizes computed at run time by {kind}"
        parts: list[tuple[str, int]] = []  # ("shape", n_elems) or ("const", value)
        values: list[int | None] = []
        for part in producer.input:
            const = finder.constant(part)
            if const is not None:
                values.extend(int(v) for v in np.atleast_1d(const))
                parts.append(("const", len(np.atleast_1d(const))))
                continue
            shape_node = finder.producers.get(part)
            if shape_node is None or shape_node.op_type != "Shape":
                kind = shape_node.op_type if shape_node is not None else "a graph input"
                return None, f"sizes built from {kind}, not from the batch dimension and constants"
            attrs = _attrs(shape_node)
            start, end = attrs.get("start", 0), attrs.get("end", input_rank)
            if start != 0 or end != 1:
                return None, (
                    f"sizes read dimensions [{start}:{end}] from a tensor's shape "
                    "(only the batch dimension, [0:1], may come from a shape)"
                )
            values.extend([None] * (end - start))
            parts.append(("shape", end - start))
        if len(values) < 2 or values[-1] is None or values[-2] is None:
            return None, "sizes take H or W from a tensor's shape"
        return (values[-2], values[-1]), "batch dim + constant sizes"
    if scales:
        const = finder.constant(scales)
        if const is None:
            return None, "scales computed at run time"
        return None, "constant scales (output size depends on the input size)"
    return None, "Resize has neither sizes nor scales"


def check_graph(model: onnx.ModelProto, static_batch: bool) -> GraphReport:
    """Run every static check on a shape-inferred model; see the module docstring."""
    inferred = onnx.shape_inference.infer_shapes(
        model, check_type=True, strict_mode=True, data_prop=True
    )
    graph = inferred.graph
    finder = _ConstantFinder(graph)
    ranks: dict[str, int] = {}
    shapes: dict[str, list] = {}
    for vi in list(graph.input) + list(graph.value_info) + list(graph.output):
        tt = vi.type.tensor_type
        if tt.HasField("shape"):
            dims = [
                d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                for d in tt.shape.dim
            ]
            shapes[vi.name] = dims
            ranks[vi.name] = len(dims)

    problems: list[str] = []
    resizes: list[ResizeInfo] = []
    for node in graph.node:
        if node.op_type != "Resize":
            continue
        attrs = {**_RESIZE_DEFAULTS, **_attrs(node)}
        info = ResizeInfo(
            name=node.name or node.output[0],
            mode=attrs["mode"],
            coordinate_transformation_mode=attrs["coordinate_transformation_mode"],
            antialias=int(attrs["antialias"]),
            keep_aspect_ratio_policy=attrs["keep_aspect_ratio_policy"],
            output_hw=None,
            source="",
        )
        for key, want in RESIZE_REQUIREMENTS.items():
            if attrs[key] != want:
                info.problems.append(f"{key}={attrs[key]!r} (expected {want!r})")
        if "axes" in attrs:
            info.problems.append(
                "uses the opset-18 'axes' attribute, which TensorRT does not parse"
            )
        info.output_hw, info.source = _resize_target(node, finder, ranks.get(node.input[0]))
        if info.output_hw is None:
            info.problems.append(info.source)
        out_shape = shapes.get(node.output[0])
        if (
            info.output_hw is not None
            and out_shape is not None
            and tuple(out_shape[-2:]) != info.output_hw
        ):
            info.problems.append(f"inferred output {out_shape} does not end in {info.output_hw}")
        if not info.ok:
            problems.append(f"Resize {info.name}: " + "; ".join(info.problems))
        resizes.append(info)

    dynamic = []
    for name, dims in shapes.items():
        if any(not isinstance(d, int) or d <= 0 for d in dims[1:]) or dims[:1] == [None]:
            dynamic.append(f"{name} {dims}")
    initializer_names = {i.name for i in graph.initializer}
    produced = {o for n in graph.node for o in n.output}
    missing = [o for o in produced if o not in shapes and o not in initializer_names]
    missing = [o for o in missing if finder.producers[o].op_type != "Constant"]
    if dynamic:
        problems.append(
            f"{len(dynamic)} tensor(s) have a dynamic dimension other than the batch: "
            + ", ".join(dynamic[:5])
        )
    if missing:
        problems.append(
            f"shape inference left {len(missing)} tensor(s) without a shape: {', '.join(missing[:5])}"
        )

    ops = Counter(n.op_type for n in graph.node)
    if static_batch and ops.get("Shape"):
        problems.append(f"static-batch graph still holds {ops['Shape']} Shape op(s)")
    for vi in graph.input:
        dims = shapes.get(vi.name, [])
        if static_batch and dims and not isinstance(dims[0], int):
            problems.append(f"input {vi.name} has a dynamic batch in a static-batch export")
    return GraphReport(
        resizes=resizes,
        dynamic_tensors=dynamic,
        shape_ops=ops.get("Shape", 0),
        op_histogram=ops,
        problems=problems,
    )


def require_valid_graph(
    model: onnx.ModelProto, static_batch: bool, what: str, hint: str
) -> GraphReport:
    """The static-graph checks and ``onnx.checker``'s full check, or :class:`ExportError`.

    Every file the toolkit writes (FP32, FP16, INT8 Q/DQ) goes through this before it is renamed
    into place; ``what`` names the graph in the error ("the FP16 graph").
    """
    from deploy_ran.errors import ExportError

    report = check_graph(model, static_batch=static_batch)
    if not report.ok:
        raise ExportError(
            f"{what[0].upper()}{what[1:]} breaks the toolkit's static-graph rules:\n- "
            + "\n- ".join(report.problems),
            hint=hint,
        )
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:
        raise ExportError(f"onnx.checker rejected {what}: {exc}", hint=hint) from exc
    return report
