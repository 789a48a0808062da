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
    def __init__(self, data: bytes = b"") -> None:
        self._entries = json.loads(data.decode()) if data else {"builds": 0}

    def serialize(self):
        return IHostMemory(json.dumps(self._entries).encode())


class IOptimizationProfile:
    def __init__(self) -> None:
        self._shapes: dict[str, tuple] = {}

    def set_shape(self, input, min, opt, max):  # noqa: A002 - TensorRT's parameter names
        self._shapes[input] = (tuple(min), tuple(opt), tuple(max))

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
            self._errors.append(ParserError(-1, "", "", f"failed to parse ONNX: {exc}"))
            return False
        for index, node in enumerate(proto.graph.node):
            if node.domain in self.UNSUPPORTED_DOMAINS:
                self._errors.append(
                    ParserError(
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
        self._profiles.append(profile)
        return len(self._profiles) - 1

    def create_timing_cache(self, serialized_timing_cache):
        try:
            return ITimingCache(bytes(serialized_timing_cache))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return None

    def set_timing_cache(self, cache, ignore_mismatch):
        self._cache = cache
        return True

    def get_timing_cache(self):
        return self._cache


class Builder:
    def __init__(self, logger) -> None:
        self._logger = logger

    def create_network(self, flags):
        return INetworkDefinition(flags)

    def create_builder_config(self):
        return IBuilderConfig()

    def create_optimization_profile(self):
        return IOptimizationProfile()

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
            "flags": network._flags,
            "profiles": [p._shapes for p in config._profiles],
            "tf32": any(getattr(f, "name", "") == "TF32" for f in config._flags),
            "detailed": getattr(config._verbosity, "name", "") == "DETAILED",
        }
        return IHostMemory(PLAN_MAGIC + json.dumps(header).encode() + b"\n" + network._onnx_bytes)


class Runtime:
    def __init__(self, logger) -> None:
        self._logger = logger

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
        return ICudaEngine(header, proto, onnx_bytes)


class ICudaEngine:
    def __init__(self, header: dict, proto: onnx.ModelProto, onnx_bytes: bytes) -> None:
        import onnxruntime as ort

        self._header = header
        self._proto = proto
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
        return _module().DataType.FLOAT

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
        return IExecutionContext(self)

    def create_engine_inspector(self):
        return EngineInspector(self)


class EngineInspector:
    def __init__(self, engine: ICudaEngine) -> None:
        self._engine = engine

    def get_engine_information(self, format):  # noqa: A002 - TensorRT's parameter name
        layers = []
        for node in self._engine._proto.graph.node:
            kind = "Int8" if node.op_type in ("QuantizeLinear",) else "Float"
            layers.append(
                {
                    "Name": node.name,
                    "LayerType": node.op_type,
                    "Outputs": [{"Format/Datatype": kind}],
                }
            )
        return json.dumps({"Layers": layers, "Bindings": self._engine._names})


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
        engine = self._engine
        feeds = {}
        for vi in engine._inputs:
            if vi.name not in self._shapes or vi.name not in self._addresses:
                return False
            feeds[vi.name] = _read(self._addresses[vi.name], self._shapes[vi.name]).copy()
        outputs = engine._session.run([o.name for o in engine._outputs], feeds)
        for vi, value in zip(engine._outputs, outputs):
            if vi.name not in self._addresses:
                return False
            np.copyto(_read(self._addresses[vi.name], value.shape), value.astype(np.float32))
        return True


def _read(address: int, shape: tuple) -> np.ndarray:
    """A float32 view of host memory at ``address`` (the stand-in's "device" is the CPU)."""
    count = int(np.prod(shape)) if shape else 1
    buffer = (ctypes.c_float * count).from_address(address)
    return np.ctypeslib.as_array(buffer).reshape(shape)


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


def build_module(version: str) -> types.ModuleType:
    """A ``tensorrt`` module for ``version`` (one of :data:`SUPPORTED_VERSIONS`)."""
    global _CURRENT
    surface = load_surface(version)["module"]
    module = types.ModuleType("tensorrt", f"deploy-ran test stand-in for TensorRT {version}")
    module.__spec__ = importlib.machinery.ModuleSpec("tensorrt", None)  # find_spec() works on it
    module.__version__ = f"{version}+standin"
    module.__standin__ = True
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


def install(monkeypatch, version: str) -> types.ModuleType:
    """Put the stand-in for ``version`` in ``sys.modules['tensorrt']`` for one test."""
    module = build_module(version)
    monkeypatch.setitem(sys.modules, "tensorrt", module)
    return module
