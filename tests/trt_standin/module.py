"""Implementation of the stand-in classes and the per-version module builder."""

from __future__ import annotations

import ctypes
import enum
import importlib.machinery
import inspect
import json
import sys
import types
from typing import Any

import numpy as np
import onnx

from tests.trt_standin.surface import attr_entry, class_entry, load_surface

PLAN_MAGIC = b"DEPLOY-RAN-STANDIN-PLAN\n"  # not a TensorRT plan, and says so in its first bytes


class StandinSignatureError(AssertionError):
    """A stand-in method whose parameters differ from the real TensorRT signature."""


# --------------------------------------------------------------------------------------------
# implementation classes (names and parameters as in TensorRT; checked in build_module)


class ILogger:
    def __init__(self) -> None:
        pass

    def log(self, severity, msg):  # overridden by users
        pass


class Logger(ILogger):
    def __init__(self, min_severity=None) -> None:
        super().__init__()
        self.min_severity = min_severity


class IHostMemory(bytes):
    """Serialized data; like TensorRT's, usable through the buffer protocol."""

    @property
    def nbytes(self) -> int:
        return len(self)

    @property
    def dtype(self):
        return _module().DataType.UINT8


class ITimingCache:
    """Carries the device and version it was made on, like TensorRT's verification header."""

    def __init__(self, data: bytes = b"") -> None:
        self._entries = json.loads(data.decode()) if data else {"builds": 0, **_cache_header()}

    def serialize(self):
        return _cls("IHostMemory")(json.dumps(self._entries).encode())


class IOptimizationProfile:
    def __init__(self) -> None:
        self._shapes: dict[str, tuple] = {}

    def set_shape(self, input, min, opt, max):  # noqa: A002 - TensorRT's parameter names
        shapes = (tuple(min), tuple(opt), tuple(max))
        ranked = len({len(s) for s in shapes}) == 1
        if not ranked or not all(a <= b <= c for a, b, c in zip(*shapes)) or min[0] < 1:
            # pyCore.cpp's lambda raises when setDimensions() returns false.
            raise RuntimeError(f"Failed to set shape for input {input}: {shapes}")
        self._shapes[input] = shapes

    def __bool__(self) -> bool:  # TensorRT: a profile is valid once its shapes are set
        return bool(self._shapes)

    def get_shape(self, input):  # noqa: A002
        return [list(s) for s in self._shapes[input]]


class INetworkDefinition:
    def __init__(self, flags: int) -> None:
        self._flags = flags
        self._onnx: onnx.ModelProto | None = None
        self._onnx_bytes = b""

    @property
    def num_inputs(self) -> int:
        return len(self._onnx.graph.input) if self._onnx is not None else 0

    @property
    def num_outputs(self) -> int:
        return len(self._onnx.graph.output) if self._onnx is not None else 0


class ParserError:
    def __init__(self, node: int, name: str, op: str, desc: str) -> None:
        self._node, self._name, self._op, self._desc = node, name, op, desc

    def node(self):
        return self._node

    def node_name(self):
        return self._name

    def node_operator(self):
        return self._op

    def desc(self):
        return self._desc

    def code(self):
        return 8  # UNSUPPORTED_NODE


class OnnxParser:
    #: Ops the stand-in "parser" refuses, to exercise error reporting.
    UNSUPPORTED_DOMAINS = ("com.example",)

    def __init__(self, network, logger) -> None:
        self._network, self._logger = network, logger
        self._errors: list[ParserError] = []

    def parse_from_file(self, model):
        try:
            proto = onnx.load(model)
        except Exception as exc:  # noqa: BLE001 - reported like the real parser does
            self._errors.append(_cls("ParserError")(-1, "", "", f"failed to parse ONNX: {exc}"))
            return False
        for index, node in enumerate(proto.graph.node):
            if node.domain in self.UNSUPPORTED_DOMAINS:
                self._errors.append(
                    _cls("ParserError")(
                        index,
                        node.name,
                        node.op_type,
                        f"No importer registered for op: {node.op_type}",
                    )
                )
        if self._errors:
            return False
        self._network._onnx = proto
        self._network._onnx_bytes = proto.SerializeToString()
        return True

    @property
    def num_errors(self) -> int:
        return len(self._errors)

    def get_error(self, index):
        return self._errors[index]

    def clear_errors(self):
        self._errors.clear()


class IBuilderConfig:
    def __init__(self) -> None:
        self._flags: set = set()
        self._pools: dict = {}
        self._profiles: list[IOptimizationProfile] = []
        self._cache: ITimingCache | None = None
        self._opt_level = 3
        self._hw = None
        self._verbosity = None

    def set_memory_pool_limit(self, pool, pool_size):
        self._pools[pool] = int(pool_size)

    def get_memory_pool_limit(self, pool):
        return self._pools.get(pool, 0)

    def set_flag(self, flag):
        self._flags.add(flag)

    def clear_flag(self, flag):
        self._flags.discard(flag)

    def get_flag(self, flag):
        return flag in self._flags

    @property
    def builder_optimization_level(self):
        return self._opt_level

    @builder_optimization_level.setter
    def builder_optimization_level(self, value):
        self._opt_level = int(value)

    @property
    def hardware_compatibility_level(self):
        return self._hw

    @hardware_compatibility_level.setter
    def hardware_compatibility_level(self, value):
        self._hw = value

    @property
    def profiling_verbosity(self):
        return self._verbosity

    @profiling_verbosity.setter
    def profiling_verbosity(self, value):
        self._verbosity = value

    def add_optimization_profile(self, profile):
        if not profile:  # TensorRT returns -1 for an invalid profile (no exception)
            return -1
        self._profiles.append(profile)
        return len(self._profiles) - 1

    def create_timing_cache(self, serialized_timing_cache):
        try:
            return _cls("ITimingCache")(bytes(serialized_timing_cache))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return None

    def set_timing_cache(self, cache, ignore_mismatch):
        header = {k: cache._entries.get(k) for k in _cache_header()}
        if header != _cache_header() and not ignore_mismatch:
            _log("ERROR", f"Timing cache was created on another device or version: {header}")
            return False
        self._cache = cache
        return True

    def get_timing_cache(self):
        return self._cache


class Builder:
    def __init__(self, logger) -> None:
        self._logger = logger
        _module().__standin_state__["logger"] = logger

    def create_network(self, flags):
        return _cls("INetworkDefinition")(flags)

    def create_builder_config(self):
        return _cls("IBuilderConfig")()

    def create_optimization_profile(self):
        return _cls("IOptimizationProfile")()

    def build_serialized_network(self, network, config):
        if network._onnx is None or not config._profiles:
            self._logger.log(
                _module().ILogger.Severity.ERROR, "network has no inputs or no profile"
            )
            return None
        if config._cache is not None:
            config._cache._entries["builds"] = config._cache._entries.get("builds", 0) + 1
        header = {
            "standin_version": _module().__version__,
            "version_compatible": any(
                getattr(f, "name", "") == "VERSION_COMPATIBLE" for f in config._flags
            ),
            "flags": network._flags,
            "profiles": [p._shapes for p in config._profiles],
            "tf32": any(getattr(f, "name", "") == "TF32" for f in config._flags),
            "detailed": getattr(config._verbosity, "name", "") == "DETAILED",
        }
        return _cls("IHostMemory")(
            PLAN_MAGIC + json.dumps(header).encode() + b"\n" + network._onnx_bytes
        )


class Runtime:
    def __init__(self, logger) -> None:
        self._logger = logger
        _module().__standin_state__["logger"] = logger
        self._host_code = False

    @property
    def engine_host_code_allowed(self):
        return self._host_code

    @engine_host_code_allowed.setter
    def engine_host_code_allowed(self, value):
        self._host_code = bool(value)

    def deserialize_cuda_engine(self, serialized_engine):
        data = bytes(serialized_engine)
        if not data.startswith(PLAN_MAGIC):
            self._logger.log(
                _module().ILogger.Severity.ERROR, "Serialization assertion failed: magic tag"
            )
            return None
        header_line, _, onnx_bytes = data[len(PLAN_MAGIC) :].partition(b"\n")
        try:
            header = json.loads(header_line)
            proto = onnx.load_from_string(onnx_bytes)
        except Exception:  # noqa: BLE001 - a corrupt plan
            self._logger.log(
                _module().ILogger.Severity.ERROR, "Serialization assertion failed: corrupt plan"
            )
            return None
        here, built = _version(_module().__version__), _version(header["standin_version"])
        if header.get("version_compatible"):
            # A version-compatible plan carries its lean runtime as host code.
            if not self._host_code:
                self._logger.log(
                    _module().ILogger.Severity.ERROR,
                    "Cannot deserialize a version-compatible engine: engine host code is not "
                    "allowed (set engine_host_code_allowed)",
                )
                return None
            ok = here >= built
        else:
            ok = here == built
        if not ok:
            self._logger.log(
                _module().ILogger.Severity.ERROR,
                f"The engine plan file is not compatible with this version of TensorRT, "
                f"expecting library version {_module().__version__} got {header['standin_version']}",
            )
            return None
        return _cls("ICudaEngine")(header, proto, onnx_bytes)


class ICudaEngine:
    def __init__(self, header: dict, proto: onnx.ModelProto, onnx_bytes: bytes) -> None:
        import onnxruntime as ort

        self._header = header
        self._proto = proto
        self._half = any(i.data_type == onnx.TensorProto.FLOAT16 for i in proto.graph.initializer)
        initializers = {i.name for i in proto.graph.initializer}
        self._inputs = [i for i in proto.graph.input if i.name not in initializers]
        self._outputs = list(proto.graph.output)
        self._names = [i.name for i in self._inputs] + [o.name for o in self._outputs]
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        self._session = ort.InferenceSession(onnx_bytes, opts, providers=["CPUExecutionProvider"])

    @property
    def num_io_tensors(self) -> int:
        return len(self._names)

    @property
    def num_optimization_profiles(self) -> int:
        return len(self._header["profiles"])

    @property
    def device_memory_size_v2(self) -> int:
        return 0

    def get_tensor_name(self, index):
        return self._names[index]

    def get_tensor_mode(self, name):
        modes = _module().TensorIOMode
        if name in [i.name for i in self._inputs]:
            return modes.INPUT
        if name in [o.name for o in self._outputs]:
            return modes.OUTPUT
        return modes.NONE

    def get_tensor_dtype(self, name):
        for vi in self._inputs + self._outputs:
            if vi.name == name:
                return getattr(_module().DataType, _ONNX_TO_TRT[vi.type.tensor_type.elem_type])
        raise KeyError(name)

    def get_tensor_shape(self, name):
        for vi in self._inputs + self._outputs:
            if vi.name == name:
                return tuple(
                    d.dim_value if d.HasField("dim_value") else -1
                    for d in vi.type.tensor_type.shape.dim
                )
        raise KeyError(name)

    def get_tensor_profile_shape(self, name, profile_index):
        return [list(s) for s in self._header["profiles"][profile_index][name]]

    def create_execution_context(self, strategy=None):
        return _cls("IExecutionContext")(self)

    def create_engine_inspector(self):
        return _cls("EngineInspector")(self)


class EngineInspector:
    """Layer information as TensorRT reports it: fused layers (never one per ONNX node), and
    formats only where shapes are known (an execution context with input shapes set)."""

    def __init__(self, engine: ICudaEngine) -> None:
        self._engine = engine
        self._context = None

    @property
    def execution_context(self):
        return self._context

    @execution_context.setter
    def execution_context(self, value):
        self._context = value

    def get_engine_information(self, format):  # noqa: A002 - TensorRT's parameter name
        engine = self._engine
        dynamic = any(d < 0 for n in engine._names for d in engine.get_tensor_shape(n))
        shapes_known = not dynamic or (
            self._context is not None
            and all(i.name in self._context._shapes for i in engine._inputs)
        )
        layers = [
            {
                "Name": "Reformatting CopyNode for Input Tensor 0 to " + engine._names[0],
                "LayerType": "Reformat",
                "Outputs": [{"Format/Datatype": "Row major linear FP32"}],
            }
        ]
        for group in _fuse(engine._proto.graph.node):
            if not shapes_known:
                kind = "N/A due to dynamic shapes"
            elif any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in group):
                kind = "Channel major 4 Int8 format"
            elif engine._half:
                kind = "Channel major FP16 format where channel % 8 == 0"
            else:
                kind = "Row major linear FP32"
            layers.append(
                {
                    "Name": " + ".join(n.name or n.op_type for n in group),
                    "LayerType": "CaskConvolution" if group[0].op_type == "Conv" else "Myelin",
                    "Outputs": [{"Format/Datatype": kind}],
                }
            )
        return json.dumps({"Layers": layers, "Bindings": engine._names})


#: Ops TensorRT fuses into the layer before them (pointwise tails, Q/DQ pairs).
_FUSED_TAILS = {
    "Relu",
    "Sigmoid",
    "Add",
    "Mul",
    "BatchNormalization",
    "QuantizeLinear",
    "DequantizeLinear",
    "Identity",
    "Cast",
    "Clip",
}


def _fuse(nodes) -> list[list]:
    """Group ONNX nodes the way an optimizer would: a node joins its producer's layer when it is
    a pointwise tail; shape-only nodes vanish (folded at build time)."""
    groups: list[list] = []
    for node in nodes:
        if node.op_type in ("Shape", "Constant", "Gather", "Unsqueeze", "Concat") and groups:
            continue
        if groups and node.op_type in _FUSED_TAILS:
            groups[-1].append(node)
        else:
            groups.append([node])
    return groups


class IExecutionContext:
    def __init__(self, engine: ICudaEngine) -> None:
        self._engine = engine
        self._shapes: dict[str, tuple] = {}
        self._addresses: dict[str, int] = {}

    def set_input_shape(self, name, shape):
        shape = tuple(int(d) for d in shape)
        lo, _, hi = self._engine._header["profiles"][0][name]
        if any(s < a or s > b for s, a, b in zip(shape, lo, hi)) or len(shape) != len(lo):
            return False
        self._shapes[name] = shape
        return True

    def get_tensor_shape(self, name):
        if name in self._shapes:
            return self._shapes[name]
        batch = next(iter(self._shapes.values()), (-1,))[0]
        return tuple(batch if d == -1 else d for d in self._engine.get_tensor_shape(name))

    def set_tensor_address(self, name, memory):
        self._addresses[name] = int(memory)
        return True

    def get_tensor_address(self, name):
        return self._addresses.get(name, 0)

    def execute_async_v3(self, stream_handle):
        if isinstance(stream_handle, bool) or not isinstance(stream_handle, int):
            # pybind11 rejects anything but an int (None included): TypeError, as here.
            raise TypeError(
                "execute_async_v3(): incompatible function arguments; stream_handle: int, got "
                f"{type(stream_handle).__name__}"
            )
        if stream_handle == 0:
            _log("WARNING", "Using default stream in enqueueV3() may lead to performance issues")
        engine = self._engine
        feeds = {}
        for vi in engine._inputs:
            if vi.name not in self._shapes or vi.name not in self._addresses:
                _log("ERROR", f"IExecutionContext::enqueueV3: input {vi.name} not set")
                return False
            shape, dtype = self._shapes[vi.name], _np_dtype(vi)
            if not _is_device(self._addresses[vi.name], shape, dtype):
                return False
            feeds[vi.name] = _read(self._addresses[vi.name], shape, dtype).copy()
        outputs = engine._session.run([o.name for o in engine._outputs], feeds)
        for vi, value in zip(engine._outputs, outputs):
            if vi.name not in self._addresses:
                _log("ERROR", f"IExecutionContext::enqueueV3: output {vi.name} has no address")
                return False
            dtype = _np_dtype(vi)
            if not _is_device(self._addresses[vi.name], value.shape, dtype):
                return False
            np.copyto(_read(self._addresses[vi.name], value.shape, dtype), value.astype(dtype))
        return True


_ONNX_TO_TRT = {
    onnx.TensorProto.FLOAT: "FLOAT",
    onnx.TensorProto.FLOAT16: "HALF",
    onnx.TensorProto.INT8: "INT8",
    onnx.TensorProto.UINT8: "UINT8",
    onnx.TensorProto.INT32: "INT32",
    onnx.TensorProto.INT64: "INT64",
    onnx.TensorProto.BOOL: "BOOL",
}


def _np_dtype(value_info) -> np.dtype:
    return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(value_info.type.tensor_type.elem_type))


def _version(text: str) -> tuple[int, ...]:
    import re

    parts = [int(p) for p in re.findall(r"\d+", text.split("+", 1)[0])[:4]]
    return tuple(parts + [0] * (4 - len(parts)))


def _log(level: str, msg: str) -> None:
    """Log through the most recently created user logger, as TensorRT's global logger does."""
    logger = _module().__standin_state__.get("logger")
    if logger is not None:
        logger.log(getattr(_module().ILogger.Severity, level), msg)


def _cache_header() -> dict:
    state = _module().__standin_state__
    return {"device": state["device"], "version": _module().__version__}


def register_device_memory(trt: types.ModuleType, address: int, nbytes: int) -> None:
    """Mark ``[address, address + nbytes)`` as device memory (tests that fake a CUDA device)."""
    trt.__standin_state__["device_memory"][int(address)] = int(nbytes)


def _is_device(address: int, shape: tuple, dtype: np.dtype) -> bool:
    """TensorRT reads and writes device memory only: a host address fails the enqueue (a CUDA
    illegal-address error on a real GPU) unless the test opted into host buffers."""
    state = _module().__standin_state__
    if state["host_memory"]:
        return True
    nbytes = int(np.prod(shape)) * dtype.itemsize if shape else dtype.itemsize
    for start, size in state["device_memory"].items():
        if start <= address and address + nbytes <= start + size:
            return True
    _log(
        "ERROR",
        f"IExecutionContext::enqueueV3: Cuda Runtime (an illegal memory access: {address:#x} is not device memory)",
    )
    return False


def _read(address: int, shape: tuple, dtype: np.dtype = np.dtype(np.float32)) -> np.ndarray:
    """A view of memory at ``address`` (the stand-in's "device" is the CPU)."""
    count = int(np.prod(shape)) if shape else 1
    buffer = (ctypes.c_byte * (count * dtype.itemsize)).from_address(address)
    return np.frombuffer(buffer, dtype=dtype, count=count).reshape(shape)


_IMPLEMENTATIONS = {
    cls.__name__: cls
    for cls in (
        ILogger,
        Logger,
        IHostMemory,
        ITimingCache,
        IOptimizationProfile,
        INetworkDefinition,
        ParserError,
        OnnxParser,
        IBuilderConfig,
        Builder,
        Runtime,
        ICudaEngine,
        EngineInspector,
        IExecutionContext,
    )
}
_ENUMS = (
    "NetworkDefinitionCreationFlag",
    "BuilderFlag",
    "MemoryPoolType",
    "ProfilingVerbosity",
    "HardwareCompatibilityLevel",
    "LayerInformationFormat",
    "DataType",
    "TensorIOMode",
)

_CURRENT: types.ModuleType | None = None


def _cls(name: str) -> type:
    """The version's class (what TensorRT hands out), so tests can patch what users get."""
    return getattr(_CURRENT, name, None) or _IMPLEMENTATIONS[name]


def _module() -> types.ModuleType:
    assert _CURRENT is not None, "stand-in module not built"
    return _CURRENT


# --------------------------------------------------------------------------------------------
# building one version's module


def _check_method(version: str, cls_name: str, name: str, func: Any) -> None:
    entry = attr_entry(version, cls_name, name)
    if entry is None or entry.get("kind") != "method":
        raise StandinSignatureError(f"{cls_name}.{name} is not a method in TensorRT {version}")
    params = [p for p in inspect.signature(func).parameters if p != "self"]
    overloads = entry.get("overloads") or []
    if (
        overloads
        and params not in overloads
        and not any(params == o[: len(params)] for o in overloads)
    ):
        raise StandinSignatureError(
            f"{cls_name}.{name}({', '.join(params)}) matches no TensorRT {version} overload: {overloads}"
        )


def _version_class(version: str, name: str, impl: type, namespace: dict) -> type | None:
    """A subclass of ``impl`` exposing only what TensorRT ``version`` has, or ``None``."""
    entry = class_entry(version, name)
    if entry is None:
        return None
    real_attrs = entry.get("attrs", {})
    hidden = {}
    for attr, value in vars(impl).items():
        if attr.startswith("_") and attr != "__init__":
            continue
        if isinstance(value, property):
            real = real_attrs.get(attr)
            if real is None or real.get("kind") != "property":
                hidden[attr] = _missing(name, attr, version)
            elif value.fset is not None and not real.get("settable"):
                raise StandinSignatureError(f"{name}.{attr} is read-only in TensorRT {version}")
            continue
        if callable(value):
            if attr != "__init__" and attr not in real_attrs:
                hidden[attr] = _missing(name, attr, version)
                continue
            if attr == "__init__" and (
                impl
                in (
                    IHostMemory,
                    ParserError,
                    INetworkDefinition,
                    ITimingCache,
                    IOptimizationProfile,
                    IBuilderConfig,
                    ICudaEngine,
                    IExecutionContext,
                    EngineInspector,
                )
            ):
                continue  # created by TensorRT itself, never by the user
            _check_method(version, name, attr, value)
    bases = (impl,)
    return type(name, bases, {**hidden, "__module__": "tensorrt"})


def _missing(cls: str, attr: str, version: str) -> property:
    def fail(self):
        raise AttributeError(
            f"'tensorrt.{cls}' object has no attribute '{attr}' (TensorRT {version})"
        )

    return property(fail)


def _enum(version: str, name: str, members: list[str]) -> type:
    return enum.IntEnum(name, {m: i for i, m in enumerate(members)}, module="tensorrt")


#: The stand-in's "GPU", recorded in timing caches (a cache from another device is refused).
STANDIN_DEVICE = "stand-in GPU (sm_90)"


def build_module(version: str, *, host_memory: bool = False) -> types.ModuleType:
    """A ``tensorrt`` module for ``version`` (one of :data:`SUPPORTED_VERSIONS`).

    ``host_memory=True`` lets engines read and write host buffers (CPU-only tests, explicitly);
    otherwise only memory registered with :func:`register_device_memory` is "device" memory.
    """
    global _CURRENT
    surface = load_surface(version)["module"]
    module = types.ModuleType("tensorrt", f"deploy-ran test stand-in for TensorRT {version}")
    module.__spec__ = importlib.machinery.ModuleSpec("tensorrt", None)  # find_spec() works on it
    module.__version__ = f"{version}+standin"
    module.__standin__ = True
    module.__standin_state__ = {
        "host_memory": host_memory,
        "device_memory": {},
        "device": STANDIN_DEVICE,
        "logger": None,
    }
    for name in _ENUMS:
        if name in surface:
            setattr(module, name, _enum(version, name, surface[name]["members"]))
    for name, impl in _IMPLEMENTATIONS.items():
        cls = _version_class(version, name, impl, vars(module))
        if cls is not None:
            setattr(module, name, cls)
    severity = _enum(version, "Severity", surface["ILogger"]["attrs"]["Severity"]["members"])
    for cls_name in ("ILogger", "Logger"):
        cls = getattr(module, cls_name)
        cls.Severity = severity
        for member in severity:
            setattr(cls, member.name, member)
    _CURRENT = module
    return module


def install(monkeypatch, version: str, *, host_memory: bool = False) -> types.ModuleType:
    """Put the stand-in for ``version`` in ``sys.modules['tensorrt']`` for one test."""
    module = build_module(version, host_memory=host_memory)
    monkeypatch.setitem(sys.modules, "tensorrt", module)
    return module
