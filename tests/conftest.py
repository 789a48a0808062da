"""Shared fixtures: exports are slow (tens of seconds), so each distinct export runs once per session."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python -m pytest` from a clean clone without installing
    sys.path.insert(0, str(ROOT))

# Two cores on CI: let torch and ONNX Runtime share them instead of oversubscribing under xdist.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)

# Smallest input sizes that keep every mask level of a model meaningful, for fast tests.
SMALL_SIZES = {"RAN": 64, "RAN-CIFAR": 32, "ABN": 64, "ABN-CIFAR": 32, "A&R": 32}


def small_size(name: str) -> int:
    from deploy_ran.models import get_spec

    spec = get_spec(name)
    return SMALL_SIZES.get(spec.family, spec.image_size)


@pytest.fixture(scope="session")
def export_cache(tmp_path_factory):
    """``export(name, **kwargs)`` → ExportResult, checked against eager PyTorch (``result.check``),
    memoised for the whole session. ``check=False`` skips the comparison."""
    from deploy_ran.compare.runner_checks import RunnerChecks
    from exporters.onnx import export_onnx

    cache: dict[tuple, object] = {}
    folder = tmp_path_factory.mktemp("exports")

    def export(name: str, **kwargs):
        key = (name, tuple(sorted(kwargs.items())))
        if key not in cache:
            path = folder / f"{name}-{len(cache)}.onnx"
            options = dict(kwargs)
            check = RunnerChecks().check_export if options.pop("check", True) else None
            cache[key] = export_onnx(name, path, check=check, **options)
            cache[key].eager = None  # the eager model is not needed here; keep memory flat
        return cache[key]

    return export


# --- attention families: weights whose attention maps are not saturated --------------------------


def calibrate_batchnorm(
    model: torch.nn.Module,
    size: int,
    seed: int = 0,
    batch: int = 8,
    residual_scale: float = 0.2,
) -> None:
    """Give random weights the statistics of a trained network, then eval().

    Randomly initialised deep networks in eval mode (running mean 0, variance 1) let activations
    grow layer after layer until sigmoids and softmaxes saturate to exact 0/1, so a parity check of
    an attention map would compare constants. Every BN's running statistics are therefore set to
    those of one seeded random batch. With BN statistics calibrated and full-size residual
    branches, a 164-layer random ResNet is chaotic (FP32 PyTorch itself is ~5e-4 from FP64 on
    ABN-110), which no FP32 runtime can match to 1e-4; trained ResNets have small residual branches,
    so the last layer of each residual branch is scaled by ``residual_scale`` first.
    """
    from deploy_ran.models.abn import Bottleneck
    from deploy_ran.models.attend_rectify import WideBlock

    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, Bottleneck):
                m.bn3.weight.mul_(residual_scale)
            elif isinstance(m, WideBlock):
                m.conv1.weight.mul_(residual_scale)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 3, size, size, generator=gen)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative average: one batch sets the statistics exactly
    model.train()
    with torch.no_grad():
        model(x)
    model.eval()


@pytest.fixture(scope="session")
def calibrated_checkpoint(tmp_path_factory):
    """``make(name, size)`` → path of a seeded, BN-calibrated state dict, memoised."""
    from deploy_ran.models import create_model, get_spec

    cache: dict[tuple, Path] = {}
    folder = tmp_path_factory.mktemp("checkpoints")

    def make(name: str, size: int | None = None) -> Path:
        size = size or get_spec(name).image_size
        if (name, size) not in cache:
            torch.manual_seed(0)
            model = create_model(name, image_size=size)
            calibrate_batchnorm(model, size)
            path = folder / f"{name}-{size}.pt"
            torch.save(model.state_dict(), path)
            cache[(name, size)] = path
        return cache[(name, size)]

    return make


# --------------------------------------------------------------------------------------------
# Runners, verify, bench, infer: one checkpoint and its ONNX export shared by their tests.


@pytest.fixture(scope="session")
def cifar_checkpoint(tmp_path_factory):
    """Seeded ran56_cifar weights with non-trivial BatchNorm statistics, saved as a state_dict.

    Fresh BatchNorm layers (mean 0, var 1, weight 1, bias 0) make every input give nearly the same
    logits; randomised statistics make outputs depend on the input, as trained weights do.
    """
    from deploy_ran.models import create_model

    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = create_model("ran56_cifar")
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.data.uniform_(0.5, 1.5)
                module.bias.data.normal_(0.0, 0.2)
                module.running_mean.normal_(0.0, 0.2)
                module.running_var.uniform_(0.5, 2.0)
    path = tmp_path_factory.mktemp("checkpoints") / "ran56_cifar.pt"
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="session")
def cifar_onnx(export_cache, cifar_checkpoint):
    """ran56_cifar at 32 px exported from ``cifar_checkpoint`` (dynamic batch)."""
    return export_cache("ran56_cifar", checkpoint=str(cifar_checkpoint)).path


@pytest.fixture
def image_folder(tmp_path):
    """12 small RGB/grey images plus two unreadable files, for verify and infer."""
    import numpy as np
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        shape = (36 + i, 40, 3) if i % 3 else (40, 36)
        Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8)).save(folder / f"im{i:02d}.png")
    (folder / "im05_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (folder / "im09_empty.jpg").write_bytes(b"")
    return folder


# --------------------------------------------------------------------------------------------
# The command line, run in process: one invoker for every CLI test.


@pytest.fixture(scope="session")
def cli():
    """The CLI invoker (``tests/cli_invoker.py``): ``result = cli(["bench", "ran56_cifar"])``."""
    from tests.cli_invoker import CliInvoker

    return CliInvoker()
