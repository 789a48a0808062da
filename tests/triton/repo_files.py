"""Files a Triton model repository is written from, and its config read back, for the tests of
``triton-repo`` (``tests/triton/``, ``tests/exporters/test_triton_gpu_configs.py``).

Reading a config back needs Triton's schema, which comes with ``tritonclient`` (the ``triton``
extra): without it, a test module importing this one is skipped, not failed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("tritonclient.grpc", reason="the triton extra (tritonclient) is not installed")

from deploy_ran.trt_compat import SIDECAR_FORMAT  # noqa: E402
from exporters.triton import parse  # noqa: E402


def fake_plan(
    tmp_path: Path,
    *,
    sidecar: bool = True,
    source: Path | None = None,
    profile: tuple[int, int, int] = (1, 8, 16),
) -> Path:
    """Plan bytes are opaque to the writer: a sidecar (and its source ONNX) describe them."""
    plan = tmp_path / "tiny.int8.plan"
    plan.write_bytes(b"not a real engine: the writer copies it, Triton would load it")
    if sidecar:
        from deploy_ran.fileio import sha256_file

        side = {
            "format": SIDECAR_FORMAT,
            "format_version": 1,
            "precision": "int8",
            "model": "tiny",
            "num_classes": 4,
            "outputs": ["logits", "attention_map"],
            "input": {
                "name": "input",
                "dtype": "float32",
                "shape": [-1, 3, 8, 8],
                "profile": {k: [b, 3, 8, 8] for k, b in zip(("min", "opt", "max"), profile)},
            },
            "source_onnx": {
                "path": str(source) if source else "gone.onnx",
                "sha256": sha256_file(source) if source else "0",
                "metadata": {"model": "tiny"},
            },
        }
        plan.with_name(plan.name + ".json").write_text(json.dumps(side))
    return plan


def read_config(repo: Path, name: str):
    return parse((repo / name / "config.pbtxt").read_text())


def dims(entry) -> list[int]:
    return list(entry.dims)
