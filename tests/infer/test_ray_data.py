"""infer --ray: Ray Data writes the records local infer writes, records bad images, resumes.

One local Ray for the module, bound to 127.0.0.1 with no dashboard and usage stats off, two CPUs
(actors get fractional CPUs so the decode tasks are never starved), a no-progress timeout so a
stalled job fails instead of hanging, shut down at the end.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deploy_ran.errors import DeployRanError
from deploy_ran.infer import NONFINITE_ERROR, producer_path, run_inference
from tests.paths import ROOT


@pytest.fixture(scope="module")
def local_ray():
    # Ray's servers listen on loopback only if its node IP stays 127.0.0.1, which needs this at
    # ray's first import (see deploy_ran.infer.ray_session.LOOPBACK_ONLY_ENV).
    env = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        ray = pytest.importorskip("ray", reason="infer --ray needs the [ray] extra")
        pytest.importorskip("ray.data", reason="infer --ray needs the [ray] extra")
        ray.init(
            address="local",
            include_dashboard=False,
            # Logical CPUs: two actors reserve one each (their runner threads) and decoding keeps
            # the rest; the processes still share the two physical cores.
            num_cpus=4,
            num_gpus=0,
            _node_ip_address="127.0.0.1",
            # Workers import this checkout's deploy_ran (not another install), share two cores.
            runtime_env={"env_vars": {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}},
            log_to_driver=False,
        )
        ctx = ray.data.DataContext.get_current()
        timeout = ctx.execution_no_progress_timeout_s
        try:
            assert ray.util.get_node_ip_address() == "127.0.0.1", "Ray would listen beyond loopback"
            ctx.execution_no_progress_timeout_s = 180
            yield
        finally:
            ctx.execution_no_progress_timeout_s = timeout
            ray.shutdown()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def many_images(tmp_path_factory):
    """30 small RGB/grey images of varied sizes, one corrupt PNG, one empty JPEG."""
    folder = tmp_path_factory.mktemp("ray_images")
    rng = np.random.default_rng(1)
    for i in range(30):
        shape = (24 + i, 30, 3) if i % 4 else (30, 26)
        Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8)).save(folder / f"im{i:02d}.png")
    (folder / "im11_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (folder / "im23_empty.jpg").write_bytes(b"")
    return folder


def _model(checkpoint: Path) -> dict:
    return {"checkpoint": checkpoint, "threads": 1}


def _same_predictions(got: list[dict], want: list[dict]) -> None:
    """Same images in the same order, same errors, same classes/labels, same probabilities."""
    assert [r["path"] for r in got] == [r["path"] for r in want]
    for a, b in zip(got, want):
        assert a.get("error") == b.get("error")
        assert [t["class"] for t in a.get("topk", [])] == [t["class"] for t in b.get("topk", [])]
        assert [t.get("label") for t in a.get("topk", [])] == [
            t.get("label") for t in b.get("topk", [])
        ]
        assert [t["prob"] for t in a.get("topk", [])] == pytest.approx(
            [t["prob"] for t in b.get("topk", [])], abs=2e-6
        )


def _csv(path: Path) -> list[dict]:
    """CSV rows back as JSONL-like records (labels kept), for _same_predictions."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    out = []
    for r in rows:
        rec: dict = {"path": r["path"]}
        if r["error"]:
            rec["error"] = r["error"]
        else:
            rec["topk"] = [
                {
                    "class": int(r[f"class_{k}"]),
                    "label": r[f"label_{k}"],
                    "prob": float(r[f"prob_{k}"]),
                }
                for k in (1, 2, 3)
            ]
        out.append(rec)
    return out


def test_ray_resumes_with_the_predictions_of_local_infer(
    cli, local_ray, cifar_checkpoint, many_images, tmp_path, caplog
):
    """One Ray run through the CLI: two actors finish a torn local output (CSV, labels)."""
    import logging

    caplog.set_level(logging.DEBUG)
    data_level = logging.getLogger("ray.data").level
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(f"class {i}" for i in range(10)) + "\n")
    whole = tmp_path / "whole.csv"
    local = run_inference(
        "ran56_cifar",
        many_images,
        whole,
        batch_size=4,
        topk=3,
        labels=labels,
        workers=0,
        **_model(cifar_checkpoint),
    )
    assert (local.processed, local.failed) == (32, 2)
    part = tmp_path / "part.csv"
    lines = whole.read_text().splitlines(keepends=True)
    part.write_text("".join(lines[:11]) + lines[11][:15])  # header, 10 rows, a torn row
    shutil.copy(producer_path(whole), producer_path(part))  # resume checks what wrote it
    args = ["infer", "ran56_cifar", "--checkpoint", str(cifar_checkpoint), "--threads", "1"]
    args += ["--images", str(many_images), "--output", str(part), "--labels", str(labels)]
    args += ["--topk", "3", "--batch", "4", "--ray", "--workers", "2", "--resume"]
    run = cli(args)
    assert run.exit_code == 0, run.output
    for said in ("22 image(s)", "2 Ray workers", "2 unreadable", "10 already in the output"):
        assert said in run.output, run.output
    got, want = _csv(part), _csv(whole)
    errors = {Path(r["path"]).name: r["error"] for r in got if "error" in r}
    assert set(errors) == {"im11_corrupt.png", "im23_empty.jpg"}  # both after the cut: Ray's
    assert all("not a readable image" in e for e in errors.values())
    _same_predictions(got, want)
    # Ray Data's per-run chatter (execution plan, "finished in", "progress bars disabled")
    # repeats what infer shows: none of it reaches the logs; the levels are restored after.
    chatter = [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("ray.data")
        and (r.levelno < logging.WARNING or "Progress bars disabled" in r.getMessage())
    ]
    assert chatter == []
    assert logging.getLogger("ray.data").level == data_level
    assert not logging.getLogger("ray.data._internal.progress").filters

    again = cli(args)  # nothing left: no dataset, no actors
    assert again.exit_code == 0 and "0 image(s)" in again.output, again.output
    assert part.read_bytes().count(b"\n") == 33
    assert producer_path(part).read_bytes() == producer_path(whole).read_bytes()


def test_ray_refuses_bad_requests(local_ray, cifar_checkpoint, many_images, tmp_path):
    from deploy_ran.infer.ray import run_inference_ray

    out = tmp_path / "x.jsonl"
    model = _model(cifar_checkpoint)
    with pytest.raises(DeployRanError, match="needs GPUs for the workers"):
        run_inference_ray("ran56_cifar", many_images, out, device="cuda", **model)
    with pytest.raises(DeployRanError, match="device='cuda'"):
        run_inference_ray("ran56_cifar", many_images, out, gpus_per_worker=1, **model)
    with pytest.raises(DeployRanError, match="Ray cluster has 0"):
        run_inference_ray(
            "ran56_cifar", many_images, out, device="cuda", gpus_per_worker=1, **model
        )
    with pytest.raises(DeployRanError, match="take all 4 CPUs"):
        run_inference_ray("ran56_cifar", many_images, out, workers=2, cpus_per_worker=2, **model)
    # Checked by the probe task on a worker; the error keeps its hint through Ray.
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\n")
    with pytest.raises(DeployRanError, match="2 labels but the model has 10 classes") as err:
        run_inference_ray("ran56_cifar", many_images, out, labels=labels, **model)
    assert err.value.hint == "One label per class, in class-index order."
    assert not out.exists()
    # A resume refuses an output it cannot tell it wrote, before any actor starts.
    foreign = tmp_path / "foreign.jsonl"
    foreign.write_text('{"path": "x"}\n')
    with pytest.raises(DeployRanError, match="no producer record"):
        run_inference_ray("ran56_cifar", many_images, foreign, resume=True, **model)
    assert foreign.read_text() == '{"path": "x"}\n' and sorted(os.listdir(tmp_path)) == [
        "foreign.jsonl",
        "labels.txt",
    ]


def _infinite_for_dark(cifar_onnx: Path, path: Path) -> Path:
    """The cifar graph with logits + log(relu(first input pixel)): -inf logits for an image whose
    corner is darker than the normalisation mean, finite (shifted) logits for a bright one."""
    import onnx
    from onnx import helper, numpy_helper

    proto = onnx.load(cifar_onnx)
    pixels = proto.graph.input[0].name
    out = proto.graph.output[0]
    inner = out.name + "_inner"
    for node in proto.graph.node:
        node.output[:] = [inner if o == out.name else o for o in node.output]
    consts = {"s0": [0, 0, 0], "s1": [1, 1, 1], "ax": [1, 2, 3], "col": [-1, 1]}
    for name, value in consts.items():
        proto.graph.initializer.append(numpy_helper.from_array(np.array(value, np.int64), name))
    proto.graph.node.extend(
        [
            helper.make_node("Slice", [pixels, "s0", "s1", "ax"], ["corner"]),
            helper.make_node("Reshape", ["corner", "col"], ["corner_col"]),
            helper.make_node("Relu", ["corner_col"], ["corner_pos"]),
            helper.make_node("Log", ["corner_pos"], ["shift"]),
            helper.make_node("Add", [inner, "shift"], [out.name]),
        ]
    )
    onnx.save(proto, path)
    return path


def test_ray_writes_the_bytes_of_local_infer_for_odd_names_and_bad_logits(
    local_ray, cifar_onnx, tmp_path
):
    """Names that are not UTF-8 and non-finite logits: same file, same producer record."""
    from deploy_ran.infer.ray import run_inference_ray

    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(3)
    raw_names = [b"a.png", b"caf\xe9.png", b"\xff.png", "\u00fc.png".encode(), b"z.png"]
    raw_names += [f"n{i}.png".encode() for i in range(7)]
    for n, raw in enumerate(raw_names):
        low = 200 if n % 3 else 0  # one image in three dark: its logits are -inf
        img = Image.fromarray(rng.integers(low, low + 50, (34, 34, 3), dtype=np.uint8))
        img.save(os.fsdecode(os.fsencode(folder) + b"/" + raw))
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    model = _infinite_for_dark(cifar_onnx, tmp_path / "inf.onnx")
    local = run_inference(model, folder, tmp_path / "local.jsonl", workers=0, threads=1, topk=3)
    ray = run_inference_ray(model, folder, tmp_path / "ray.jsonl", threads=1, topk=3, batch_size=4)
    records = [json.loads(line) for line in (tmp_path / "local.jsonl").read_text().splitlines()]
    bad = [r for r in records if r.get("error") == NONFINITE_ERROR]
    assert len(bad) == 4 and local.model_errors == 4  # the dark ones, and only those
    assert sum("path_hex" in r for r in records) == 2
    assert (ray.model_errors, ray.failed, ray.ok) == (local.model_errors, 1, False)
    assert (tmp_path / "ray.jsonl").read_bytes() == (tmp_path / "local.jsonl").read_bytes()
    assert ray.producer == local.producer


def test_without_ray(cli, monkeypatch, many_images):
    """Ray options need --ray; a missing Ray names the extra to install (no Ray started)."""
    from deploy_ran.infer.ray_session import import_ray

    ray_only = cli(["infer", "ran56_cifar", "--images", str(many_images), "--address", "auto"])
    assert ray_only.exit_code == 2 and "to --ray only" in ray_only.output
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(DeployRanError, match="not installed") as err:
        import_ray()
    assert "deploy-ran[ray]" in err.value.hint
