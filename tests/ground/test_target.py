"""Target: what the user named, its kind decided once and a file's precision read once."""

from __future__ import annotations

import json

import pytest

import deploy_ran.artifacts as artifacts
from deploy_ran.errors import DeployRanError, UnknownModelError
from deploy_ran.target import Target
from deploy_ran.trt_compat import SIDECAR_FORMAT


def test_kinds(cifar_onnx, tmp_path):
    assert Target.parse("ran56_cifar").kind == "model"
    onnx_target = Target.parse(cifar_onnx)
    assert (onnx_target.kind, onnx_target.path, onnx_target.precision) == (
        "onnx",
        cifar_onnx,
        "fp32",
    )
    served = Target.parse("triton+grpc://host:8001/ran92")
    assert (served.kind, served.scheme, served.precision) == ("served", "triton+grpc", None)
    plan = tmp_path / "m.int8.plan"
    plan.write_bytes(b"engine")
    sidecar = {"format": SIDECAR_FORMAT, "precision": "int8"}
    (tmp_path / "m.int8.plan.json").write_text(json.dumps(sidecar))
    assert (Target.parse(plan).kind, Target.parse(plan).precision) == ("engine", "int8")
    assert Target.parse(onnx_target) is onnx_target and str(onnx_target) == str(cifar_onnx)


def test_precision_is_read_once(cifar_onnx, monkeypatch):
    calls = []
    real = artifacts.load_onnx
    monkeypatch.setattr(artifacts, "load_onnx", lambda *a, **k: calls.append(a) or real(*a, **k))
    target = Target.parse(cifar_onnx)
    assert [target.precision for _ in range(3)] == ["fp32"] * 3
    assert len(calls) == 1


def test_bad_targets_say_what_was_expected(tmp_path):
    with pytest.raises(UnknownModelError, match="ran29") as err:
        Target.parse("ran29")
    assert "ran92" in err.value.hint
    with pytest.raises(DeployRanError, match="does not exist"):
        Target.parse(tmp_path / "missing.plan")
    odd = tmp_path / "weights.bin"
    odd.write_bytes(b"\0")
    with pytest.raises(DeployRanError, match="Cannot tell what"):
        Target.parse(odd)
