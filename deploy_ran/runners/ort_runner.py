"""ONNX Runtime: any of the toolkit's ONNX files (FP32, FP16, INT8 Q/DQ) or a foreign one.

Execution providers are chosen by short name (``cpu``, ``cuda``, ``tensorrt``) or ONNX Runtime's
full name; a provider this installation lacks is an error that lists the ones it has, and a session
that silently fell back to the CPU (ONNX Runtime's behaviour when CUDA libraries fail to load) is
refused rather than benchmarked under the wrong name. Thread counts are always set explicitly and
reported, because ONNX Runtime's defaults differ between versions and machines.

On CUDA the runner uses I/O binding: staged inputs live in device memory as ``OrtValue`` objects
and outputs are bound to the device, so ``bench --no-copies`` measures the model and nothing else.
ONNX Runtime's compute stream is a stream the runner owns (``user_compute_stream``), which lets
``bench`` time it with CUDA events. ``cuda_graph=True`` turns on the CUDA provider's graph capture
(one graph per batch size, selected with the ``gpu_graph_id`` run option); it needs fixed buffer
addresses, so inputs are copied into per-shape buffers when staged. The CUDA provider's conv
options (NHWC kernels, cuDNN algorithm search, workspace) come per precision from
:data:`CUDA_PROVIDER_DEFAULTS` (:func:`cuda_provider_options`) unless ``provider_options`` sets
them, and are recorded in :meth:`OrtRunner.describe`.

ONNX Runtime's TensorRT provider (``providers="tensorrt"``) builds its own engines: the runner gives
it the CUDA provider as the fallback for subgraphs TensorRT does not take (ONNX Runtime's
documented order: TensorRT, CUDA, CPU), an engine cache and a timing cache in a folder beside the
ONNX (engine builds take minutes; without a cache every session rebuilds), and an explicit
optimisation profile (without one the provider rebuilds its engine for every new batch size).
Its CUDA graphs hold one input shape, so a TensorRT-provider runner with ``cuda_graph=True``
accepts one batch size.

**Q/DQ arithmetic.** An INT8 Q/DQ file is run the way TensorRT computes it by default
(``qdq="float"``): ONNX Runtime's Q/DQ fusions are off (``session.disable_quant_qdq``), so every
QuantizeLinear/DequantizeLinear pair fake-quantizes in float and Conv, Gemm and biases run in
float, as TensorRT's fused INT8 kernels do (float biases, float scales). With the fusions on
(``qdq="integer"``) ONNX Runtime rewrites Q/DQ + Conv into its own integer kernels
(``QLinearConv`` with an INT32 bias), which is ONNX Runtime's arithmetic, not TensorRT's. The
choice is reported by :meth:`describe` (``qdq_arithmetic``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx

from deploy_ran.artifacts import ArtifactInfo, get_metadata, load_onnx, precision_of
from deploy_ran.device import Device
from deploy_ran.runners.base import BackendUnavailableError, BaseRunner, RunnerError, TensorSpec
from deploy_ran.runners.ort_providers import (  # noqa: F401 - re-exported: callers import them here
    CUDA_PROVIDER_DEFAULTS,
    CUDNN_CONV_ALGO_SEARCH,
    DEFAULT_TRT_PROFILE,
    GPU_PROVIDERS,
    PROVIDER_NAMES,
    cuda_provider_options,
    default_threads,
    default_trt_cache_dir,
    resolve_providers,
    tensorrt_provider_options,
)
from deploy_ran.runners.registry import register_backend
from deploy_ran.target import Target

#: How an INT8 Q/DQ file is evaluated (see the module docstring).
QDQ_ARITHMETIC = {
    "float": "fake-quantize in float (ONNX Runtime Q/DQ fusions off), as TensorRT computes Q/DQ",
    "integer": "ONNX Runtime integer kernels (Q/DQ fused into QLinear ops)",
}

# ONNX Runtime's tensor type strings → numpy dtype names.
_ORT_DTYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(bool)": "bool",
}


class OrtRunner(BaseRunner):
    """Run an ONNX file in ONNX Runtime."""

    backend = "ort"

    def __init__(
        self,
        path: str | Path | onnx.ModelProto,
        *,
        device: str | Device = "cpu",
        precision: str | None = None,
        providers: str | list[str] | None = None,
        threads: int | None = None,
        inter_op_threads: int = 1,
        graph_optimization: str = "all",
        allow_spinning: bool = True,
        io_binding: bool | None = None,
        cuda_graph: bool = False,
        provider_options: dict[str, dict[str, Any]] | None = None,
        device_id: int = 0,
        trt_cache_dir: str | Path | None = None,
        trt_profile_batches: tuple[int, int, int] = DEFAULT_TRT_PROFILE,
        qdq: str = "float",
        allow_tf32: bool = False,
    ) -> None:
        if qdq not in QDQ_ARITHMETIC:
            raise RunnerError(
                f"Unknown Q/DQ arithmetic {qdq!r}.", hint=f"Choose one of: {', '.join(QDQ_ARITHMETIC)}."
            )
        path, proto, source = _open_model(path)
        info = ArtifactInfo.from_props(get_metadata(proto))
        precision = precision or precision_of(proto)  # a Target carries it: no second look
        device = Device.parse(device)
        full = resolve_providers(providers, device)
        on_gpu = full[0] in GPU_PROVIDERS
        if device.index is not None:
            device_id = device.index
        threads = threads if threads is not None else default_threads()
        if threads < 1 or inter_op_threads < 1:
            raise RunnerError(
                f"Thread counts must be ≥ 1 (threads={threads}, inter_op={inter_op_threads}).",
                hint="Use --threads 1 or more.",
            )
        if cuda_graph and not on_gpu:
            raise RunnerError("CUDA graphs need the CUDA provider.", hint="Use --device cuda.")
        opts = _session_options(threads, inter_op_threads, graph_optimization, allow_spinning, qdq)
        self._stream = _new_cuda_stream(device_id) if on_gpu else None
        options = {k: dict(v) for k, v in (provider_options or {}).items()}
        if on_gpu:
            self._gpu_provider_options(
                options, proto, path, full, precision, device_id, cuda_graph, allow_tf32,
                trt_cache_dir, trt_profile_batches,
            )  # fmt: skip
        session = _open_session(source, path, opts, full, options)
        self._session = session
        self._outputs_meta = session.get_outputs()
        self._providers = session.get_providers()
        cuda_given = options.get("CUDAExecutionProvider", {})
        self._cuda_options = (
            {k: v for k, v in cuda_given.items() if k in CUDA_PROVIDER_DEFAULTS["fp32"]}
            if "CUDAExecutionProvider" in self._providers
            else {}
        )
        self._threads = threads
        self._inter_op_threads = inter_op_threads
        self._allow_spinning = allow_spinning
        self._graph_optimization = graph_optimization
        self._qdq = qdq
        self._has_qdq = any(
            n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in proto.graph.node
        )
        self._on_gpu = on_gpu
        self._device_id = device_id
        self._io_binding = on_gpu if io_binding is None else io_binding
        self._cuda_graph = cuda_graph
        self._graph_buffers: dict[tuple, tuple[int, Any, dict[str, Any], dict[str, Any]]] = {}
        self.path = path
        self.info = info
        self.metadata = get_metadata(proto)
        inputs = _input_specs(session, path)
        super().__init__(
            name=str(path),
            device=f"cuda:{device_id}" if on_gpu else "cpu",
            precision=precision,
            input_spec=inputs,
            output_names=[o.name for o in self._outputs_meta],
            model=info.model,
            preprocessing=_preprocessing(info, inputs),
            num_classes=info.num_classes,
        )

    def _gpu_provider_options(
        self, options, proto, path, full, precision, device_id, cuda_graph, allow_tf32,
        trt_cache_dir, trt_profile_batches,
    ) -> None:  # fmt: skip
        """Fill ``options`` (provider → option strings) for the CUDA and TensorRT providers:
        the per-precision CUDA defaults (TF32 off unless allowed), the runner's own stream, CUDA
        graphs, and the TensorRT provider's caches and profile. The caller's options win."""
        cuda_opts = options.setdefault("CUDAExecutionProvider", {})
        cuda_opts.update(cuda_provider_options(precision, cuda_opts, allow_tf32=allow_tf32))
        cuda_opts.setdefault("device_id", str(device_id))
        cuda_opts.setdefault("user_compute_stream", str(self._stream.cuda_stream))
        if cuda_graph:
            cuda_opts["enable_cuda_graph"] = "1"
        if "TensorrtExecutionProvider" not in full:
            return
        cache_dir = Path(trt_cache_dir) if trt_cache_dir else default_trt_cache_dir(path)
        cache_dir.mkdir(parents=True, exist_ok=True)
        trt_opts = options.setdefault("TensorrtExecutionProvider", {})
        for key, value in tensorrt_provider_options(
            proto,
            device_id=device_id,
            stream_handle=self._stream.cuda_stream,
            precision=precision,
            cuda_graph=cuda_graph,
            cache_dir=cache_dir,
            profile_batches=trt_profile_batches,
        ).items():
            trt_opts.setdefault(key, value)

    @property
    def session(self):
        """The underlying ``onnxruntime.InferenceSession`` (for measurements against it)."""
        return self._session

    @property
    def providers(self) -> list[str]:
        return list(self._providers)

    @property
    def supports_cuda_graphs(self) -> bool:  # type: ignore[override]
        return self._on_gpu

    @property
    def label(self) -> str:
        short = {v: k for k, v in PROVIDER_NAMES.items() if k != "trt"}
        return f"ort {self.precision} ({short.get(self._providers[0], self._providers[0])})"

    @property
    def stream_handle(self) -> int | None:
        return self._stream.cuda_stream if self._stream is not None else None

    def synchronize(self) -> None:
        if self._stream is not None:
            self._stream.synchronize()

    # -------------------------------------------------------------------- BaseRunner hooks

    def _stage(self, feed: dict[str, np.ndarray]) -> Any:
        if not self._io_binding:
            return feed
        import onnxruntime as ort

        dev = "cuda" if self._on_gpu else "cpu"
        if self._cuda_graph:
            key = tuple((k, v.shape) for k, v in feed.items())
            if (
                key not in self._graph_buffers
                and self._graph_buffers
                and self._providers[0] == "TensorrtExecutionProvider"
            ):
                raise RunnerError(
                    f"ONNX Runtime's TensorRT provider captured its CUDA graph for "
                    f"{list(self._graph_buffers)[0]}; it cannot replay another batch size.",
                    hint="Use one batch size per runner with CUDA graphs, the CUDA provider "
                    "(--device cuda), or no --cuda-graphs.",
                )
            if key not in self._graph_buffers:
                self._graph_buffers[key] = self._graph_binding(feed)
            graph_id, binding, in_values, _ = self._graph_buffers[key]
            for name, value in in_values.items():
                value.update_inplace(np.ascontiguousarray(feed[name]))
            return _Bound(binding, graph_id)
        binding = self._session.io_binding()
        for name, array in feed.items():
            value = ort.OrtValue.ortvalue_from_numpy(
                np.ascontiguousarray(array), dev, self._device_id
            )
            binding.bind_ortvalue_input(name, value)
        for out in self._outputs_meta:
            binding.bind_output(out.name, dev, self._device_id)
        return _Bound(binding, None)

    def _graph_binding(self, feed: dict[str, np.ndarray]) -> tuple[int, Any, dict, dict]:
        """Fixed input/output buffers for one shape: CUDA graph replay needs fixed addresses."""
        import onnxruntime as ort

        dev = "cuda" if self._on_gpu else "cpu"
        batch = next(iter(feed.values())).shape[0]
        binding = self._session.io_binding()
        in_values = {}
        for name, array in feed.items():
            value = ort.OrtValue.ortvalue_from_numpy(
                np.ascontiguousarray(array), dev, self._device_id
            )
            binding.bind_ortvalue_input(name, value)
            in_values[name] = value
        out_values = {}
        for out in self._outputs_meta:
            dims = list(out.shape)
            if dims and not isinstance(dims[0], int):
                dims[0] = batch
            if not all(isinstance(d, int) and d > 0 for d in dims):
                raise RunnerError(
                    f"CUDA graphs need static output shapes; {out.name} has {out.shape}.",
                    hint="Run without --cuda-graphs.",
                )
            dtype = np.dtype(_ORT_DTYPES[out.type])
            value = ort.OrtValue.ortvalue_from_shape_and_type(dims, dtype, dev, self._device_id)
            binding.bind_ortvalue_output(out.name, value)
            out_values[out.name] = value
        return len(self._graph_buffers) + 1, binding, in_values, out_values

    def _execute(self, staged: Any) -> Any:
        if isinstance(staged, _Bound):
            import onnxruntime as ort

            options = None
            if staged.graph_id is not None:
                options = ort.RunOptions()
                options.add_run_config_entry("gpu_graph_id", str(staged.graph_id))
            self._session.run_with_iobinding(staged.binding, options)
            return staged
        return self._session.run(None, staged)

    def _fetch(self, outputs: Any) -> dict[str, np.ndarray]:
        if isinstance(outputs, _Bound):
            arrays = outputs.binding.copy_outputs_to_cpu()
        else:
            arrays = outputs
        return dict(zip(self.output_names, arrays))

    def _close(self) -> None:
        self._graph_buffers.clear()
        self._session = None
        self._stream = None

    def _describe_extra(self) -> dict[str, Any]:
        import onnxruntime as ort

        return {
            "onnxruntime": ort.__version__,
            "providers": self._providers,
            "threads": self._threads,
            "inter_op_threads": self._inter_op_threads,
            "allow_spinning": self._allow_spinning,
            "graph_optimization": self._graph_optimization,
            "qdq_arithmetic": QDQ_ARITHMETIC[self._qdq] if self._has_qdq else None,
            "io_binding": self._io_binding,
            "cuda_graph": self._cuda_graph,
            # conv options of the CUDA provider (CUDA_PROVIDER_DEFAULTS unless given); {} off CUDA
            "cuda_provider_options": dict(self._cuda_options),
            # FP32 arithmetic of the CUDA provider: False = true FP32 (use_tf32=0); None off CUDA
            "tf32": self._cuda_options.get("use_tf32") == "1" if self._cuda_options else None,
            # The TensorRT provider builds its engines with TensorRT's default arithmetic (TF32
            # allowed for FP32 layers) and has no option to turn it off: said, not hidden.
            "tensorrt_provider_tf32": "TensorRT default (allowed)"
            if self._providers and self._providers[0] == "TensorrtExecutionProvider"
            else None,
            "layout": "NHWC (prefer_nhwc)"
            if self._cuda_options.get("prefer_nhwc") == "1"
            else None,
        }


class _Bound:
    """Inputs/outputs bound to device memory through an ``IOBinding``."""

    __slots__ = ("binding", "graph_id")

    def __init__(self, binding: Any, graph_id: int | None) -> None:
        self.binding = binding
        self.graph_id = graph_id


def _new_cuda_stream(device_id: int):
    """A CUDA stream for ONNX Runtime to compute on, owned by the runner (via PyTorch)."""
    import torch

    if not torch.cuda.is_available():
        raise BackendUnavailableError(
            "ONNX Runtime's CUDA provider is installed but PyTorch sees no CUDA device, which the "
            "runner uses to own the compute stream.",
            hint="Install a CUDA build of PyTorch next to onnxruntime-gpu, or use --device cpu.",
        )
    return torch.cuda.Stream(device=torch.device("cuda", device_id))


def _open_model(path: str | Path | onnx.ModelProto) -> tuple[Path, onnx.ModelProto, Any]:
    """(display path, proto, what ONNX Runtime loads): a file, or an in-memory model
    (calibration candidates) as serialized bytes."""
    if isinstance(path, onnx.ModelProto):
        return Path(f"<in-memory {path.graph.name or 'model'}>"), path, path.SerializeToString()
    path = Path(path)
    return path, load_onnx(path), str(path)  # load_onnx: clear errors for missing/corrupt files


def _session_options(
    threads: int, inter_op_threads: int, graph_optimization: str, allow_spinning: bool, qdq: str
) -> Any:
    """``SessionOptions`` with explicit thread counts, optimisation level and Q/DQ arithmetic."""
    import onnxruntime as ort

    levels = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    if graph_optimization not in levels:
        raise RunnerError(
            f"Unknown graph optimization level {graph_optimization!r}.",
            hint=f"Choose one of: {', '.join(levels)}.",
        )
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = inter_op_threads
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = levels[graph_optimization]
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if allow_spinning else "0")
    opts.log_severity_level = 3
    if qdq == "float":
        opts.add_session_config_entry("session.disable_quant_qdq", "1")
    return opts


def _open_session(source: Any, path: Path, opts: Any, full: list[str], options: dict) -> Any:
    """The ``InferenceSession``, refusing a silent fall-back from the asked provider."""
    import onnxruntime as ort

    provider_list = [(p, options.get(p, {})) for p in full]
    try:
        session = ort.InferenceSession(source, opts, providers=provider_list)
    except Exception as exc:  # ORT raises its own exception types
        raise RunnerError(
            f"ONNX Runtime could not load {path}: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}",
            hint="Check the file with `python cli.py inspect FILE`; a graph that needs a newer "
            "opset than this onnxruntime supports fails here.",
        ) from None
    got = session.get_providers()
    if got[0] != full[0]:
        raise BackendUnavailableError(
            f"ONNX Runtime fell back from {full[0]} to {got[0]} (the provider failed to "
            "initialise, usually missing CUDA/cuDNN/TensorRT libraries).",
            hint="Run `python cli.py doctor`; fix the GPU libraries or use --device cpu.",
        )
    return session


def _input_specs(session: Any, path: Path) -> list[TensorSpec]:
    inputs = []
    for i in session.get_inputs():
        dtype = _ORT_DTYPES.get(i.type)
        if dtype is None:
            raise RunnerError(f"Input {i.name} of {path} has unsupported type {i.type}.")
        shape = tuple(d if isinstance(d, int) and d > 0 else None for d in i.shape)
        inputs.append(TensorSpec(i.name, shape, dtype))
    return inputs


def _preprocessing(info: ArtifactInfo, inputs: list[TensorSpec]) -> dict | None:
    """The artifact's preprocessing, or one made from its mean/std at its input size."""
    size = inputs[0].shape[-1] if inputs and inputs[0].shape else None
    if info.preprocessing:
        return info.preprocessing
    if info.mean and info.std and isinstance(size, int):
        return {"resize_size": size, "crop_size": size, "mean": info.mean, "std": info.std}
    return None


def _from_target(target: Target, device: Device, **options: Any) -> OrtRunner:
    """The registry's factory: an ONNX file, with the precision its Target already read."""
    return OrtRunner(target.path, device=device, precision=target.precision, **options)


register_backend(
    "ort", lambda t: t.kind == "onnx", _from_target, options=("providers", "threads", "cuda_graph"),
    fixed_by="an exported file already fixes its weights, input size and precision",
)  # fmt: skip
