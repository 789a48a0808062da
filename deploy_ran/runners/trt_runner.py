"""TensorRT engines (``.plan`` / ``.engine``, with a ``.plan.json`` sidecar) as a runner.

The plan is checked against its sidecar (same bytes, a TensorRT version and GPU it can run on)
before it is deserialized, so a plan from another host fails with a message that says which
version or GPU built it and how to rebuild, not with a deserialization error.

Execution uses PyTorch's CUDA context and allocator: device buffers are torch CUDA tensors, the
engine runs on the runner's own ``torch.cuda.Stream`` through ``set_input_shape``,
``set_tensor_address`` and ``execute_async_v3``, and output shapes come from the execution
context. One process, one CUDA context: no pycuda (NVIDIA's samples moved to cuda-python in
TensorRT 10.14, and TensorRT 11 has no calibrators for pycuda to feed). With ``cuda_graph=True``,
the enqueue is captured in a CUDA graph on the runner's stream and replayed there. A graph holds
the shapes and addresses of one capture and an execution context serves one shape at a time, so
this runner recaptures on a new input shape (or new buffers): its own choice, to serve
``bench``'s several batch sizes with one runner; trtexec (``--useCudaGraph``) captures once per
context and one shape. The capture is thread-local (``capture_error_mode="thread_local"``, as
trtexec's ``cudaStreamCaptureModeThreadLocal``): another thread's CUDA calls (a data loader, a
second runner) neither invalidate it nor fail because of it, as PyTorch's default global mode
would make them.

Buffers come from PyTorch's caching allocator on the current stream; before the runner's stream
first writes a new buffer it waits for the current stream (``wait_stream``), so a block freed
there with work still queued is not overwritten early. The TensorRT logger keeps only its newest
messages (``trt_compat.LOGGER_KEEP``).

These calls exist unchanged in TensorRT 10.3, 10.16 and 11.4 (tests/ground/test_trt_api_surface.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from deploy_ran.artifacts import ArtifactInfo
from deploy_ran.device import Device
from deploy_ran.runners.base import BackendUnavailableError, BaseRunner, RunnerError, TensorSpec
from deploy_ran.runners.registry import register_backend
from deploy_ran.target import ENGINE_SUFFIXES, Target
from deploy_ran.trt_compat import (
    TensorRTUnavailable,
    compatibility_problems,
    current_gpu,
    deserialize_engine,
    import_tensorrt,
    make_logger,
    numpy_dtype,
    read_sidecar,
    sidecar_path,
)

__all__ = ["ENGINE_SUFFIXES", "TrtRunner", "read_sidecar", "sidecar_path"]


class TrtRunner(BaseRunner):
    """Run a serialized TensorRT engine on a CUDA device."""

    backend = "trt"

    def __init__(
        self,
        path: str | Path,
        *,
        device: str | Device = "cuda",
        cuda_graph: bool = False,
        check_compatibility: bool = True,
        _host_buffers: bool = False,
    ) -> None:
        """``_host_buffers`` is a test hook: buffers in host memory, for the ONNX Runtime stand-in
        of ``tests/trt_standin``; real engines need device memory."""
        import torch

        # An engine runs only on a GPU: "cpu" is refused, never quietly turned into "cuda".
        device = Device.parse(device, default="cuda").require_cuda(f"The TensorRT engine {path}")
        path = Path(path)
        if not path.is_file():
            raise RunnerError(
                f"Engine {path} does not exist." if not path.exists() else f"{path} is not a file.",
                hint="Build one with `python cli.py build-engine MODEL.onnx` on a GPU machine.",
            )
        self.path = path
        self.sidecar = read_sidecar(path)
        try:
            trt = import_tensorrt()
        except TensorRTUnavailable as exc:
            raise BackendUnavailableError(
                f"Cannot run TensorRT engine {path}: {exc.message}", hint=exc.hint
            ) from None
        if _host_buffers:
            torch_device = torch.device("cpu")
            device = "cpu (test buffers)"
        else:
            if not torch.cuda.is_available():
                raise BackendUnavailableError(
                    f"Cannot run TensorRT engine {path}: PyTorch sees no CUDA device.",
                    hint="TensorRT engines run on NVIDIA GPUs; install a CUDA build of PyTorch there.",
                )
            # "cuda" has no index, and torch.cuda.set_device raises ValueError on an index-less
            # device: resolve it first.
            index = device.cuda_index()
            torch_device = torch.device("cuda", index)
            torch.cuda.set_device(index)
            device = f"cuda:{index}"
        self._torch_device = torch_device
        plan = path.read_bytes()
        if self.sidecar is not None and check_compatibility:
            self._check_sidecar(
                plan,
                trt.__version__,
                None if _host_buffers else current_gpu(torch_device.index),
            )

        self._logger = make_logger(trt)
        options = (self.sidecar or {}).get("build_options", {})
        self._runtime, self._engine = deserialize_engine(
            trt, self._logger, plan, version_compatible=bool(options.get("version_compatible"))
        )
        if self._engine is None:
            details = "; ".join(self._logger.errors()[-3:]) or "no details"
            raise RunnerError(
                f"TensorRT {trt.__version__} cannot load {path}: not a valid plan for this version "
                f"and GPU ({details}).",
                hint="Is the file truncated, or built by another TensorRT version? Rebuild it here "
                "with `python cli.py build-engine MODEL.onnx`.",
            )
        inputs, outputs, self._profiles = [], [], {}
        for index in range(self._engine.num_io_tensors):
            name = self._engine.get_tensor_name(index)
            mode = self._engine.get_tensor_mode(name)
            dtype = numpy_dtype(self._engine.get_tensor_dtype(name))
            shape = tuple(None if d < 0 else int(d) for d in self._engine.get_tensor_shape(name))
            if mode == trt.TensorIOMode.INPUT:
                inputs.append(TensorSpec(name, shape, dtype.name))
                lo, _, hi = self._engine.get_tensor_profile_shape(name, 0)
                self._profiles[name] = (tuple(lo), tuple(hi))
            elif mode == trt.TensorIOMode.OUTPUT:
                outputs.append((name, dtype))
        self._output_dtypes = dict(outputs)
        self._context = self._engine.create_execution_context()
        if self._context is None:  # TensorRT returns None (no exception), e.g. out of memory
            details = "; ".join(self._logger.errors()[-3:]) or "no details"
            raise RunnerError(
                f"TensorRT could not create an execution context for {path} ({details}).",
                hint="Usually out of device memory: free the GPU, or rebuild with a smaller "
                "--max-batch.",
            )
        self._stream = None if _host_buffers else torch.cuda.Stream(torch_device)
        self._cuda_graph = cuda_graph and not _host_buffers
        if cuda_graph and _host_buffers:
            raise RunnerError("CUDA graphs need a CUDA device.", hint="Drop --cuda-graphs.")
        self._buffers: dict[tuple, dict[str, Any]] = {}  # per input shapes: name -> tensor
        # (shapes, id(buffers)) of the one captured graph, the graph, and its buffers (kept alive).
        self._graph: tuple[tuple, Any, dict[str, Any]] | None = None
        side = self.sidecar or {}
        super().__init__(
            name=str(path),
            device=device,
            precision=side.get("precision", "unknown"),
            input_spec=inputs,
            output_names=[n for n, _ in outputs],
            model=side.get("model"),
            preprocessing=side.get("preprocessing") or None,
            num_classes=side.get("num_classes"),
        )
        self.tensorrt_version = trt.__version__
        metadata = side.get("source_onnx", {}).get("metadata")
        # What the ONNX it was built from says about itself (model, size, options, weights).
        self.info = ArtifactInfo.from_props(metadata) if metadata else None

    # ------------------------------------------------------------------ checks

    def _check_sidecar(self, plan: bytes, trt_version: str, gpu) -> None:
        import hashlib

        expected = self.sidecar.get("plan_sha256")
        if expected and hashlib.sha256(plan).hexdigest() != expected:
            raise RunnerError(
                f"{self.path} does not match its sidecar {sidecar_path(self.path)}: the plan was "
                "replaced or is corrupt.",
                hint="Rebuild the engine with `python cli.py build-engine`, or remove the stale sidecar.",
            )
        problems = compatibility_problems(self.sidecar, trt_version, gpu)
        if problems:
            source = self.sidecar.get("source_onnx", {}).get("path", "MODEL.onnx")
            raise RunnerError(
                f"Engine {self.path} cannot run here: " + "; ".join(problems) + ".",
                hint=f"Rebuild it on this host: python cli.py build-engine {source} --output {self.path}"
                " (or build with --version-compatible / --hardware-compatibility ampere_plus).",
            )

    def _check_batch(self, name: str, shape: tuple[int, ...]) -> None:
        lo, hi = self._profiles[name]
        if not all(a <= s <= b for s, a, b in zip(shape, lo, hi)):
            raise RunnerError(
                f"Input {name} of shape {list(shape)} is outside the engine's profile "
                f"(min {list(lo)}, max {list(hi)}).",
                hint=f"Use batches of {lo[0]} to {hi[0]}, or rebuild with --min-batch/--max-batch.",
            )

    # ------------------------------------------------------------------ backend implementation

    @property
    def supports_cuda_graphs(self) -> bool:  # type: ignore[override]
        return self._stream is not None

    @property
    def stream_handle(self) -> int | None:
        return None if self._stream is None else self._stream.cuda_stream

    def synchronize(self) -> None:
        if self._stream is not None:
            self._stream.synchronize()

    def _buffers_for(self, shapes: tuple) -> dict[str, Any]:
        """Device buffers for one set of input shapes, allocated once and kept (CUDA graphs
        replay fixed addresses); output shapes come from the execution context."""

        if shapes in self._buffers:
            return self._buffers[shapes]
        buffers = {}
        for (name, shape), spec in zip(shapes, self._input_spec):
            if not self._context.set_input_shape(name, shape):
                raise RunnerError(f"TensorRT refused input shape {list(shape)} for {name}.")
            buffers[name] = self._alloc(shape, _torch_dtype(spec.dtype))
        for name, dtype in self._output_dtypes.items():
            shape = tuple(int(d) for d in self._context.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise RunnerError(
                    f"TensorRT left output {name} with an unknown shape {list(shape)}."
                )
            buffers[name] = self._alloc(shape, _torch_dtype(dtype.name))
        if len(self._buffers) >= 8:  # bound memory for odd batch sizes (staged feeds keep theirs)
            self._buffers.pop(next(iter(self._buffers)))
        if self._stream is not None:
            import torch

            # The blocks were handed out on the current stream, where work that used them
            # before may still be queued: the runner's stream writes them only after it.
            self._stream.wait_stream(torch.cuda.current_stream(self._torch_device))
        self._buffers[shapes] = buffers
        return buffers

    def _alloc(self, shape: tuple[int, ...], dtype: Any) -> Any:
        """A device buffer that TensorRT reads or writes on the runner's stream.

        The caching allocator ties a block to the stream it was allocated on (the current one);
        ``record_stream`` tells it that the runner's stream uses the block too, so a freed
        buffer is not handed out again while queued TensorRT work still touches it.
        """
        import torch

        tensor = torch.empty(shape, dtype=dtype, device=self._torch_device)
        if self._stream is not None:
            tensor.record_stream(self._stream)
        return tensor

    def _bind(self, shapes: tuple, buffers: dict[str, Any]) -> None:
        for name, shape in shapes:
            if not self._context.set_input_shape(name, shape):
                raise RunnerError(f"TensorRT refused input shape {list(shape)} for {name}.")
        for name, tensor in buffers.items():
            if not self._context.set_tensor_address(name, tensor.data_ptr()):
                raise RunnerError(f"TensorRT refused the buffer address of {name}.")

    def _stage(self, feed: dict[str, np.ndarray]) -> tuple:
        import torch

        shapes = tuple((s.name, tuple(feed[s.name].shape)) for s in self._input_spec)
        for name, shape in shapes:
            self._check_batch(name, shape)
        buffers = self._buffers_for(shapes)
        if self._stream is None:
            for name, _ in shapes:
                buffers[name].copy_(torch.from_numpy(feed[name]))
        else:
            with torch.cuda.stream(self._stream):  # host → device on the engine's stream
                for name, _ in shapes:
                    buffers[name].copy_(torch.from_numpy(feed[name]))
        return shapes, buffers

    def _execute(self, staged: tuple) -> dict[str, Any]:
        shapes, buffers = staged
        if self._cuda_graph:
            import torch

            key = (shapes, id(buffers))
            if self._graph is None or self._graph[0] != key:
                # A graph replays the shapes and addresses of its capture, and the context holds
                # one set of shapes: a new shape drops the graph and recaptures (this runner's
                # choice, see the module docstring; trtexec captures once per context).
                self._graph = None
                self._graph = (key, self._capture(shapes, buffers), buffers)
            with torch.cuda.stream(self._stream):  # replay() launches on the current stream
                self._graph[1].replay()
        else:
            self._bind(shapes, buffers)
            self._enqueue("run")
        return {name: buffers[name] for name in self._output_dtypes}

    def _enqueue(self, what: str) -> None:
        # execute_async_v3 needs a real stream handle: the runner's own (0, the legacy default
        # stream, makes TensorRT synchronize around every launch).
        if not self._context.execute_async_v3(self.stream_handle or 0):
            details = "; ".join(self._logger.errors()[-3:]) or "no details"
            raise RunnerError(f"TensorRT failed to {what} {self.path} ({details}).")

    def _capture(self, shapes: tuple, buffers: dict[str, Any]) -> Any:
        """One enqueue outside the capture (TensorRT does deferred, shape-dependent work there,
        which must not be captured; trtexec and Polygraphy do the same), then the capture.

        A capture that fails is an error, never a graph that silently replays nothing (later
        batches would return the warm-up's outputs): ``execute_async_v3`` returning False, an
        error logged by TensorRT during the capture, or CUDA invalidating the capture.
        """
        import torch

        self._bind(shapes, buffers)
        self._enqueue("run (before CUDA-graph capture)")
        self._stream.synchronize()
        hint = "Run without --cuda-graphs (this engine or TensorRT version cannot be captured)."
        graph = torch.cuda.CUDAGraph()
        logged = self._logger.error_count
        try:
            # thread_local: other threads' CUDA calls during the capture are neither captured
            # nor made to fail (trtexec's cudaStreamCaptureModeThreadLocal).
            with torch.cuda.graph(graph, stream=self._stream, capture_error_mode="thread_local"):
                ok = self._context.execute_async_v3(self.stream_handle)
        except RuntimeError as exc:  # e.g. cudaErrorStreamCaptureInvalidated
            raise RunnerError(
                f"CUDA-graph capture of {self.path} failed: {exc}".splitlines()[0], hint=hint
            ) from None
        errors = self._logger.errors_since(logged)
        if not ok or errors:
            raise RunnerError(
                f"CUDA-graph capture of {self.path} failed "
                f"({'; '.join(errors[-3:]) or 'execute_async_v3 returned False'}).",
                hint=hint,
            )
        return graph

    def _fetch(self, outputs: dict[str, Any]) -> dict[str, np.ndarray]:
        import torch

        if self._stream is None:
            return {name: t.numpy().copy() for name, t in outputs.items()}
        with torch.cuda.stream(self._stream):
            host = {name: t.to("cpu", non_blocking=True) for name, t in outputs.items()}
        self._stream.synchronize()
        return {name: t.numpy() for name, t in host.items()}

    def _close(self) -> None:
        self.synchronize()
        self._graph = None
        self._buffers.clear()
        self._context = None
        self._engine = None
        self._runtime = None

    def _describe_extra(self) -> dict[str, Any]:
        return {
            "engine": str(self.path),
            "tensorrt": self.tensorrt_version,
            "cuda_graph": self._cuda_graph,
            "profile": {
                n: {"min": list(lo), "max": list(hi)} for n, (lo, hi) in self._profiles.items()
            },
            "built_with": (self.sidecar or {}).get("tensorrt_version"),
            "built_on": (self.sidecar or {}).get("gpu", {}).get("name"),
        }


def _torch_dtype(name: str):
    import torch

    return {
        "float32": torch.float32,
        "float16": torch.float16,
        "int8": torch.int8,
        "uint8": torch.uint8,
        "int32": torch.int32,
        "int64": torch.int64,
        "bool": torch.bool,
    }[name]


def _from_target(target: Target, device: Device, **options: Any) -> TrtRunner:
    """The registry's factory: a serialized engine on a GPU."""
    return TrtRunner(target.path, device=device, **options)


register_backend(
    "trt",
    lambda target: target.kind == "engine",
    _from_target,
    options=("cuda_graph",),
    fixed_by="a built engine already fixes its weights, input size, precision and runtime",
    default_device="cuda",
)
