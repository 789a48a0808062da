"""Where Q/DQ pairs go, and which nodes belong to which part of the network.

TensorRT fuses a DequantizeLinear into the op that consumes it and runs that op in INT8, and a
QuantizeLinear into the op that writes its input when every reader of that input is quantized, so
*where* the pairs sit decides what runs in INT8, what fuses, and which tensors the engine writes in
float. Two placements (``placement=``, ``calibrate --placement``):

``trt`` (default): NVIDIA's explicit-quantization guide, as ModelOpt places them.

* **Conv / Gemm**: Q/DQ on the activation input, per-channel symmetric INT8 weights (axis 0 =
  output channels); no Q/DQ on their outputs (the next op decides).
* **Residual Add**: the input that does not come straight from a Conv (the residual) gets Q/DQ, so
  TensorRT fuses Conv + Add into one INT8 kernel reading the residual in INT8. (With both inputs
  from Convs, e.g. a projection shortcut, the second one is the residual; with none, both.)
* **Pre-activation BatchNormalization, MaxPool, Resize**: Q/DQ on their input, so BN(scale)+ReLU
  and pooling run INT8 → INT8 and every residual-Add output feeds only QuantizeLinear nodes: the
  fused Conv+Add writes INT8 instead of a float tensor at every unit boundary.
* **Attention-gate Mul** (``(1 + M)·T``): both inputs. The Sigmoid/Softmax stays fused with the
  Conv before it (its input is not quantized unless ``include_attention``).

``conservative``: the toolkit's earlier placement: Conv/Gemm inputs and residual Add inputs only;
BatchNorm, MaxPool and the attention ops (Sigmoid, Softmax, Resize, gate Mul) read float, so each
unit boundary is a float tensor. ``include_attention=True`` adds the attention-op inputs.

Nothing is placed on graph outputs, and ``exclude`` keeps any node in float under either placement.
:mod:`exporters.coverage` counts what each placement leaves in float.

Groups (for ``--exclude`` and sensitivity) are read from initializer names, which the exporter
keeps as PyTorch parameter paths (``stages.1.attention.0.trunk.0.conv1.weight``): a RAN's groups
are ``stem``, ``stageS.transition``, ``stageS.moduleM``, ``final`` and ``head``; other networks get
the first two components of the path. Nodes without weights (ReLU, Add, Sigmoid, Mul, Resize) take
the group of their most downstream producer. This works on any file the toolkit exported, with or
without the exporter's per-node metadata (which onnxslim drops).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import onnx

from calibration.defaults import DEFAULT_PLACEMENT
from deploy_ran.errors import DeployRanError

QUANTIZED_WEIGHT_OPS = ("Conv", "Gemm")
ATTENTION_OPS = ("Sigmoid", "Softmax", "Resize")
GATE_SOURCES = ("Sigmoid", "Softmax", "Div")  # what an attention mask is made by
INPUT_GROUP = "input"
#: Placements ``plan_quantization`` knows (see the module docstring); the first is the default.
PLACEMENTS = ("trt", "conservative")
assert DEFAULT_PLACEMENT in PLACEMENTS
#: Ops whose (first) activation input the ``trt`` placement quantizes besides Conv/Gemm and Add.
FUSION_INPUT_OPS = ("BatchNormalization", "MaxPool", "AveragePool", "GlobalAveragePool")

_RAN_PATTERNS = [
    (re.compile(r"^stages\.(\d+)\.attention\.(\d+)\."), "stage{0}.module{1}"),
    (re.compile(r"^stages\.(\d+)\.transition\."), "stage{0}.transition"),
    (re.compile(r"^stem\."), "stem"),
    (re.compile(r"^final\."), "final"),
    (re.compile(r"^(head_bn|fc)\."), "head"),
]


def group_of_parameter(name: str) -> str | None:
    """Group of a parameter path; ``None`` for names that are not parameter paths."""
    if "." not in name:
        return None
    for pattern, template in _RAN_PATTERNS:
        match = pattern.match(name)
        if match:
            numbers = [int(g) + 1 for g in match.groups() if g and g.isdigit()]
            return template.format(*numbers)
    parts = name.split(".")[:-1]
    return ".".join(parts[:2]) if parts else None


@dataclass
class Target:
    """One activation tensor that receives a Q/DQ pair, for one consuming node."""

    node: str
    op_type: str
    tensor: str
    role: str  # "conv input", "gemm input", "residual", "bn input", "pool input", "attention"
    group: str


@dataclass
class QuantPlan:
    """Which nodes and tensors are quantized, which stay in float, and why."""

    weight_nodes: list[str]  # Conv/Gemm nodes with INT8 weights
    targets: list[Target]  # activation Q/DQ, per consuming node
    kept_float: list[tuple[str, str, str]]  # (node, op type, reason)
    excluded_groups: list[str] = field(default_factory=list)
    excluded_nodes: list[str] = field(default_factory=list)
    placement: str = DEFAULT_PLACEMENT

    @property
    def activation_tensors(self) -> list[str]:
        return sorted({t.tensor for t in self.targets})

    def target_pairs(self) -> set[tuple[str, str]]:
        return {(t.node, t.tensor) for t in self.targets}


class GraphIndex:
    """Producers, consumers, initializers and groups of one graph, computed once."""

    def __init__(self, model: onnx.ModelProto) -> None:
        graph = model.graph
        self.model = model
        self.nodes = list(graph.node)
        self.by_name = {n.name: n for n in self.nodes}
        self.initializers = {i.name for i in graph.initializer}
        self.constants = set(self.initializers) | {
            o for n in self.nodes if n.op_type == "Constant" for o in n.output
        }
        self.producer = {o: n for n in self.nodes for o in n.output}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for n in self.nodes:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)
        self.graph_inputs = {i.name for i in graph.input}
        self.graph_outputs = {o.name for o in graph.output}
        self.order = {n.name: k for k, n in enumerate(self.nodes)}
        self.group = self._assign_groups()

    def _assign_groups(self) -> dict[str, str]:
        group: dict[str, str] = {}
        first_seen: dict[str, int] = {INPUT_GROUP: -1}
        for k, node in enumerate(self.nodes):
            found = None
            for name in node.input:
                if name in self.initializers:
                    found = group_of_parameter(name)
                    if found:
                        break
            if found is None:
                producers = [group[self.producer[i].name] for i in node.input if i in self.producer]
                producers = [g for g in producers if g is not None]
                found = max(producers, key=lambda g: first_seen.get(g, k)) if producers else None
            found = found or INPUT_GROUP
            first_seen.setdefault(found, k)
            group[node.name] = found
        return group

    def groups(self) -> dict[str, list[str]]:
        """Group name → node names, groups in graph order."""
        out: dict[str, list[str]] = {}
        for node in self.nodes:
            out.setdefault(self.group[node.name], []).append(node.name)
        return out

    def is_gate_mul(self, node: onnx.NodeProto) -> bool:
        """A Mul that applies an attention mask: one input is made (within two steps through an
        Add/Sub with a constant) by a Sigmoid, Softmax or normalising Div."""
        if node.op_type != "Mul":
            return False
        for name in node.input:
            current = self.producer.get(name)
            for _ in range(3):
                if current is None:
                    break
                if current.op_type in GATE_SOURCES:
                    return True
                if current.op_type in ("Add", "Sub") and any(
                    i in self.constants for i in current.input
                ):
                    current = next(
                        (self.producer.get(i) for i in current.input if i not in self.constants),
                        None,
                    )
                    continue
                break
        return False

    def mask_inputs(self, node: onnx.NodeProto) -> set[str]:
        """The inputs of a gate Mul that carry the mask (made by a Sigmoid/Softmax/Div, maybe
        through ``1 + M``); the other input is the trunk."""
        out = set()
        for name in node.input:
            current = self.producer.get(name)
            if current is not None and current.op_type in ("Add", "Sub"):
                inner = [i for i in current.input if i not in self.constants]
                current = self.producer.get(inner[0]) if len(inner) == 1 else None
            if current is not None and current.op_type in GATE_SOURCES:
                out.add(name)
        return out


def _matches(name: str, group: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(group, p) for p in patterns)


def plan_quantization(
    model: onnx.ModelProto | GraphIndex,
    *,
    exclude: Iterable[str] = (),
    include_attention: bool = False,
    only_groups: Iterable[str] | None = None,
    placement: str = DEFAULT_PLACEMENT,
    float_mask: bool = False,
) -> QuantPlan:
    """Decide the Q/DQ placement (see the module docstring).

    ``placement``: ``"trt"`` or ``"conservative"``. ``float_mask`` (``trt`` only) leaves the
    attention mask side in float: the gate Mul's mask input and the mask branch's Resize (the
    choice the README's digits table measures).

    ``exclude``: shell patterns matched against node names and group names (``stage3.*``,
    ``node_conv2d_12``); matching nodes stay in float. ``only_groups``: quantize just these groups
    (sensitivity analysis).
    """
    if placement not in PLACEMENTS:
        raise DeployRanError(
            f"Unknown placement {placement!r}; expected one of {', '.join(PLACEMENTS)}.",
            hint="trt: Q/DQ for TensorRT's fusions (default); conservative: Conv/Gemm and "
            "residual-Add inputs only (--placement).",
            param="placement",
        )
    fused = placement == "trt"
    index = model if isinstance(model, GraphIndex) else GraphIndex(model)
    patterns = list(exclude)
    unmatched = [
        p
        for p in patterns
        if not any(_matches(n.name, index.group[n.name], [p]) for n in index.nodes)
    ]
    if unmatched:  # a typo must not silently quantize what the user meant to keep in float
        groups = ", ".join(list(index.groups())[:12])
        raise DeployRanError(
            f"exclude pattern(s) {', '.join(map(repr, unmatched))} match no node or group.",
            hint=f"Groups of this model: {groups}; node names are listed by "
            "`python cli.py inspect FILE --json`.",
            param="exclude",
        )
    only = set(only_groups) if only_groups is not None else None
    weight_nodes: list[str] = []
    targets: list[Target] = []
    kept: list[tuple[str, str, str]] = []
    excluded_nodes: list[str] = []

    def usable(tensor: str) -> bool:
        return (
            bool(tensor)
            and tensor not in index.constants
            and tensor not in index.graph_outputs  # no Q/DQ on graph outputs
        )

    for node in index.nodes:
        group = index.group[node.name]
        op = node.op_type
        candidate = op in QUANTIZED_WEIGHT_OPS or op == "Add" or op in ATTENTION_OPS
        candidate = candidate or op == "Mul" or (fused and op in FUSION_INPUT_OPS)
        if not candidate:
            continue
        if patterns and _matches(node.name, group, patterns):
            excluded_nodes.append(node.name)
            kept.append((node.name, op, "excluded"))
            continue
        if only is not None and group not in only:
            continue
        if op in QUANTIZED_WEIGHT_OPS:
            if len(node.input) < 2 or node.input[1] not in index.initializers:
                kept.append((node.name, op, "weights are not constant"))
                continue
            weight_nodes.append(node.name)
            if usable(node.input[0]):
                role = "conv input" if op == "Conv" else "gemm input"
                targets.append(Target(node.name, op, node.input[0], role, group))
        elif op == "Add":
            live = [i for i in node.input if i not in index.constants]
            if len(live) != 2:
                continue
            from_conv = [
                i for i in live if getattr(index.producer.get(i), "op_type", None) == "Conv"
            ]
            if not from_conv and not fused:
                continue
            if len(from_conv) == 2:
                residuals = live[1:]
            elif from_conv:
                residuals = [i for i in live if i not in from_conv]
            else:  # trt: an Add of two non-Conv tensors reads both in INT8
                residuals = live
            for residual in residuals:
                if usable(residual):
                    targets.append(Target(node.name, op, residual, "residual", group))
        elif op in FUSION_INPUT_OPS:  # trt only (see candidate)
            if usable(node.input[0]):
                role = "bn input" if op == "BatchNormalization" else "pool input"
                targets.append(Target(node.name, op, node.input[0], role, group))
        elif fused and not include_attention and (op == "Resize" or index.is_gate_mul(node)):
            mask_side = index.mask_inputs(node) if op == "Mul" else set(node.input[:1])
            if op == "Resize" and float_mask:
                kept.append((node.name, op, "mask Resize kept in float (float_mask)"))
                continue
            for tensor in node.input[:1] if op == "Resize" else node.input:
                if op == "Mul" and float_mask and tensor in mask_side:
                    continue
                if usable(tensor):
                    targets.append(Target(node.name, op, tensor, "attention", group))
        elif op in ATTENTION_OPS or index.is_gate_mul(node):
            what = "attention gate" if op == "Mul" else op
            if not include_attention:
                kept.append((node.name, op, f"{what} kept in higher precision"))
                continue
            inputs = node.input[:1] if op == "Resize" else node.input
            for tensor in inputs:
                if usable(tensor):
                    targets.append(Target(node.name, op, tensor, "attention", group))
    excluded_groups = sorted(
        {g for g in index.groups() if patterns and any(fnmatch.fnmatchcase(g, p) for p in patterns)}
    )
    return QuantPlan(
        weight_nodes=weight_nodes,
        targets=targets,
        kept_float=kept,
        excluded_groups=excluded_groups,
        excluded_nodes=excluded_nodes,
        placement=placement,
    )


def calibration_tensors(index: GraphIndex) -> list[str]:
    """Every activation any plan may quantize (every placement, attention ops included), so one
    calibration run serves every ``--placement`` / ``--exclude`` / ``--include-attention`` choice
    and the sensitivity analysis."""
    names: set[str] = set()
    for placement in PLACEMENTS:
        names.update(
            plan_quantization(index, include_attention=True, placement=placement).activation_tensors
        )
    return sorted(names)


def quantizable_groups(index: GraphIndex) -> list[str]:
    """Groups holding at least one Conv/Gemm (the units sensitivity analysis switches)."""
    plan = plan_quantization(index, include_attention=False, placement="conservative")
    return list(dict.fromkeys(index.group[n] for n in plan.weight_nodes))
