"""``triton-repo`` and ``TritonRunner``, checked against a real ``tritonserver``.

The server is Triton 2.51.0 from the ``nvidia-pytriton`` wheel (see ``tests/triton_server.py``),
which has only the Python backend: Triton's ``onnxruntime`` and ``tensorrt_plan`` backends exist
only in NVIDIA's container. So the served copy of a written ONNX model has its ``platform``
swapped for a small Python-backend model that runs the same ``model.onnx`` with ONNX Runtime
(``ORT_STANDIN`` below); everything else in the config (inputs, outputs, dims, max_batch_size,
dynamic batching, instance group, warmup, parameters) is served exactly as written, and the
``--preprocess`` model and ensemble are served unchanged.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

pytest.importorskip("tritonclient.grpc", reason="the triton extra (tritonclient) is not installed")

from deploy_ran.compare.metrics import compare  # noqa: E402
from deploy_ran.errors import DeployRanError  # noqa: E402
from deploy_ran.runners import (
    backend_for,  # noqa: E402
    load_runner,  # noqa: E402
)
from deploy_ran.runners.triton_runner import TritonRunner, parse_target  # noqa: E402
from deploy_ran.trt_compat import SIDECAR_FORMAT  # noqa: E402
from exporters.triton import RepoOptions, TritonRepoError, parse, write_repository  # noqa: E402
from tests import triton_server  # noqa: E402

FP32_REL_L2 = 1e-4

ORT_STANDIN = '''
"""Test stand-in for Triton's onnxruntime backend: the same model.onnx, run by ONNX Runtime."""
import os
import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        folder = os.path.join(args["model_repository"], args["model_version"])
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        self.session = ort.InferenceSession(
            os.path.join(folder, "model.onnx"), opts, providers=["CPUExecutionProvider"]
        )
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.outputs = [o.name for o in self.session.get_outputs()]

    def execute(self, requests):
        # Requests the dynamic batcher grouped run as one ONNX Runtime batch, then split.
        feeds = [
            {n: pb_utils.get_input_tensor_by_name(r, n).as_numpy() for n in self.inputs}
            for r in requests
        ]
        sizes = [f[self.inputs[0]].shape[0] for f in feeds]
        batch = {n: np.concatenate([f[n] for f in feeds]) for n in self.inputs}
        results = self.session.run(self.outputs, batch)
        responses, start = [], 0
        for size in sizes:
            tensors = [
                pb_utils.Tensor(n, np.array(r[start : start + size], copy=True))
                for n, r in zip(self.outputs, results)
            ]
            responses.append(pb_utils.InferenceResponse(tensors))
            start += size
        return responses
'''


# ------------------------------------------------------------------------------ small ONNX files


def tiny_onnx(
    path: Path, *, batch: int | str = "batch", precision: str = "fp32", metadata: bool = True
) -> Path:
    """A 2-output conv model (FP32, FP16 weights or INT8 Q/DQ) in seconds, for config tests."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    nodes, inits = [], [numpy_helper.from_array(w, "w")]
    conv_in = "input"
    if precision == "int8":
        inits += [
            numpy_helper.from_array(np.array(0.05, np.float32), "s"),
            numpy_helper.from_array(np.array(0, np.int8), "z"),
        ]
        nodes += [
            helper.make_node("QuantizeLinear", ["input", "s", "z"], ["q"]),
            helper.make_node("DequantizeLinear", ["q", "s", "z"], ["dq"]),
        ]
        conv_in = "dq"
    nodes += [
        helper.make_node("Conv", [conv_in, "w"], ["feat"], pads=[1, 1, 1, 1]),
        helper.make_node("Sigmoid", ["feat"], ["attention_map"]),
        helper.make_node("GlobalAveragePool", ["feat"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, 8, 8])],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 4]),
            helper.make_tensor_value_info("attention_map", TensorProto.FLOAT, [batch, 4, 8, 8]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    if metadata:
        pre = {"resize_size": 8, "crop_size": 8, "mean": [0.5] * 3, "std": [0.25] * 3}
        for key, value in {
            "model": "tiny",
            "num_classes": "4",
            "precision": precision,
            "preprocessing": json.dumps(pre),
        }.items():
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
    onnx.save(model, path)
    return path


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


# ------------------------------------------------------------------------------ config contents


def test_onnx_repository_config_follows_the_file(tmp_path, export_cache):
    """A real export: every output (attention maps too), dims without batch, batching, warmup."""
    exported = export_cache("ran56_cifar", return_attention=True)
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(f"class{i}" for i in range(10)) + "\n")
    repo = tmp_path / "repo"
    result = write_repository(
        [exported.path], repo, RepoOptions(name="ran56", kind="cpu", instances=2, labels=labels)
    )
    assert result.models == ["ran56"]
    assert (repo / "ran56" / "1" / "model.onnx").read_bytes() == exported.path.read_bytes()
    cfg = read_config(repo, "ran56")
    assert (cfg.name, cfg.platform, cfg.max_batch_size) == ("ran56", "onnxruntime_onnx", 32)
    assert [o.name for o in cfg.output] == exported.output_names
    assert len(exported.output_names) > 1  # the attention maps are outputs too
    model = onnx.load(str(exported.path), load_external_data=False)
    declared = {
        v.name: [d.dim_value for d in v.type.tensor_type.shape.dim[1:]]
        for v in list(model.graph.input) + list(model.graph.output)
    }
    for entry in list(cfg.input) + list(cfg.output):
        assert dims(entry) == declared[entry.name], entry.name
        assert entry.data_type == 11  # TYPE_FP32
    assert cfg.dynamic_batching.max_queue_delay_microseconds == 100
    assert not cfg.dynamic_batching.preferred_batch_size
    assert [(g.kind, g.count) for g in cfg.instance_group] == [(2, 2)]  # KIND_CPU, count 2
    (warmup,) = cfg.model_warmup
    assert warmup.batch_size == 1 and warmup.inputs["input"].zero_data
    assert dims(warmup.inputs["input"]) == declared["input"]
    meta = json.loads(cfg.parameters["deploy_ran"].string_value)
    assert meta["onnx_metadata"]["model"] == "ran56_cifar"
    assert meta["precision"] == "fp32"
    logits = next(o for o in cfg.output if o.name == "logits")
    assert logits.label_filename == "labels.txt"
    assert (repo / "ran56" / "labels.txt").read_text().splitlines()[3] == "class3"


def test_static_batch_file_gets_max_batch_size_zero_and_full_dims(tmp_path):
    path = tiny_onnx(tmp_path / "static.onnx", batch=2)
    write_repository([path], tmp_path / "repo", RepoOptions(kind="cpu"))
    cfg = read_config(tmp_path / "repo", "static")
    assert cfg.max_batch_size == 0
    assert dims(cfg.input[0]) == [2, 3, 8, 8]
    assert not cfg.HasField("dynamic_batching")
    with pytest.raises(TritonRepoError, match="static batch"):
        write_repository([path], tmp_path / "repo2", RepoOptions(kind="cpu", max_batch=8))


def test_int8_onnx_with_tensorrt_accelerator_sets_int8_precision_mode(tmp_path):
    path = tiny_onnx(tmp_path / "tiny.int8.onnx", precision="int8")
    result = write_repository([path], tmp_path / "repo", RepoOptions(tensorrt_accelerator=True))
    assert result.models == ["tiny_int8"]
    cfg = read_config(tmp_path / "repo", "tiny_int8")
    (accel,) = cfg.optimization.execution_accelerators.gpu_execution_accelerator
    assert accel.name == "tensorrt"
    params = dict(accel.parameters)
    assert params["precision_mode"] == "INT8"
    assert not any("calibration" in k for k in params)  # the Q/DQ nodes carry the scales
    # An engine cache (no rebuild per restart) and one profile over the whole batch range.
    assert params["trt_engine_cache_enable"] == "1"
    assert params["trt_engine_cache_path"] == params["trt_timing_cache_path"]
    assert params["trt_engine_cache_path"].endswith("/tiny_int8")
    assert params["trt_profile_min_shapes"] == "input:1x3x8x8"
    assert params["trt_profile_opt_shapes"] == "input:8x3x8x8"
    assert params["trt_profile_max_shapes"] == f"input:{cfg.max_batch_size}x3x8x8"
    assert int(params["max_workspace_size_bytes"]) == 1024 * 1024 * 1024
    assert cfg.instance_group[0].kind == 1  # KIND_GPU
    plain = tiny_onnx(tmp_path / "plain.onnx")
    write_repository([plain], tmp_path / "repo", RepoOptions())
    assert not read_config(tmp_path / "repo", "plain").HasField("optimization")


def test_plan_uses_sidecar_profile_and_source_onnx(tmp_path):
    source = tiny_onnx(tmp_path / "tiny.int8.onnx", precision="int8")
    plan = fake_plan(tmp_path, source=source)
    write_repository([plan], tmp_path / "repo", RepoOptions())
    cfg = read_config(tmp_path / "repo", "tiny_int8")
    assert cfg.platform == "tensorrt_plan"
    assert cfg.max_batch_size == 16  # the profile's max, below the default 32
    assert [o.name for o in cfg.output] == ["logits", "attention_map"]
    assert dims(cfg.output[1]) == [4, 8, 8]
    assert (tmp_path / "repo" / "tiny_int8" / "1" / "model.plan").read_bytes() == plan.read_bytes()
    with pytest.raises(TritonRepoError, match="profile max batch 16"):
        write_repository([plan], tmp_path / "r2", RepoOptions(max_batch=64))
    with pytest.raises(TritonRepoError, match="GPU"):
        write_repository([plan], tmp_path / "r3", RepoOptions(kind="cpu"))


def test_plan_without_sidecar_needs_max_batch(tmp_path):
    plan = fake_plan(tmp_path, sidecar=False)
    with pytest.raises(TritonRepoError, match="no sidecar") as err:
        write_repository([plan], tmp_path / "repo", RepoOptions())
    assert "--max-batch" in err.value.hint
    assert not (tmp_path / "repo").exists()
    result = write_repository([plan], tmp_path / "repo", RepoOptions(max_batch=8))
    cfg = read_config(tmp_path / "repo", "tiny_int8")
    assert cfg.max_batch_size == 8 and not cfg.input and not cfg.output  # Triton auto-completes
    assert any("auto-complete" in note for note in result.notes)


def test_bad_names_and_options_are_refused_before_writing(tmp_path):
    path = tiny_onnx(tmp_path / "tiny.onnx")
    for bad in ("../up", "a b", ".hidden", "", "x/y"):
        with pytest.raises(TritonRepoError, match="Triton model name"):
            write_repository([path], tmp_path / "repo", RepoOptions(name=bad))
    with pytest.raises(TritonRepoError, match="--kind"):
        write_repository([path], tmp_path / "repo", RepoOptions(kind="tpu"))
    with pytest.raises(TritonRepoError, match="--kind gpu"):
        write_repository([path], tmp_path / "repo", RepoOptions(kind="cpu", tensorrt_accelerator=True))
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\n")
    with pytest.raises(TritonRepoError, match="2 labels, but the model has 4"):
        write_repository([path], tmp_path / "repo", RepoOptions(labels=labels))
    nometa = tiny_onnx(tmp_path / "nometa.onnx", metadata=False)
    with pytest.raises(TritonRepoError, match="preprocessing"):
        write_repository([nometa], tmp_path / "repo", RepoOptions(preprocess=True))
    with pytest.raises(DeployRanError, match="does not exist"):
        write_repository([tmp_path / "missing.onnx"], tmp_path / "repo", RepoOptions())
    assert not (tmp_path / "repo").exists()


def test_existing_model_folder_is_refused_and_force_keeps_foreign_files(tmp_path):
    path = tiny_onnx(tmp_path / "tiny.onnx")
    repo = tmp_path / "repo"
    write_repository([path], repo, RepoOptions(kind="cpu"))
    foreign = repo / "tiny" / "notes.md"
    foreign.write_text("mine")
    (repo / "tiny" / "2").mkdir()
    before = (repo / "tiny" / "config.pbtxt").read_text()
    with pytest.raises(TritonRepoError, match="already exist") as err:
        write_repository([path], repo, RepoOptions(kind="gpu"))
    assert "--force" in err.value.hint
    assert (repo / "tiny" / "config.pbtxt").read_text() == before
    write_repository([path], repo, RepoOptions(kind="gpu", force=True))
    assert read_config(repo, "tiny").instance_group[0].kind == 1  # KIND_GPU now
    assert foreign.read_text() == "mine" and (repo / "tiny" / "2").is_dir()
    assert not [p for p in repo.rglob("*.tmp")], "no temporary files left behind"


def test_external_weights_become_a_model_folder(tmp_path):
    (tmp_path / "src").mkdir()
    path = tiny_onnx(tmp_path / "src" / "big.onnx")
    model = onnx.load(str(path))
    onnx.save(model, str(path), save_as_external_data=True, location="big.onnx.data",
              size_threshold=0)
    write_repository([path], tmp_path / "repo", RepoOptions(kind="cpu"))
    folder = tmp_path / "repo" / "big" / "1" / "model.onnx"
    assert folder.is_dir()
    assert sorted(p.name for p in folder.iterdir()) == ["big.onnx.data", "model.onnx"]


# ------------------------------------------------------------------------------ target parsing


def test_triton_targets_parse_and_dispatch():
    assert backend_for("triton://localhost:8000/ran92") == "triton"
    t = parse_target("triton+grpc://10.0.0.5/ran92_int8?version=2")
    assert (t.protocol, t.host, t.port, t.model, t.version) == ("grpc", "10.0.0.5", 8001, "ran92_int8", "2")
    assert parse_target("triton://h/m").port == 8000
    for bad in ("triton://host:8000/", "triton://host:8000/a/b", "triton://h/m?protocol=grpc"):
        with pytest.raises(DeployRanError):
            parse_target(bad)
    with pytest.raises(DeployRanError, match="providers"):
        load_runner("triton://127.0.0.1:9/m", providers="cpu")


def test_unreachable_server_is_a_clear_error():
    port = triton_server.free_port()  # nothing listens there
    with pytest.raises(DeployRanError, match="Triton at 127.0.0.1") as err:
        TritonRunner(f"triton://127.0.0.1:{port}/m", timeout=5)
    assert "tritonserver running" in err.value.hint
    assert "server unreachable" in err.value.message


# ------------------------------------------------------------------------------ a real server


def served_copy(repo: Path, dest: Path, onnx_models: list[str]) -> Path:
    """The written repository with each ONNX model served by the ONNX Runtime stand-in."""
    shutil.copytree(repo, dest)
    from google.protobuf import text_format

    for name in onnx_models:
        cfg = read_config(dest, name)
        assert cfg.platform == "onnxruntime_onnx"
        cfg.platform, cfg.backend = "", "python"
        (dest / name / "config.pbtxt").write_text(text_format.MessageToString(cfg))
        (dest / name / "1" / "model.py").write_text(ORT_STANDIN)
    return dest


@pytest.fixture(scope="module")
def server(tmp_path_factory, export_cache):
    """tritonserver on loopback serving ran56_cifar (attention outputs) + --preprocess models."""
    try:
        triton_server.server_binary()
    except triton_server.ServerUnavailable as exc:
        pytest.skip(f"no tritonserver: {exc}")
    tmp = tmp_path_factory.mktemp("triton")
    exported = export_cache("ran56_cifar", return_attention=True)
    repo = tmp / "repo"
    written = write_repository(
        [exported.path],
        repo,
        RepoOptions(name="ran56", kind="cpu", max_batch=8, max_queue_delay_us=200_000,
                    preprocess=True),
    )
    assert written.models == ["ran56", "ran56_preprocess", "ran56_ensemble"]
    served = served_copy(repo, tmp / "served", ["ran56"])
    with triton_server.serve(served, tmp / "server.log") as running:
        yield running, exported


@pytest.fixture(scope="module")
def eager(server):
    from deploy_ran.runners.torch_runner import TorchRunner

    _, exported = server
    with TorchRunner("ran56_cifar", image_size=32, return_attention=True) as runner:
        yield runner


@pytest.mark.parametrize("scheme", ["triton", "triton+grpc"])
def test_triton_runner_agrees_with_eager_pytorch(server, eager, scheme):
    running, exported = server
    port = running.http_port if scheme == "triton" else running.grpc_port
    x = np.random.default_rng(1).standard_normal((5, 3, 32, 32)).astype(np.float32)
    reference = eager.run(x)
    with load_runner(f"{scheme}://127.0.0.1:{port}/ran56") as runner:
        assert runner.backend == "triton" and runner.model == "ran56_cifar"
        assert runner.output_names == exported.output_names
        assert runner.input_spec[0].shape == (None, 3, 32, 32)
        assert runner.preprocessing == exported.info.preprocessing
        described = runner.describe()
        assert "client-side" in described["latency"]
        got = runner.run_many(x, batch_size=2)  # batches of 2, 2, 1
        for name in exported.output_names:
            agreement = compare(reference[name], got[name])
            assert agreement.rel_l2 <= FP32_REL_L2, (name, agreement)
        with pytest.raises(DeployRanError, match="max_batch_size"):
            runner.run(np.zeros((9, 3, 32, 32), np.float32))
        with pytest.raises(DeployRanError, match="dtype"):
            runner.run(x.astype(np.float64))


def test_dynamic_batching_groups_concurrent_requests(server):
    """Concurrent single-image requests are run in fewer executions (the dynamic batcher)."""
    import tritonclient.grpc as grpcclient

    running, _ = server
    client = grpcclient.InferenceServerClient(running.grpc_url)
    try:
        before = client.get_inference_statistics("ran56", as_json=True)["model_stats"][0]
        x = np.zeros((1, 3, 32, 32), np.float32)
        errors: list[object] = []
        all_back = threading.Event()

        def callback(result, error):
            errors.append(error)
            if len(errors) == 8:
                all_back.set()

        for _ in range(8):
            inp = grpcclient.InferInput("input", [1, 3, 32, 32], "FP32")
            inp.set_data_from_numpy(x)
            client.async_infer("ran56", [inp], callback)
        assert all_back.wait(timeout=60)
        assert errors == [None] * 8
        # the server updates its statistics after the responses are sent: poll briefly
        deadline = time.monotonic() + 10
        while True:
            after = client.get_inference_statistics("ran56", as_json=True)["model_stats"][0]
            done = int(after.get("inference_count", 0)) - int(before.get("inference_count", 0))
            if done >= 8 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    finally:
        client.close()
    inferences = int(after.get("inference_count", 0)) - int(before.get("inference_count", 0))
    executions = int(after.get("execution_count", 0)) - int(before.get("execution_count", 0))
    assert inferences == 8
    assert executions < inferences


def test_preprocess_ensemble_matches_local_preprocessing(server, tmp_path):
    """Encoded PNG/JPEG bytes through the ensemble = the toolkit's own preprocessing + the model."""
    import onnxruntime as ort
    from PIL import Image

    from deploy_ran.images import load_and_preprocess

    running, exported = server
    rng = np.random.default_rng(2)
    files = []
    for i, (fmt, size) in enumerate([("PNG", (40, 48)), ("JPEG", (64, 37))]):
        img = Image.fromarray(rng.integers(0, 255, (*size[::-1], 3), dtype=np.uint8))
        path = tmp_path / f"img{i}.{fmt.lower()}"
        img.save(path, fmt)
        files.append(path)
    local = np.stack([load_and_preprocess(p, exported.info.preprocessing) for p in files])
    session = ort.InferenceSession(str(exported.path), providers=["CPUExecutionProvider"])
    expected = dict(zip(exported.output_names, session.run(exported.output_names, {"input": local})))

    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(running.http_url)
    try:
        blobs = np.array([[p.read_bytes()] for p in files], dtype=object)
        inp = httpclient.InferInput("IMAGE", list(blobs.shape), "BYTES")
        inp.set_data_from_numpy(blobs)
        result = client.infer("ran56_ensemble", [inp])
        for name in exported.output_names:
            assert compare(expected[name], result.as_numpy(name)).rel_l2 <= FP32_REL_L2, name
        bad = np.array([[b"not an image"]], dtype=object)
        inp = httpclient.InferInput("IMAGE", [1, 1], "BYTES")
        inp.set_data_from_numpy(bad)
        with pytest.raises(Exception, match="cannot decode image"):
            client.infer("ran56_ensemble", [inp])
    finally:
        client.close()


def test_server_rejects_a_config_with_the_batch_left_in_dims(tmp_path):
    """The server check is real: a config Triton refuses makes it fail to start."""
    try:
        triton_server.server_binary()
    except triton_server.ServerUnavailable as exc:
        pytest.skip(f"no tritonserver: {exc}")
    path = tiny_onnx(tmp_path / "tiny.onnx")
    repo = tmp_path / "repo"
    write_repository([path], repo, RepoOptions(kind="cpu"))
    served = served_copy(repo, tmp_path / "served", ["tiny"])
    with triton_server.serve(served, tmp_path / "ok.log") as running:  # as written: loads
        with TritonRunner(f"triton://{running.http_url}/tiny") as runner:
            out = runner.run(np.ones((3, 3, 8, 8), np.float32))
            assert out["attention_map"].shape == (3, 4, 8, 8)
    cfg = read_config(served, "tiny")
    cfg.input[0].dims.insert(0, -1)  # the batch dimension a hand-written config often repeats
    from google.protobuf import text_format

    (served / "tiny" / "config.pbtxt").write_text(text_format.MessageToString(cfg))
    with pytest.raises(RuntimeError, match="tritonserver"):
        with triton_server.serve(served, tmp_path / "bad.log"):
            pass


def test_verify_and_infer_accept_a_served_model(server, tmp_path):
    """`verify MODEL triton://…` rebuilds the eager side from the served config's metadata."""
    from PIL import Image

    from deploy_ran.infer import run_inference
    from deploy_ran.verify import verify

    running, exported = server
    url = f"triton://127.0.0.1:{running.http_port}/ran56"
    result = verify("ran56_cifar", url, num_inputs=4, batch_size=4)
    assert result.passed, result.failed_checks
    assert {o.name for o in result.outputs} == set(exported.output_names)
    assert result.candidate["backend"] == "triton"

    rng = np.random.default_rng(3)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    served, local = tmp_path / "served.jsonl", tmp_path / "local.jsonl"
    run_inference(url, tmp_path, output=served, batch_size=2, workers=0)
    run_inference(exported.path, tmp_path, output=local, batch_size=2, workers=0)
    rows = [json.loads(line) for line in served.read_text().splitlines()]
    expected = [json.loads(line) for line in local.read_text().splitlines()]
    assert len(rows) == 3 and "error" not in rows[0]
    assert [[t["class"] for t in r["topk"]] for r in rows] == [
        [t["class"] for t in r["topk"]] for r in expected
    ]
    for r, e in zip(rows, expected):
        assert r["prob"] == pytest.approx(e["prob"], rel=1e-4, abs=1e-6)


def test_cli_triton_repo_writes_and_refuses(tmp_path):
    from typer.testing import CliRunner

    import cli

    path = tiny_onnx(tmp_path / "tiny.onnx")
    runner = CliRunner()
    args = ["triton-repo", str(path), "--output", str(tmp_path / "repo"), "--kind", "cpu",
            "--max-batch", "4", "--max-queue-delay-us", "500", "--name", "tiny_v"]
    done = runner.invoke(cli.app, args)
    assert done.exit_code == 0, done.output
    cfg = read_config(tmp_path / "repo", "tiny_v")
    assert cfg.max_batch_size == 4 and cfg.dynamic_batching.max_queue_delay_microseconds == 500
    again = runner.invoke(cli.app, args)
    assert again.exit_code == 2 and "--force" in again.output
    forced = runner.invoke(cli.app, [*args, "--force"])
    assert forced.exit_code == 0, forced.output
