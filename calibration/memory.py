"""How much memory a calibration batch needs, said before the run, and a batch refused when it
would not fit (with the batch that would).

ONNX Runtime's calibrators make every tensor to be measured a graph output, so one forward pass
keeps all of them alive at once: for ran92 at 224 px that is ~195 MiB per image, and a batch of 64
needs several GiB on the device and more on the host (the outputs are copied to host arrays and
held by the calibrator while it merges them into its histograms). Without an estimate the run
dies late, as an out-of-memory error from deep inside ONNX Runtime or the kernel's OOM killer.

The estimate is the sum of the measured tensors' sizes per image (ONNX shape inference; FP32)
times the batch, times a factor per memory: :data:`DEVICE_FACTOR` on the GPU (the outputs plus the
live intermediates and workspace around them) and :data:`HOST_FACTOR` on the host (ONNX Runtime's
output buffers, their numpy copies and the calibrator's per-batch lists). The factors are
deliberately on the high side of the review's figures (6–12 GiB device, 20–35 GiB host for batch
64 of ran92): refusing a batch that would just have fitted costs a smaller ``batch``; accepting one
that does not costs the run. Only :data:`USABLE_FRACTION` of the free memory is planned for.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import onnx

from deploy_ran.device import Device
from deploy_ran.errors import DeployRanError

DEVICE_FACTOR = 1.5
HOST_FACTOR = 3.0
USABLE_FRACTION = 0.8
_MIB = 1024**2

_ELEMENT_BYTES = {
    onnx.TensorProto.FLOAT: 4,
    onnx.TensorProto.FLOAT16: 2,
    onnx.TensorProto.DOUBLE: 8,
    onnx.TensorProto.INT64: 8,
    onnx.TensorProto.INT32: 4,
    onnx.TensorProto.INT8: 1,
    onnx.TensorProto.UINT8: 1,
}


class CalibrationMemoryError(DeployRanError):
    """A calibration batch that would not fit in memory."""


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes one calibration batch needs, and what is free, per memory."""

    batch: int
    bytes_per_image: int  # the measured tensors of one image
    unknown_tensors: int  # tensors whose shape inference left a dimension open (not counted)
    device: str
    device_needed: int | None  # None on the CPU (no separate device memory)
    device_free: int | None  # None when it cannot be read (no CUDA build of PyTorch)
    host_needed: int
    host_free: int | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """One line for the user: needed / free per memory, in MiB."""

        def mib(value: int | None) -> str:
            return "?" if value is None else f"{value / _MIB:,.0f} MiB"

        parts = [f"batch {self.batch} × {mib(self.bytes_per_image)}/image"]
        if self.device_needed is not None:
            parts.append(
                f"{self.device}: {mib(self.device_needed)} of {mib(self.device_free)} free"
            )
        parts.append(f"host: {mib(self.host_needed)} of {mib(self.host_free)} free")
        return "calibration memory ≈ " + "; ".join(parts)

    def largest_batch(self) -> int:
        """The largest batch whose estimate fits every memory that could be read (0: none)."""
        limits = []
        if self.device_needed is not None and self.device_free is not None:
            limits.append(
                USABLE_FRACTION * self.device_free / (DEVICE_FACTOR * self.bytes_per_image)
            )
        if self.host_free is not None:
            limits.append(USABLE_FRACTION * self.host_free / (HOST_FACTOR * self.bytes_per_image))
        return int(math.floor(min(limits))) if limits else self.batch

    def require_fits(self, fixed_batch: bool = False) -> None:
        """Refuse a batch that would not fit, naming the one that would."""
        if self.bytes_per_image == 0 or self.largest_batch() >= self.batch:
            return
        best = self.largest_batch()
        if best < 1 or fixed_batch:
            raise CalibrationMemoryError(
                f"Calibration at batch {self.batch} would not fit: {self.summary()}.",
                hint="Calibrate on a machine with more memory, at a smaller image size, or on "
                "the CPU (device='cpu') when the GPU is the limit."
                + (
                    " The model's batch is fixed; export it with a dynamic batch."
                    if fixed_batch
                    else ""
                ),
                param="batch",
            )
        raise CalibrationMemoryError(
            f"Calibration at batch {self.batch} would not fit: {self.summary()}.",
            hint=f"Use batch={best} or less (the batch does not change the ranges, only the "
            "memory and speed of the run).",
            param="batch",
        )


def bytes_per_image(
    model: onnx.ModelProto, tensors: list[str] | tuple[str, ...]
) -> tuple[int, int]:
    """(bytes of ``tensors`` for one image, how many have an unknown shape), by shape inference."""
    inferred = onnx.shape_inference.infer_shapes(model)
    infos = {
        v.name: v
        for v in [*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input]
    }
    total, unknown = 0, 0
    for name in tensors:
        info = infos.get(name)
        dims = info.type.tensor_type.shape.dim if info is not None else []
        sizes = [d.dim_value for d in dims[1:]]  # the batch dimension left out
        if info is None or not dims or any(s <= 0 for s in sizes):
            unknown += 1
            continue
        element = _ELEMENT_BYTES.get(info.type.tensor_type.elem_type, 4)
        total += element * math.prod(sizes)
    return total, unknown


def host_free_bytes() -> int | None:
    """``MemAvailable`` from ``/proc/meminfo`` (Linux), else None (no refusal)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def device_free_bytes(device: str | Device) -> int | None:
    """Free memory of a CUDA device (PyTorch's ``mem_get_info``), None when unreadable."""
    try:
        import torch

        if not torch.cuda.is_available():
            return None
        index = Device.parse(device).cuda_index(current=0)
        return int(torch.cuda.mem_get_info(index)[0])
    except Exception:  # noqa: BLE001 - an unreadable figure means "no refusal", never a crash
        return None


def estimate_memory(
    model: onnx.ModelProto,
    tensors: list[str] | tuple[str, ...],
    batch: int,
    device: str = "cpu",
    *,
    host_free: int | None = None,
    device_free: int | None = None,
) -> MemoryEstimate:
    """The estimate for calibrating ``tensors`` of ``model`` at ``batch`` on ``device``.
    ``host_free`` / ``device_free`` override the measured free memory (tests, planning)."""
    per_image, unknown = bytes_per_image(model, tensors)
    on_gpu = (device or "cpu").strip().lower() != "cpu"
    return MemoryEstimate(
        batch=batch,
        bytes_per_image=per_image,
        unknown_tensors=unknown,
        device=device,
        device_needed=int(DEVICE_FACTOR * per_image * batch) if on_gpu else None,
        device_free=(device_free if device_free is not None else device_free_bytes(device))
        if on_gpu
        else None,
        host_needed=int(HOST_FACTOR * per_image * batch),
        host_free=host_free if host_free is not None else host_free_bytes(),
    )
