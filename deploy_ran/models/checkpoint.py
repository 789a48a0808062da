"""Loading user checkpoints safely and explaining every mismatch.

Checkpoints are read with ``torch.load(weights_only=True)``: a checkpoint is data, and unpickling
arbitrary objects from a file someone handed you runs their code. Accepted layouts: a bare
state_dict, or a dict holding it under ``state_dict``, ``model``, ``model_state_dict`` or ``net``;
``module.`` (DataParallel/DDP) and ``_orig_mod.`` (torch.compile) prefixes are removed. State dicts
saved from the PyTorch port of the Residual Attention Network
(tengshaofeng/ResidualAttentionNetwork-pytorch) are recognised and renamed to this toolkit's layout.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from deploy_ran.errors import CheckpointError, DeployRanError
from deploy_ran.reading import require_regular_file

_CONTAINER_KEYS = ("state_dict", "model", "model_state_dict", "net", "module")
_PREFIXES = ("module.", "_orig_mod.", "model.")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a checkpoint file into a flat ``{name: tensor}`` dict (not yet matched to a model)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(
            f"Checkpoint {path} does not exist.", hint="Check the path given to --checkpoint."
        )
    if path.is_dir():
        raise CheckpointError(
            f"Checkpoint {path} is a directory.", hint="Give the .pt/.pth file inside it."
        )
    try:  # a FIFO would block torch.load, /dev/zero would never end
        require_regular_file(path, "checkpoint")
    except DeployRanError as exc:
        raise CheckpointError(exc.message, hint=exc.hint) from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise _unpickling_error(path, str(exc)) from None
    except Exception as exc:  # corrupt zip, truncated file, not a torch file at all
        raise CheckpointError(
            f"Checkpoint {path} is not a readable PyTorch checkpoint ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else 'no details'}).",
            hint="Was the file truncated while copying? Re-save it with torch.save(state_dict).",
        ) from None
    state = _unwrap(obj, path)
    return _strip_prefixes(state)


# torch words its refusals differently across versions ("Unsupported global: GLOBAL x.y" up to
# 2.12, "Trying to load unsupported GLOBAL x.y whose module x is blocked" in 2.13): match the
# stable parts only.
_GLOBAL = re.compile(r"\bGLOBAL\s+([\w.]+)", re.IGNORECASE)
_REFUSED = re.compile(r"weights[_ ]only|WeightsUnpickler", re.IGNORECASE)
_OPERAND = re.compile(r"Unsupported operand\s+(\d+)", re.IGNORECASE)


def _unpickling_error(path: Path, text: str) -> CheckpointError:
    """Say *why* torch.load(weights_only=True) refused ``path``: a forbidden object, or garbage."""
    found = _GLOBAL.search(text)
    if found is not None:
        return CheckpointError(
            f"Checkpoint {path} was refused by torch.load(weights_only=True): it holds a pickled "
            f"Python object ({found.group(1)}), not only tensors, and loading it could run code.",
            hint="Re-save only the weights: torch.save(model.state_dict(), 'model.pt').",
        )
    with open(path, "rb") as fh:
        head = fh.read(4)
    # A pickle starts with PROTO (0x80) and a protocol number; torch's own format is a zip.
    looks_like_pickle = head[:1] == b"\x80" or head[:2] == b"PK"
    if _REFUSED.search(text) and looks_like_pickle:
        op = _OPERAND.search(text)
        what = f" (pickle opcode {op.group(1)})" if op else ""
        return CheckpointError(
            f"Checkpoint {path} was refused by torch.load(weights_only=True): it is a pickle "
            f"that uses instructions a plain tensor checkpoint does not need{what}, so it "
            "cannot be loaded safely.",
            hint="Re-save only the weights with torch.save(model.state_dict(), 'model.pt').",
        )
    return CheckpointError(
        f"Checkpoint {path} is not a readable PyTorch checkpoint (unpickling failed).",
        hint="Is it a checkpoint at all, or was it truncated? Re-save it with "
        "torch.save(model.state_dict(), path).",
    )


def _unwrap(obj: object, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping):
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return dict(obj)
        for key in _CONTAINER_KEYS:
            inner = obj.get(key)
            if (
                isinstance(inner, Mapping)
                and inner
                and all(isinstance(v, torch.Tensor) for v in inner.values())
            ):
                return dict(inner)
    kind = type(obj).__name__
    keys = f" with keys {sorted(map(str, obj))[:8]}" if isinstance(obj, Mapping) else ""
    raise CheckpointError(
        f"Checkpoint {path} is a {kind}{keys}, not a state_dict.",
        hint=(
            "Expected a dict of tensors, or one under 'state_dict', 'model' or "
            "'model_state_dict'. Save it with torch.save(model.state_dict(), path)."
        ),
    )


def _strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    changed = True
    while changed:
        changed = False
        for prefix in _PREFIXES:
            if state and all(k.startswith(prefix) for k in state):
                state = {k[len(prefix) :]: v for k, v in state.items()}
                changed = True
    return state


CLASSIFIER_KEYS = ("fc.weight", "classifier.weight")  # RAN/ABN, Attend-and-Rectify


def classifier_classes(state: Mapping[str, torch.Tensor]) -> int | None:
    """Class count of the checkpoint's final classifier (``fc`` or ``classifier``), if any."""
    for key in CLASSIFIER_KEYS:
        weight = state.get(key)
        if weight is not None and weight.ndim == 2:
            return int(weight.shape[0])
    return None


# --- the PyTorch port's names -------------------------------------------------------------------

_PORT_MARKERS = ("residual_block1.", "attention_module1.")


def is_port_state_dict(state: Mapping[str, torch.Tensor]) -> bool:
    """True for state dicts saved from tengshaofeng/ResidualAttentionNetwork-pytorch."""
    return any(k.startswith(_PORT_MARKERS) for k in state)


def _port_module_map(model: nn.Module) -> dict[str, str]:
    """Port module prefix -> this toolkit's module prefix, for a ResidualAttentionNet."""
    mapping = {"conv1.0": "stem.0", "conv1.1": "stem.1", "mpool2.0": "head_bn", "fc": "fc"}
    for s, stage in enumerate(model.stages):
        mapping[f"residual_block{s + 1}"] = f"stages.{s}.transition"
        for m, module in enumerate(stage.attention):
            port = f"attention_module{s + 1}" + ("" if m == 0 else f"_{m + 1}")
            ours = f"stages.{s}.attention.{m}"
            mapping.update(_port_attention_map(port, ours, module))
    for i in range(len(model.final)):
        mapping[f"residual_block{len(model.stages) + 1 + i}"] = f"final.{i}"
    return mapping


def _port_attention_map(port: str, ours: str, module: nn.Module) -> dict[str, str]:
    mapping = {
        f"{port}.first_residual_blocks": f"{ours}.pre.0",
        f"{port}.trunk_branches": f"{ours}.trunk",
        f"{port}.last_blocks": f"{ours}.post.0",
    }
    mask = module.mask
    levels = len(mask.down)
    head = {"0": "bn1", "2": "conv1", "3": "bn2", "5": "conv2"}
    # ImageNet modules: softmax{j}_blocks numbered along the mask path, head last.
    for j in range(1, levels):
        mapping[f"{port}.softmax{j}_blocks"] = f"{ours}.mask.down.{j - 1}.0"
        mapping[f"{port}.skip{j}_connection_residual_block"] = f"{ours}.mask.skips.{j - 1}"
    mapping[f"{port}.softmax{levels}_blocks"] = f"{ours}.mask.down.{levels - 1}"
    for j in range(levels + 1, 2 * levels):
        mapping[f"{port}.softmax{j}_blocks"] = f"{ours}.mask.up.{2 * levels - 1 - j}.0"
    for idx, name in head.items():
        mapping[f"{port}.softmax{2 * levels}_blocks.{idx}"] = f"{ours}.mask_head.{name}"
    # CIFAR modules: descriptive names.
    for j in range(1, levels):
        mapping[f"{port}.down_residual_blocks{j}"] = f"{ours}.mask.down.{j - 1}.0"
        mapping[f"{port}.up_residual_blocks{j}"] = f"{ours}.mask.up.{levels - 1 - j}.0"
    mapping[f"{port}.middle_2r_blocks"] = f"{ours}.mask.down.{levels - 1}"
    for idx, name in head.items():
        mapping[f"{port}.conv1_1_blocks.{idx}"] = f"{ours}.mask_head.{name}"
    return mapping


def convert_port_state_dict(
    state: Mapping[str, torch.Tensor], model: nn.Module
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename a port state dict to ``model``'s names.

    Returns the renamed dict and the port keys dropped on purpose: the port creates a projection
    shortcut (``conv4``) in every unit and uses it only where the shape changes, so unused ones are
    dropped rather than reported as unexpected.
    """
    if not hasattr(model, "stages"):
        raise CheckpointError(
            "This checkpoint comes from the Residual Attention Network PyTorch port, "
            f"but {type(model).__name__} is not a Residual Attention Network.",
            hint="Load it into a RAN model (ran56, ran92, ...) built with variant='port'.",
        )
    prefixes = sorted(_port_module_map(model).items(), key=lambda kv: -len(kv[0]))
    ours = model.state_dict()
    renamed: dict[str, torch.Tensor] = {}
    dropped: list[str] = []
    for key, value in state.items():
        new = key
        for port, mine in prefixes:
            if key == port or key.startswith(port + "."):
                new = mine + key[len(port) :]
                break
        new = re.sub(r"\.conv4\.", ".shortcut.", new)
        if ".shortcut." in new and new not in ours and new.replace(".shortcut.", ".conv1.") in ours:
            dropped.append(key)
            continue
        renamed[new] = value
    return renamed, dropped


# --- matching a state dict to a model -------------------------------------------------------


@dataclass
class LoadReport:
    """What happened when a state dict was matched to a model."""

    source: str
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple, tuple]] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    converted_from: str | None = None

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def describe(self, limit: int = 8) -> str:
        lines = []

        def show(title: str, items: list[str]) -> None:
            if items:
                more = f" (and {len(items) - limit} more)" if len(items) > limit else ""
                lines.append(f"{title} ({len(items)}): {', '.join(items[:limit])}{more}")

        show("missing from the checkpoint", self.missing)
        show("in the checkpoint but not in the model", self.unexpected)
        show(
            "shape mismatches",
            [f"{k} checkpoint {tuple(a)} vs model {tuple(b)}" for k, a, b in self.mismatched],
        )
        return "\n".join(lines)


_OPTIONAL_BUFFERS = ("num_batches_tracked",)


def load_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> LoadReport:
    """Copy ``state`` into ``model`` after checking every name and shape; raise on any mismatch."""
    report = LoadReport(source=source)
    if is_port_state_dict(state):
        state, report.dropped = convert_port_state_dict(state, model)
        report.converted_from = "tengshaofeng/ResidualAttentionNetwork-pytorch"
    expected = model.state_dict()
    for key, value in state.items():
        if key not in expected:
            report.unexpected.append(key)
        elif tuple(value.shape) != tuple(expected[key].shape):
            report.mismatched.append((key, tuple(value.shape), tuple(expected[key].shape)))
    report.missing = [k for k in expected if k not in state and not k.endswith(_OPTIONAL_BUFFERS)]
    if not report.ok:
        hint = (
            "Build the model the checkpoint was trained as: same name, --num-classes and "
            "options (attention, mask, variant)."
        )
        if report.mismatched and all(k.startswith("fc.") for k, _, _ in report.mismatched):
            classes = report.mismatched[0][1][0]
            hint = f"The classifier has {classes} classes in the checkpoint: pass --num-classes {classes}."
        classes = classifier_classes(state)
        if report.mismatched and classes not in (None, getattr(model, "num_classes", classes)):
            # ABN and A&R size several layers by the class count, not only the classifier.
            hint = f"The classifier has {classes} classes in the checkpoint: pass --num-classes {classes}."
        raise CheckpointError(
            f"Checkpoint {source} does not fit {getattr(model, 'spec', None) and model.spec.name or type(model).__name__}:\n"
            + report.describe(),
            hint=hint,
        )
    filtered = {k: v for k, v in state.items() if k in expected}
    model.load_state_dict(filtered, strict=False)
    model.load_report = report
    return report
