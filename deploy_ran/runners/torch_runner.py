"""Eager PyTorch: the reference every exported artifact is compared with, and the speed baseline.

Precisions: ``fp32``; ``fp16`` (``model.half()``, inputs must be float16, outputs come back
float16); ``autocast`` (float32 in and out, ``torch.autocast`` inside: float16 on CUDA, bfloat16 on
a CPU, reported as ``autocast-fp16`` / ``autocast-bf16``). ``channels_last`` converts weights and
inputs to NHWC memory layout. On CUDA, ``cuda_graph=True`` captures one CUDA graph per input shape
and replays it (inputs are copied into the graph's static buffer when staged).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from deploy_ran.runners.base import BackendUnavailableError, BaseRunner, RunnerError, TensorSpec

TORCH_PRECISIONS = ("fp32", "fp16", "autocast")


def torch_device(device: str) -> torch.device:
    """``cpu`` / ``cuda`` / ``cuda:N`` as a torch device, with a clear error when CUDA is absent."""
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise RunnerError(
            f"Unknown device {device!r}.", hint="Use --device cpu or --device cuda[:N]."
        ) from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise BackendUnavailableError(
                "CUDA is not available to PyTorch on this machine (CPU-only build or no GPU).",
                hint="Use --device cpu, or install a CUDA build of PyTorch on a GPU machine.",
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise BackendUnavailableError(
                f"{device} does not exist; this machine has {torch.cuda.device_count()} GPU(s).",
                hint="Use --device cuda:0.",
            )
    elif dev.type != "cpu":
        raise RunnerError(f"Unsupported device {device!r}.", hint="Use --device cpu or cuda.")
    return dev


class TorchRunner(BaseRunner):
    """Run a registered model (or any ``nn.Module``) in eager PyTorch."""

    backend = "torch"

    def __init__(
        self,
        model: str | nn.Module,
        *,
        checkpoint: str | Path | None = None,
        image_size: int | None = None,
        num_classes: int | None = None,
        device: str = "cpu",
        precision: str = "fp32",
        channels_last: bool = False,
        threads: int | None = None,
        cuda_graph: bool = False,
        output_names: list[str] | None = None,
        **options: Any,
    ) -> None:
        if precision not in TORCH_PRECISIONS:
            raise RunnerError(
                f"Unknown PyTorch precision {precision!r}.",
                hint=f"Choose one of: {', '.join(TORCH_PRECISIONS)}.",
            )
        dev = torch_device(device)
        if cuda_graph and dev.type != "cuda":
            raise RunnerError("CUDA graphs need a CUDA device.", hint="Use --device cuda.")
        if threads is not None:
            if threads < 1:
                raise RunnerError(f"threads must be ≥ 1, got {threads}.", hint="Use --threads 1.")
            torch.set_num_threads(threads)  # process-wide: torch has one intra-op pool

        if isinstance(model, str):
            from deploy_ran.models import create_model

            module = create_model(
                model,
                checkpoint=checkpoint,
                image_size=image_size,
                num_classes=num_classes,
                **options,
            )
            name = model
        else:
            module, name = model.eval(), type(model).__name__
        spec = getattr(module, "spec", None)
        size = getattr(module, "image_size", image_size)
        if isinstance(size, tuple):
            h, w = size
        elif size is not None:
            h = w = int(size)
        else:
            raise RunnerError(
                f"Cannot tell the input size of {name}.", hint="Pass image_size=... explicitly."
            )

        module = module.to(dev)
        if precision == "fp16":
            module = module.half()
        if channels_last:
            module = module.to(memory_format=torch.channels_last)
        self._module = module
        self._torch_device = dev
        self._channels_last = channels_last
        self._autocast_dtype = torch.float16 if dev.type == "cuda" else torch.bfloat16
        self._cuda_graph = cuda_graph
        self._graphs: dict[tuple[int, ...], tuple[Any, torch.Tensor, tuple[torch.Tensor, ...]]] = {}
        self._threads = torch.get_num_threads()
        self.checkpoint = str(checkpoint) if checkpoint else None
        self.torch_precision = precision
        label = precision
        if precision == "autocast":
            label = "autocast-fp16" if dev.type == "cuda" else "autocast-bf16"
        dtype = "float16" if precision == "fp16" else "float32"
        super().__init__(
            name=name,
            device=str(dev),
            precision=label,
            input_spec=[TensorSpec("input", (None, 3, h, w), dtype)],
            output_names=list(output_names or getattr(module, "output_names", ["logits"])),
            model=spec.name if spec is not None else None,
            preprocessing=spec.preprocessing(h) if spec is not None else None,
            num_classes=getattr(module, "num_classes", None),
        )

    @property
    def supports_cuda_graphs(self) -> bool:  # type: ignore[override]
        return self._torch_device.type == "cuda"

    @property
    def module(self) -> nn.Module:
        return self._module

    @property
    def stream_handle(self) -> int | None:
        if self._torch_device.type != "cuda":
            return None
        return torch.cuda.current_stream(self._torch_device).cuda_stream

    def synchronize(self) -> None:
        if self._torch_device.type == "cuda":
            torch.cuda.synchronize(self._torch_device)

    # -------------------------------------------------------------------- BaseRunner hooks

    def _stage(self, feed: dict[str, np.ndarray]) -> Any:
        (array,) = feed.values()
        x = torch.from_numpy(array).to(self._torch_device, non_blocking=True)
        if self._channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self._cuda_graph:
            key = tuple(x.shape)
            if key not in self._graphs:
                self._graphs[key] = self._capture(x)
            _, static_in, _ = self._graphs[key]
            static_in.copy_(x)
            return _GraphInput(key)
        return x

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        # FP32 means FP32: cuDNN would otherwise run convolutions in TF32 on Ampere and later
        # (PyTorch's default), and an FP32 reference would differ from itself by ~1e-3.
        tf32 = self.torch_precision != "fp32"
        with (
            torch.inference_mode(),
            torch.backends.cudnn.flags(enabled=torch.backends.cudnn.enabled, allow_tf32=tf32),
        ):
            if self.torch_precision == "autocast":
                with torch.autocast(self._torch_device.type, dtype=self._autocast_dtype):
                    out = self._module(x)
            else:
                out = self._module(x)
        return (out,) if isinstance(out, torch.Tensor) else tuple(out)

    def _capture(self, x: torch.Tensor) -> tuple[Any, torch.Tensor, tuple[torch.Tensor, ...]]:
        """Capture the forward pass for one shape (warm-up on a side stream, as CUDA requires)."""
        static_in = x.clone()
        side = torch.cuda.Stream(self._torch_device)
        side.wait_stream(torch.cuda.current_stream(self._torch_device))
        with torch.cuda.stream(side):
            for _ in range(3):
                self._forward(static_in)
        torch.cuda.current_stream(self._torch_device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = self._forward(static_in)
        return graph, static_in, static_out

    def _execute(self, staged: Any) -> tuple[torch.Tensor, ...]:
        if isinstance(staged, _GraphInput):
            graph, _, static_out = self._graphs[staged.key]
            graph.replay()
            return static_out
        return self._forward(staged)

    def _fetch(self, outputs: tuple[torch.Tensor, ...]) -> dict[str, np.ndarray]:
        result = {}
        for name, t in zip(self.output_names, outputs):
            t = t.detach()
            if t.dtype == torch.bfloat16:  # numpy has no bfloat16
                t = t.float()
            result[name] = t.cpu().numpy()
        return result

    def _close(self) -> None:
        self._graphs.clear()
        self._module = None  # type: ignore[assignment]
        if self._torch_device.type == "cuda":
            torch.cuda.empty_cache()

    def _describe_extra(self) -> dict[str, Any]:
        return {
            "torch": torch.__version__,
            "threads": self._threads,
            "channels_last": self._channels_last,
            "cuda_graph": self._cuda_graph,
            "checkpoint": self.checkpoint,
        }


class _GraphInput:
    """Staged input of a captured CUDA graph: the data already sits in the graph's buffer."""

    __slots__ = ("key",)

    def __init__(self, key: tuple[int, ...]) -> None:
        self.key = key
