"""Where a model runs: ``Device.parse("cuda:1")``, parsed once at the door and passed on.

Every layer used to read the device string its own way (a regex in the CLI, ``torch.device`` in the
PyTorch runner, ``split(":")`` in the ONNX Runtime runner and in calibration, ``startswith("cuda")``
in the benchmarks), and the ways drifted apart: one accepted ``CUDA``, one silently ran ``cpu`` on
the GPU. This module is now the only place that parses a device string; everyone else holds a
:class:`Device` and asks it (``device.is_cuda``, ``device.index``, ``device.torch_device``).

>>> Device.parse("cuda:1")
Device(kind='cuda', index=1)
>>> str(Device.parse(" CUDA ")), Device.parse("cpu").is_cuda
('cuda', False)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from deploy_ran.errors import DeployRanError

#: The device kinds the toolkit runs on.
DEVICE_KINDS = ("cpu", "cuda")
#: What a user may type, for messages and ``--help``.
DEVICE_SYNTAX = "cpu, cuda or cuda:N (N the GPU index, 0 for the first)"

_PATTERN = re.compile(r"(cpu|cuda)(?::(\d{1,3}))?")
#: Spellings people try, and what they most likely meant.
_LIKELY_MEANT = {"gpu": "cuda", "cuda0": "cuda:0", "nvidia": "cuda", "cpu:0": "cpu", "host": "cpu"}


class DeviceError(DeployRanError):
    """A device string that is not ``cpu``, ``cuda`` or ``cuda:N``, or a device a job cannot use."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message, hint, param="device")


@dataclass(frozen=True)
class Device:
    """A device kind (``cpu`` or ``cuda``) and, for CUDA, an optional GPU index.

    ``index`` ``None`` on CUDA means "the current GPU" (``torch.cuda.current_device()``), which is
    what a bare ``cuda`` means to PyTorch; :meth:`cuda_index` resolves it where a number is needed.
    """

    kind: str = "cpu"
    index: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in DEVICE_KINDS:
            raise DeviceError(
                f"Unknown device kind {self.kind!r}: expected {DEVICE_SYNTAX}.",
                hint=f"Use one of: {', '.join(DEVICE_KINDS)}.",
            )
        if self.index is not None and (self.kind != "cuda" or self.index < 0):
            raise DeviceError(
                f"{self.kind}:{self.index} is not a device: only CUDA devices take an index ≥ 0.",
                hint='Use "cpu", "cuda" or "cuda:N".',
            )

    @classmethod
    def parse(cls, value: str | Device | Any | None, *, default: str = "cpu") -> Device:
        """``"cpu"``, ``"cuda"``, ``"cuda:N"`` (any case, spaces ignored), a ``Device`` or a
        ``torch.device``; ``None``/``""`` is ``default``. Anything else is a :class:`DeviceError`
        that says what was expected and, for common slips (``gpu``), what was likely meant."""
        if isinstance(value, Device):
            return value
        if value is None:
            value = default
        if hasattr(value, "type") and hasattr(value, "index") and not isinstance(value, str):
            value = str(value)  # a torch.device: "cuda:0", "cpu", "mps"
        text = str(value).strip().lower() or default
        match = _PATTERN.fullmatch(text)
        if match is None:
            meant = _LIKELY_MEANT.get(text.replace(" ", ""))
            hint = f'Did you mean "{meant}"? ' if meant else ""
            raise DeviceError(
                f"Unknown device {value!r}: expected {DEVICE_SYNTAX}.",
                hint=hint + 'Use "cpu", "cuda" or "cuda:0".',
            )
        kind, index = match.group(1), match.group(2)
        if kind == "cpu" and index is not None:
            raise DeviceError(
                f"Unknown device {value!r}: the CPU takes no index.", hint='Use "cpu".'
            )
        return cls(kind, int(index) if index is not None else None)

    # ------------------------------------------------------------------ questions

    @property
    def is_cuda(self) -> bool:
        return self.kind == "cuda"

    @property
    def is_cpu(self) -> bool:
        return self.kind == "cpu"

    def __str__(self) -> str:
        return self.kind if self.index is None else f"{self.kind}:{self.index}"

    @property
    def torch_device(self) -> Any:
        """This device as a ``torch.device`` (torch is imported only when asked)."""
        import torch

        return torch.device(str(self))

    def cuda_index(self, current: int | None = None) -> int:
        """The GPU index a CUDA library needs: ``index``, or the current GPU for a bare ``cuda``.

        ``torch.cuda.set_device(torch.device("cuda"))`` raises on an index-less device, and ONNX
        Runtime and TensorRT take a number, so CUDA consumers resolve it here. ``current``
        defaults to ``torch.cuda.current_device()`` (0 without CUDA).
        """
        if not self.is_cuda:
            raise DeviceError(
                f"{self} is not a CUDA device.", hint='Use "cuda" or "cuda:N" for a GPU job.'
            )
        if self.index is not None:
            return self.index
        if current is not None:
            return current
        import torch

        return int(torch.cuda.current_device()) if torch.cuda.is_available() else 0

    def resolved(self) -> Device:
        """This device with its GPU index filled in (``cuda`` → ``cuda:0``); CPU unchanged."""
        return self if not self.is_cuda else Device("cuda", self.cuda_index())

    def require_cuda(self, job: str) -> Device:
        """This device when it is CUDA; a clear error naming ``job`` otherwise (an engine never
        runs on the CPU, so ``cpu`` must not silently become ``cuda``)."""
        if not self.is_cuda:
            raise DeviceError(
                f"{job} runs only on an NVIDIA GPU; device {self} was asked for.",
                hint='Use device "cuda" or "cuda:N", or run the ONNX file on the CPU instead.',
            )
        return self


CPU = Device("cpu")


def describes_cuda(text: str | None) -> bool:
    """Whether a device as written in a report row (``"cuda:0"``, ``"cpu (test buffers)"``)
    names a GPU; for rows read back from JSON, which hold the text, not a :class:`Device`. Text
    that names no local device (a served model's ``"remote"``) is not a GPU here."""
    try:
        return Device.parse(str(text).split(" ", 1)[0]).is_cuda if text else False
    except DeviceError:
        return False
