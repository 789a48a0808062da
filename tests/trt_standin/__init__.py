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
  reading and writing the tensor addresses the code sets, like ``execute_async_v3`` does.

Nothing produced here is a TensorRT result, and nothing here is importable from the package: it
lives under ``tests/`` only. Its ``__version__`` carries a ``+standin`` suffix so that a sidecar or
report written during a test can never be mistaken for a real build.
"""

from __future__ import annotations

from tests.trt_standin.module import build_module, install
from tests.trt_standin.surface import SUPPORTED_VERSIONS, load_surface

__all__ = ["SUPPORTED_VERSIONS", "build_module", "install", "load_surface"]
