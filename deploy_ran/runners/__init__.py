"""One interface, several backends: eager PyTorch, ONNX Runtime, TensorRT, a Triton server.

>>> from deploy_ran.runners import load_runner
>>> with load_runner("ran92.onnx") as runner:          # doctest: +SKIP
...     print(runner.input_spec, runner.precision)
...     logits = runner.run(batch)["logits"]

Backends import lazily: TensorRT and CUDA are only touched by the runners that need them.
"""

from deploy_ran.runners.base import (
    BackendUnavailableError,
    BaseRunner,
    InputSpecError,
    RunnerError,
    TensorSpec,
)
from deploy_ran.runners.loader import BACKENDS, backend_for, load_runner

__all__ = [
    "BACKENDS",
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
    "load_runner",
]


def __getattr__(name: str):
    if name == "TorchRunner":
        from deploy_ran.runners.torch_runner import TorchRunner

        return TorchRunner
    if name == "OrtRunner":
        from deploy_ran.runners.ort_runner import OrtRunner

        return OrtRunner
    if name == "ReferenceRunner":
        from deploy_ran.runners.reference_runner import ReferenceRunner

        return ReferenceRunner
    if name == "TrtRunner":
        from deploy_ran.runners.trt_runner import TrtRunner

        return TrtRunner
    if name == "TritonRunner":
        from deploy_ran.runners.triton_runner import TritonRunner

        return TritonRunner
    raise AttributeError(name)
