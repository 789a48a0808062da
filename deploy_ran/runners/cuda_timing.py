"""Device-side timing with CUDA events, for runners whose work runs on a CUDA stream.

Lives with the runners because CUDA is an optional import that only the runners touch. PyTorch's
event API is used whatever the backend: ``stream_handle`` (a raw ``cudaStream_t``) is wrapped in a
``torch.cuda.ExternalStream`` so that events are recorded on the very stream the backend enqueues
its work on (ONNX Runtime's ``user_compute_stream``, a TensorRT execution stream, PyTorch's own).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from deploy_ran.runners.base import BackendUnavailableError, BaseRunner


def cuda_event_timer(runner: BaseRunner, staged: Any) -> Callable[[], float]:
    """A function that runs ``runner.run_staged(staged)`` once and returns its device time in ms."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        raise BackendUnavailableError("CUDA event timing needs PyTorch.") from None
    if not torch.cuda.is_available():
        raise BackendUnavailableError(
            "CUDA event timing needs a CUDA device visible to PyTorch.",
            hint="Time on the host instead (copies included), or use a CUDA build of PyTorch.",
        )
    device = torch.device(runner.device)
    handle = runner.stream_handle
    stream = (
        torch.cuda.ExternalStream(handle, device=device)
        if handle  # 0 is the legacy default stream: use PyTorch's handle on it
        else torch.cuda.current_stream(device)
    )
    start = torch.cuda.Event(enable_timing=True)
    end = torch.cuda.Event(enable_timing=True)

    def once() -> float:
        start.record(stream)
        runner.run_staged(staged)
        end.record(stream)
        end.synchronize()
        return float(start.elapsed_time(end))

    return once
