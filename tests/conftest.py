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
            cache[key].eager = None  # the eager model is not needed here; keep memory flat
        return cache[key]

    return export
