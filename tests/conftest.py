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
SMALL_SIZES = {"RAN": 64, "RAN-CIFAR": 32}


def small_size(name: str) -> int:
    from deploy_ran.models import get_spec

    spec = get_spec(name)
    return SMALL_SIZES.get(spec.family, spec.image_size)


@pytest.fixture(scope="session")
def export_cache(tmp_path_factory):
    """``export(name, **kwargs)`` → ExportResult, memoised for the whole session."""
    from exporters.onnx import export_onnx

    cache: dict[tuple, object] = {}
    folder = tmp_path_factory.mktemp("exports")

    def export(name: str, **kwargs):
        key = (name, tuple(sorted(kwargs.items())))
        if key not in cache:
            path = folder / f"{name}-{len(cache)}.onnx"
            cache[key] = export_onnx(name, path, **kwargs)
        return cache[key]

    return export


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
