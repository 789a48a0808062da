"""One interface, several backends: eager PyTorch, ONNX Runtime, TensorRT, a Triton server.

>>> from deploy_ran.runners import load_runner
>>> with load_runner("ran92.onnx") as runner:          # doctest: +SKIP
...     print(runner.input_spec, runner.precision)
...     logits = runner.run(batch)["logits"]

Each backend module registers itself (``register_backend`` at its bottom, see ``registry.py``);
the import list below registers them all, as ``deploy_ran/models/__init__.py`` does for models.
A new backend: write its module, register it there, add it to this list. TensorRT, CUDA and the
Triton client stay optional: backend modules import them only when a runner is built.
"""

# isort: off
from deploy_ran.runners.base import (
    BackendUnavailableError,
    BaseRunner,
    InputSpecError,
    RunnerError,
    TensorSpec,
)
from deploy_ran.runners.registry import (
    Backend,
    backend_for,
    backend_of,
    get_backend,
    honoured_options,
    list_backends,
    load_runner,
    register_backend,
    served_schemes,
)

# The registration list: one import per backend, in order of precedence (first match wins).
from deploy_ran.runners import torch_runner  # noqa: F401
from deploy_ran.runners import ort_runner  # noqa: F401
from deploy_ran.runners import trt_runner  # noqa: F401
from deploy_ran.runners import triton_runner  # noqa: F401
# isort: on

from deploy_ran.runners.ort_runner import OrtRunner  # noqa: E402
from deploy_ran.runners.reference_runner import ReferenceRunner  # noqa: E402
from deploy_ran.runners.torch_runner import TorchRunner  # noqa: E402
from deploy_ran.runners.triton_runner import TritonRunner  # noqa: E402
from deploy_ran.runners.trt_runner import TrtRunner  # noqa: E402

__all__ = [
    "Backend",
    "BackendUnavailableError",
    "BaseRunner",
    "InputSpecError",
    "OrtRunner",
    "ReferenceRunner",
    "RunnerError",
    "TensorSpec",
    "TorchRunner",
    "TritonRunner",
    "TrtRunner",
    "backend_for",
    "backend_of",
    "get_backend",
    "honoured_options",
    "list_backends",
    "load_runner",
    "register_backend",
    "served_schemes",
]
