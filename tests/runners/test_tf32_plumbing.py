"""--allow-tf32 reaches every runner it applies to, and each runner records its arithmetic."""

from __future__ import annotations

import contextlib

from deploy_ran.bench import BenchSettings
from deploy_ran.bench import run as bench_run
from deploy_ran.bench.targets import resolve_bench_targets
from deploy_ran.runners.torch_runner import TorchRunner


def test_bench_configs_carry_allow_tf32_only_when_asked(cifar_onnx):
    plain = BenchSettings("ran56_cifar", image_size=32, torch_precisions=("fp32", "fp16"))
    asked = BenchSettings(
        "ran56_cifar", image_size=32, torch_precisions=("fp32", "fp16"), allow_tf32=True
    )
    for settings, expected in ((plain, False), (asked, True)):
        torch_cfgs = bench_run._torch_configs(settings, 32)
        assert torch_cfgs and all(c.kwargs.get("allow_tf32", False) is expected for c in torch_cfgs)
        with contextlib.ExitStack() as stack:
            plan = resolve_bench_targets("ran56_cifar", (cifar_onnx,), ("torch", "ort"), 32)
            ort_cfgs = bench_run._ort_configs(settings, plan, stack, [], lambda _m: None)
        assert ort_cfgs and all(c.kwargs.get("allow_tf32", False) is expected for c in ort_cfgs)


def test_torch_runner_records_tf32_only_on_cuda():
    with TorchRunner("ran56_cifar", image_size=32, allow_tf32=True) as runner:
        assert runner.describe()["tf32"] is None  # TF32 is a CUDA arithmetic: not on the CPU
