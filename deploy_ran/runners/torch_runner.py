"""Eager PyTorch: the reference every exported artifact is compared with, and the speed baseline.

Precisions: ``fp32``; ``fp16`` (``model.half()``, inputs must be float16, outputs come back
float16); ``autocast`` (float32 in and out, ``torch.autocast`` inside: float16 on CUDA, bfloat16 on
a CPU, reported as ``autocast-fp16`` / ``autocast-bf16``).

Layout: ``channels_last=True`` converts weights and inputs to NHWC memory layout; ``None`` (the
default) takes :func:`default_channels_last` for the device and precision, because NCHW FP16
convolutions on recent GPUs are several times slower than NHWC ones, and on the CPU measured here
NHWC was faster at every precision (see :data:`CHANNELS_LAST_DEFAULTS`; CUDA FP32 stays NCHW until
measured). The layout that ran is in :meth:`TorchRunner.describe`.

Modes: ``mode="eager"`` runs the module as it is; ``mode="compile"`` wraps it in
``torch.compile`` (``compile_mode``, ``compile_backend`` recorded). Compilation happens on the
first run of each input shape (``dynamic=False``: one specialised graph per batch size, the
fastest code for a fixed-batch server); the runner times those first runs and reports them as
``compile_seconds`` per shape, so a benchmark's warm-up pays for compilation and its timed loop
never does. On CUDA, ``cuda_graph=True`` captures one CUDA graph per input shape and replays it
(inputs are copied into the graph's static buffer when staged); with ``mode="compile"`` the
graphs are torch.compile's own (``compile_mode="reduce-overhead"``) instead of a manual capture.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from deploy_ran.device import Device
from deploy_ran.runners.base import BackendUnavailableError, BaseRunner, RunnerError, TensorSpec
from deploy_ran.runners.registry import register_backend
from deploy_ran.target import Target

TORCH_PRECISIONS = ("fp32", "fp16", "autocast")
TORCH_MODES = ("eager", "compile")
# Layout choices where several rows are asked for (bench): "default" is the per-device,
# per-precision default below; the other two force one layout.
TORCH_LAYOUTS = ("default", "nchw", "channels_last")

# channels_last (NHWC) by default, per device type and precision. Why, and how sure:
# - cuda fp16 / autocast: measured on one H200 (PyTorch 2.11, CUDA 13, ran92 at 224 px, batch 256):
#   NCHW FP16 convolutions ran 456 images/s, channels_last 5,545; cudnn.benchmark changed nothing.
#   abn_resnet50 agrees (12,652 images/s eager FP16 channels_last). NHWC by default.
# - cuda fp32: NOT measured yet (no GPU measurement of FP32 both ways exists). Left NCHW, the
#   layout PyTorch itself picks, until a GPU measurement says otherwise; pass channels_last=True
#   to try it, and change this entry with the measurement that justifies it.
# - cpu: measured on this project's 2-core Intel Xeon (torch 2.13.0+cpu, 2 threads, interleaved,
#   medians; benchmarks/README.md): channels_last was faster for every precision, model and batch
#   tried: fp32 1.26x/1.34x (ran92 224 px, batch 1/8) and 1.23x/1.55x (ran56_cifar 32 px, batch
#   1/32); fp16 1.33x/1.45x and 1.49x/1.75x; autocast (bfloat16) 1.52x/2.26x (ran56_cifar). NHWC.
CHANNELS_LAST_DEFAULTS: dict[tuple[str, str], bool] = {
    ("cuda", "fp16"): True,
    ("cuda", "autocast"): True,
    ("cuda", "fp32"): False,  # measured-unknown: keep NCHW
    ("cpu", "fp16"): True,
    ("cpu", "autocast"): True,
    ("cpu", "fp32"): True,
}


def default_channels_last(device_type: str, precision: str) -> bool:
    """Whether ``TorchRunner`` uses channels_last when not told (see :data:`CHANNELS_LAST_DEFAULTS`);
    combinations missing from the table keep NCHW."""
    return CHANNELS_LAST_DEFAULTS.get((device_type, precision), False)


def torch_device(device: str | Device) -> torch.device:
    """A :class:`Device` (or its text) as a torch device, with a clear error when CUDA is absent."""
    parsed = Device.parse(device)
    if parsed.is_cuda:
        if not torch.cuda.is_available():
            raise BackendUnavailableError(
                "CUDA is not available to PyTorch on this machine (CPU-only build or no GPU).",
                hint="Use --device cpu, or install a CUDA build of PyTorch on a GPU machine.",
            )
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise BackendUnavailableError(
                f"{parsed} does not exist; this machine has {torch.cuda.device_count()} GPU(s).",
                hint="Use --device cuda:0.",
            )
    return parsed.torch_device


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
        device: str | Device = "cpu",
        precision: str = "fp32",
        channels_last: bool | None = None,
        threads: int | None = None,
        cuda_graph: bool = False,
        mode: str = "eager",
        compile_mode: str | None = None,
        compile_backend: str = "inductor",
        output_names: list[str] | None = None,
        allow_tf32: bool = False,
        **options: Any,
    ) -> None:
        self._allow_tf32 = allow_tf32  # FP32 convolutions in TF32 only when asked (--allow-tf32)
        if precision not in TORCH_PRECISIONS:
            raise RunnerError(
                f"Unknown PyTorch precision {precision!r}.",
                hint=f"Choose one of: {', '.join(TORCH_PRECISIONS)}.",
            )
        if mode not in TORCH_MODES:
            raise RunnerError(
                f"Unknown PyTorch mode {mode!r}.", hint=f"Choose one of: {', '.join(TORCH_MODES)}."
            )
        if compile_mode is not None and mode != "compile":
            raise RunnerError(
                f"compile_mode={compile_mode!r} applies to mode='compile' only.",
                hint="Set mode='compile', or drop compile_mode.",
            )
        dev = torch_device(device)
        if cuda_graph and dev.type != "cuda":
            raise RunnerError("CUDA graphs need a CUDA device.", hint="Use --device cuda.")
        layout_source = "explicit" if channels_last is not None else "default"
        if channels_last is None:
            channels_last = default_channels_last(dev.type, precision)
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
        self._layout_source = layout_source
        self._autocast_dtype = torch.float16 if dev.type == "cuda" else torch.bfloat16
        self.mode = mode
        self._compile_backend = compile_backend if mode == "compile" else None
        self._compile_mode = None
        self._compile_seconds: dict[str, float] = {}  # input shape → seconds of its first run
        self._compiled: nn.Module | None = None
        if mode == "compile":
            # torch.compile's own CUDA graphs (reduce-overhead) instead of a manual capture of
            # compiled code; the graphs then live in torch's CUDA graph trees.
            self._compile_mode = compile_mode or ("reduce-overhead" if cuda_graph else "default")
            _allow_recompiles(64)
            self._compiled = torch.compile(
                module, mode=self._compile_mode, backend=compile_backend, dynamic=False
            )
            cuda_graph = False if self._compile_mode == "reduce-overhead" else cuda_graph
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
    def layout(self) -> str:
        """Memory layout of weights and inputs: ``channels_last`` (NHWC) or ``NCHW``."""
        return "channels_last" if self._channels_last else "NCHW"

    @property
    def compile_seconds(self) -> dict[str, float]:
        """Seconds of the first run of each input shape (``"8x3x224x224"``) in compile mode:
        compilation plus one forward pass. Empty in eager mode."""
        return dict(self._compile_seconds)

    @property
    def label(self) -> str:
        """e.g. ``torch fp16 channels_last compile (cuda:0)``; layout and mode only when they are
        not the plain NCHW eager default, so existing labels keep their meaning."""
        extra = "".join(
            [" channels_last" if self._channels_last else "", " compile" * (self.mode != "eager")]
        )
        return f"{self.backend} {self.precision}{extra} ({self.device})"

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
        tf32 = self.torch_precision != "fp32" or self._allow_tf32
        with (
            torch.inference_mode(),
            torch.backends.cudnn.flags(enabled=torch.backends.cudnn.enabled, allow_tf32=tf32),
        ):
            if self.torch_precision == "autocast":
                with torch.autocast(self._torch_device.type, dtype=self._autocast_dtype):
                    out = self._call(x)
            else:
                out = self._call(x)
        return (out,) if isinstance(out, torch.Tensor) else tuple(out)

    def _call(self, x: torch.Tensor) -> Any:
        """The module, or its compiled form; a new shape's first compiled run is timed (it
        compiles), so that compile time is reported apart from the steady-state runs."""
        if self._compiled is None:
            return self._module(x)
        key = "x".join(map(str, x.shape))
        if key in self._compile_seconds:
            return self._compiled(x)
        import time

        self.synchronize()
        t0 = time.perf_counter()
        out = self._compiled(x)
        self.synchronize()
        self._compile_seconds[key] = time.perf_counter() - t0
        return out

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
        self._compiled = None
        if self._torch_device.type == "cuda":
            torch.cuda.empty_cache()

    def _describe_extra(self) -> dict[str, Any]:
        return {
            "torch": torch.__version__,
            "threads": self._threads,
            "channels_last": self._channels_last,
            "layout": self.layout,
            "layout_source": self._layout_source,  # "default" (CHANNELS_LAST_DEFAULTS) | "explicit"
            "mode": self.mode,
            "compile_mode": self._compile_mode,
            "compile_backend": self._compile_backend,
            "compile_seconds": self.compile_seconds,
            "cuda_graph": self._cuda_graph,
            "checkpoint": self.checkpoint,
            # FP32 arithmetic of cuDNN convolutions; None where TF32 cannot apply (CPU)
            "tf32": (self.torch_precision != "fp32" or self._allow_tf32)
            if self._torch_device.type == "cuda"
            else None,
        }


def _allow_recompiles(limit: int) -> None:
    """One compiled graph per batch size (``dynamic=False``): lift TorchDynamo's limit on
    recompilations of one function (8 by default), past which it silently runs eager code and a
    "compile" row would measure eager PyTorch. The setting's name changed across versions."""
    import torch._dynamo

    config = torch._dynamo.config
    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(config, name) and getattr(config, name) < limit:
            setattr(config, name, limit)


class _GraphInput:
    """Staged input of a captured CUDA graph: the data already sits in the graph's buffer."""

    __slots__ = ("key",)

    def __init__(self, key: tuple[int, ...]) -> None:
        self.key = key


def _from_target(target: Target, device: Device, **options: Any) -> TorchRunner:
    """The registry's factory: a model name, its precision defaulting to FP32."""
    model_options = options.pop("options", None) or {}
    options.setdefault("precision", "fp32")
    return TorchRunner(target.text, device=device, **options, **model_options)


register_backend(
    "torch",
    lambda target: target.kind == "model",
    _from_target,
    options=(
        "precision", "checkpoint", "image_size", "num_classes", "options", "threads",
        "cuda_graph", "channels_last",
    ),
    fixed_by="a model name runs in eager PyTorch (ONNX Runtime providers apply to .onnx files)",
)  # fmt: skip
