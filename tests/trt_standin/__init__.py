"""A test-only stand-in for the TensorRT classes deploy-ran touches, backed by ONNX Runtime.

TensorRT cannot be installed on CI machines (no GPU, no native libraries), yet the code that
drives it — network flags, parser errors, profiles, builder config, timing cache, sidecar, engine
loading, tensor addresses, version branches — must run somewhere. This package builds a
``tensorrt`` module for one TensorRT version from the real API surface of that version
(``tests/data/trt_api/tensorrt-<version>.json``, dumped from the real bindings):

* only classes, attributes and enum members that exist in that version are exposed, so code that
  touches something a version lacks fails here as it would on that version;
* every method's parameter names are checked against the real signatures when the module is
  built, so keyword arguments that TensorRT would reject are rejected here too;
* "engines" are the ONNX file plus the build settings, executed with ONNX Runtime on the CPU,
  reading and writing the tensor addresses the code sets, like ``execute_async_v3`` does;
* it refuses what TensorRT refuses: host addresses (unless a test opts into host buffers with
  ``install(..., host_memory=True)``), a stream handle that is not an int, a plain plan from
  another version, a version-compatible plan without ``engine_host_code_allowed``, a timing
  cache from another device (``set_timing_cache`` returns False), an invalid profile (-1, or a
  raised ``set_shape``); tensor dtypes are the ONNX's, and the inspector reports fused layers,
  with formats only once an execution context with input shapes is attached.

Nothing produced here is a TensorRT result, and nothing here is importable from the package: it
lives under ``tests/`` only. Its ``__version__`` carries a ``+standin`` suffix so that a sidecar or
report written during a test can never be mistaken for a real build.
"""

from __future__ import annotations

from tests.trt_standin.module import build_module, install, register_device_memory
from tests.trt_standin.surface import SUPPORTED_VERSIONS, load_surface

__all__ = [
    "SUPPORTED_VERSIONS",
    "build_module",
    "install",
    "load_surface",
    "register_device_memory",
]
