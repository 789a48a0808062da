"""ONNX's reference evaluator as a runner: every op in the dtype the file gives it, nothing upcast.

ONNX Runtime on a CPU runs FP16 ops it has no FP16 kernel for in FP32 behind inserted casts, so an
FP16 file checked there hides what a GPU computing in FP16 does: a ``Softmax`` whose small
probabilities underflow to 0 in FP16, then ``Log`` of 0 = −inf (how onnx-tensorrt imports
``LogSoftmax``). :class:`ReferenceRunner` evaluates the file with ``onnx.reference`` instead, whose
kernels are numpy in the tensors' own dtype: an FP16 tensor stays FP16 from op to op. That is the
"TensorRT-faithful" FP16 check.

Convolutions are the one exception to "numpy in the tensor's dtype": numpy has no FP16 matrix
kernels, so an FP16 convolution would take seconds per image. They run in PyTorch on the FP16
values upcast to FP32, with the result rounded to the input's dtype, which is what a GPU's FP16
convolution computes (FP16 operands, FP32 accumulation, FP16 output) and the same number the
reference evaluator gives up to the accumulation order.

Q/DQ files run as fake-quantization in float, the same arithmetic TensorRT uses. The reference
evaluator implements QuantizeLinear/DequantizeLinear from opset 19, whose float-scale semantics
are those of opset 13–18, so an older file's default-domain opset is raised to 19 for evaluation
(the file itself is not touched).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx

from deploy_ran.artifacts import ArtifactInfo, get_metadata, load_onnx, precision_of
from deploy_ran.onnx_graph import graph_inputs
from deploy_ran.runners.base import BaseRunner, RunnerError, TensorSpec

_QDQ_OPS = {"QuantizeLinear", "DequantizeLinear"}
_QDQ_MIN_OPSET = 19


def _conv_op():
    """An ``onnx.reference`` Conv computed by PyTorch in FP32 and rounded to the input dtype."""
    from onnx.reference.op_run import OpRun

    class Conv(OpRun):
        def _run(  # noqa: PLR0913 - the ONNX attributes
            self,
            X,
            W,
            B=None,
            auto_pad=None,
            dilations=None,
            group=None,
            kernel_shape=None,
            pads=None,
            strides=None,
        ):
            import torch
            import torch.nn.functional as F

            dims = X.ndim - 2
            if auto_pad not in (None, "NOTSET", b"NOTSET", "") or dims not in (1, 2, 3):
                from onnx.reference.ops.op_conv import Conv as Reference

                return Reference._run(
                    self, X, W, B, auto_pad, dilations, group, kernel_shape, pads, strides
                )
            pads = list(pads or [0] * (2 * dims))
            x = torch.from_numpy(np.array(X, dtype=np.float32))
            # ONNX pads are (begin..., end...); F.pad wants (last_begin, last_end, ...).
            torch_pads = [p for k in reversed(range(dims)) for p in (pads[k], pads[k + dims])]
            if any(torch_pads):
                x = F.pad(x, torch_pads)
            conv = (F.conv1d, F.conv2d, F.conv3d)[dims - 1]
            y = conv(
                x,
                torch.from_numpy(np.array(W, dtype=np.float32)),
                None if B is None else torch.from_numpy(np.array(B, dtype=np.float32)),
                stride=list(strides or [1] * dims),
                dilation=list(dilations or [1] * dims),
                groups=int(group or 1),
            )
            return (y.numpy().astype(X.dtype),)

    return Conv


def _numpy_dtype(elem_type: int) -> str:
    return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type)).name


def evaluable_copy(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with its default-domain opset raised to 19 when it holds Q/DQ nodes (see above)."""
    if not any(n.op_type in _QDQ_OPS for n in model.graph.node):
        return model
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    for entry in copy.opset_import:
        if entry.domain in ("", "ai.onnx") and entry.version < _QDQ_MIN_OPSET:
            entry.version = _QDQ_MIN_OPSET
    return copy


class ReferenceRunner(BaseRunner):
    """Run an ONNX file (or in-memory model) with ``onnx.reference.ReferenceEvaluator``."""

    backend = "onnx-reference"

    def __init__(self, path: str | Path | onnx.ModelProto) -> None:
        from onnx.reference import ReferenceEvaluator

        if isinstance(path, onnx.ModelProto):
            proto = path
            name = f"<in-memory {path.graph.name or 'model'}>"
        else:
            proto = load_onnx(Path(path))
            name = str(path)
        specs = []
        for graph_input in graph_inputs(proto):
            tensor = graph_input.type.tensor_type
            dims = tuple(
                d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
                for d in tensor.shape.dim
            )
            specs.append(TensorSpec(graph_input.name, dims, _numpy_dtype(tensor.elem_type)))
        try:
            self._evaluator = ReferenceEvaluator(evaluable_copy(proto), new_ops=[_conv_op()])
        except Exception as exc:  # the evaluator raises plain RuntimeErrors for unknown ops
            raise RunnerError(
                f"ONNX's reference evaluator cannot run {name}: {type(exc).__name__}: {exc}",
                hint="The strict FP16 check needs ops the reference evaluator implements; "
                "check with `python cli.py inspect FILE`.",
            ) from None
        info = ArtifactInfo.from_props(get_metadata(proto))
        self.info = info
        self.path = Path(name)
        super().__init__(
            name=name,
            device="cpu",
            precision=precision_of(proto),
            input_spec=specs,
            output_names=[o.name for o in proto.graph.output],
            model=info.model,
            preprocessing=info.preprocessing or None,
            num_classes=info.num_classes,
        )

    def _stage(self, feed: dict[str, np.ndarray]) -> Any:
        return feed

    def _execute(self, staged: Any) -> Any:
        # The evaluator's Sigmoid computes both branches of its where(); the overflowing one is
        # discarded, so its FP16 overflow warnings are noise. Real non-finite outputs stay visible.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return self._evaluator.run(None, staged)

    def _fetch(self, outputs: Any) -> dict[str, np.ndarray]:
        return {n: np.asarray(a) for n, a in zip(self.output_names, outputs)}

    def _describe_extra(self) -> dict[str, Any]:
        return {
            "onnx": onnx.__version__,
            "arithmetic": "onnx.reference in each tensor's own dtype (FP16 stays FP16; Conv "
            "accumulates in FP32 and rounds to FP16; Q/DQ fake-quantized in float)",
        }
