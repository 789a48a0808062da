"""Run an ONNX model (FP32 or Q/DQ) in ONNX Runtime on the CPU and compare it with FP32.

The comparisons behind the INT8 check, the sensitivity table and ``--exclude auto`` all come from
here, measured with :func:`deploy_ran.metrics.compare` so the numbers mean what they mean
everywhere else in the toolkit.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import onnx

from deploy_ran.metrics import compare


def ort_session(model: onnx.ModelProto | bytes | str):
    """A CPU InferenceSession from a proto, serialized bytes or a path."""
    import onnxruntime as ort

    if isinstance(model, onnx.ModelProto):
        model = model.SerializeToString()
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


def run_batches(session, images: np.ndarray, batch: int) -> list[np.ndarray]:
    """All outputs of ``session`` over ``images``, batch by batch, concatenated."""
    name = session.get_inputs()[0].name
    fixed = session.get_inputs()[0].shape[0]
    if isinstance(fixed, int) and fixed > 0:
        batch = fixed
    outputs: list[list[np.ndarray]] = []
    for start in range(0, len(images), batch):
        chunk = images[start : start + batch]
        if len(chunk) < batch and isinstance(fixed, int) and fixed > 0:
            break  # a static-batch model cannot take the remainder
        outputs.append(session.run(None, {name: np.ascontiguousarray(chunk)}))
    return [np.concatenate(parts) for parts in zip(*outputs)]


@dataclass
class OutputAgreement:
    """INT8 (or FP16) outputs against FP32 for one graph output."""

    output: str
    rel_l2: float
    cosine: float
    max_abs: float
    top1: float | None
    finite: bool

    def as_dict(self) -> dict:
        return asdict(self)


def agreement(
    names: list[str], reference: list[np.ndarray], candidate: list[np.ndarray]
) -> list[OutputAgreement]:
    """Per-output agreement; top-1 only for the class logits."""
    rows = []
    for name, ref, out in zip(names, reference, candidate):
        finite = bool(np.isfinite(out).all())
        a = compare(ref, np.nan_to_num(out), classification=True)
        rows.append(OutputAgreement(name, a.rel_l2, a.cosine, a.max_abs, a.top1, finite))
    return rows
