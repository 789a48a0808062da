"""ONNX Runtime's TensorRT provider: provider order, caches, explicit profile, CUDA-graph limits.

The provider is not installed on CPU machines, so these tests check the options the runner hands
to ONNX Runtime (and its refusal of a second batch size under CUDA graphs), not a TensorRT build.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from deploy_ran.runners.base import RunnerError
from deploy_ran.runners.ort_runner import (
    OrtRunner,
    default_trt_cache_dir,
    resolve_providers,
    tensorrt_provider_options,
)

ALL = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]


def test_cuda_follows_tensorrt(monkeypatch):
    monkeypatch.setattr(ort, "get_available_providers", lambda: ALL)
    assert resolve_providers("tensorrt", "cuda") == ALL
    assert resolve_providers("tensorrt,cpu", "cuda") == ALL
    # Without a CUDA provider the CPU is the only fallback.
    monkeypatch.setattr(ort, "get_available_providers", lambda: [ALL[0], ALL[2]])
    assert resolve_providers("tensorrt", "cuda") == [ALL[0], ALL[2]]


def test_tensorrt_provider_options(cifar_onnx, tmp_path):
    proto = onnx.load(cifar_onnx, load_external_data=False)
    cache = default_trt_cache_dir(cifar_onnx)
    assert cache.name == cifar_onnx.name + ".ort-trt-cache"
    opts = tensorrt_provider_options(
        proto,
        device_id=1,
        stream_handle=1234,
        precision="fp16",
        cuda_graph=False,
        cache_dir=tmp_path,
        profile_batches=(1, 4, 16),
    )
    assert opts["trt_profile_min_shapes"] == "input:1x3x32x32"
    assert opts["trt_profile_opt_shapes"] == "input:4x3x32x32"
    assert opts["trt_profile_max_shapes"] == "input:16x3x32x32"
    assert opts["trt_engine_cache_enable"] == opts["trt_timing_cache_enable"] == "True"
    assert opts["trt_engine_cache_path"] == opts["trt_timing_cache_path"] == str(tmp_path)
    assert opts["device_id"] == "1" and opts["user_compute_stream"] == "1234"
    assert opts["trt_fp16_enable"] == "True" and "trt_cuda_graph_enable" not in opts
    with pytest.raises(RunnerError, match="not ordered"):
        tensorrt_provider_options(
            proto,
            device_id=0,
            stream_handle=None,
            precision="fp32",
            cuda_graph=False,
            cache_dir=tmp_path,
            profile_batches=(8, 4, 16),
        )


def test_tensorrt_provider_graphs_hold_one_batch_size(cifar_onnx):
    # The graph bookkeeping is the same on the CPU; only the provider name is what a GPU gives.
    runner = OrtRunner(cifar_onnx, threads=1, io_binding=True)
    runner._cuda_graph = True
    runner._providers = ["TensorrtExecutionProvider", "CUDAExecutionProvider"]
    runner.stage(np.zeros((1, 3, 32, 32), np.float32))
    runner.stage(np.ones((1, 3, 32, 32), np.float32))  # same batch: same graph
    with pytest.raises(RunnerError, match="cannot replay another batch size"):
        runner.stage(np.zeros((2, 3, 32, 32), np.float32))
    runner._providers = ["CUDAExecutionProvider"]  # the CUDA provider keeps one graph per size
    runner.stage(np.zeros((2, 3, 32, 32), np.float32))
    runner.close()
