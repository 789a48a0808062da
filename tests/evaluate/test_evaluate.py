"""evaluate: accuracy on labelled data, checked against an independent ONNX Runtime computation."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from deploy_ran.evaluate import DataError, evaluate, expected_calibration_error, read_labelled
from deploy_ran.evaluate.metrics import Predictions, accuracy_metrics, top_predictions
from deploy_ran.images import load_and_preprocess


def _ort_logits(path, x: np.ndarray) -> np.ndarray:
    """Plain onnxruntime, one image at a time: no deploy-ran runner involved. Q/DQ fusions off,
    the arithmetic deploy-ran evaluates INT8 files with (TensorRT's: fake-quantize in float)."""
    opts = ort.SessionOptions()
    opts.add_session_config_entry("session.disable_quant_qdq", "1")
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    dtype = np.float16 if "float16" in inp.type else np.float32
    return np.concatenate([sess.run(None, {inp.name: s[None].astype(dtype)})[0] for s in x])


@pytest.fixture(scope="module")
def int8_onnx(cifar_onnx, tmp_path_factory):
    from calibration.quantize import quantize_int8
    from deploy_ran.compare.runner_checks import RunnerChecks

    out = tmp_path_factory.mktemp("int8") / "m.int8.onnx"
    quantize_int8(
        cifar_onnx, out, data="synthetic", method="minmax", num_images=16, batch=8, eval_images=8,
        run_model=RunnerChecks().run_model, use_cache=False, require_pass=False,
    )  # fmt: skip
    return out


@pytest.fixture(scope="module")
def labelled(cifar_onnx, tmp_path_factory):
    """16 images in class folders: half filed under the FP32 model's own top-1 class (known
    right), half under another class (known wrong), plus one unreadable file."""
    from deploy_ran.runners.ort_runner import OrtRunner

    root = tmp_path_factory.mktemp("val")
    rng = np.random.default_rng(1)
    raw = root.parent / f"{root.name}-raw"
    raw.mkdir()
    images = []
    for i in range(16):
        path = raw / f"im{i:02d}.png"
        Image.fromarray(rng.integers(0, 255, (40, 36 + i, 3), dtype=np.uint8)).save(path)
        images.append(path)
    with OrtRunner(cifar_onnx) as r:
        prep = r.preprocessing
    x = np.stack([load_and_preprocess(p, prep) for p in images])
    top1 = _ort_logits(cifar_onnx, x).argmax(1)
    for i, (path, pred) in enumerate(zip(images, top1)):
        cls = int(pred) if i % 2 == 0 else (int(pred) + 1) % 10
        (root / str(cls)).mkdir(exist_ok=True)
        path.rename(root / str(cls) / path.name)
    (root / "3").mkdir(exist_ok=True)
    (root / "3" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    return root, prep


def test_top1_equals_an_independent_onnxruntime_computation(
    cifar_onnx, int8_onnx, labelled, tmp_path
):
    root, prep = labelled
    result = evaluate([cifar_onnx, int8_onnx], root, batch_size=5)
    data = read_labelled(root)
    ok = [i for i, p in enumerate(data.paths) if p.name != "broken.jpg"]
    x = np.stack([load_and_preprocess(data.paths[i], prep) for i in ok])
    y = data.labels[ok]
    for target in (cifar_onnx, int8_onnx):
        expected = float(np.mean(_ort_logits(target, x).argmax(1) == y))
        assert result.target(str(target)).metrics.top1 == pytest.approx(expected, abs=1e-12)
    # Half of the images were filed under the FP32 top-1 class, half under another class.
    assert result.target(str(cifar_onnx)).metrics.top1 == pytest.approx(0.5)
    assert [s["path"].endswith("broken.jpg") for s in result.skipped] == [True]
    assert result.target(str(int8_onnx)).metrics.n == 16

    report = result.as_dict()
    (cmp,) = report["comparisons"]
    assert cmp["reference"] == str(cifar_onnx) and cmp["target"] == str(int8_onnx)
    for key in ("p_value", "ci_low", "ci_high", "delta", "lost", "gained", "changed", "verdict"):
        assert key in cmp
    assert 0.0 <= cmp["p_value"] <= 1.0 and cmp["ci_low"] <= cmp["delta"] <= cmp["ci_high"]
    json.dumps(report, allow_nan=False)


def test_metrics_from_known_predictions():
    labels = np.array([0, 1, 2, 2, 1, 0])
    topk = np.array([[0, 1], [2, 1], [2, 0], [1, 0], [1, 2], [1, 2]], dtype=np.int32)
    conf = np.array([0.9, 0.6, 0.95, 0.5, 0.7, 0.4], dtype=np.float32)
    m = accuracy_metrics(Predictions(topk, conf), labels, 3, ["a", "b", "c"])
    assert m.top1 == pytest.approx(3 / 6) and m.top5 == pytest.approx(4 / 6)
    assert [c["accuracy"] for c in m.per_class] == [0.5, 0.5, 0.5]
    assert m.confusion == [[1, 1, 0], [0, 1, 1], [0, 1, 1]]
    assert m.mean_confidence == pytest.approx(conf.mean())
    # ECE by hand: bins of width 1/15; each image in its own bin except none share.
    correct = topk[:, 0] == labels
    bins = {}
    for c, ok in zip(conf, correct):
        b = min(int(np.ceil(c * 15)) - 1, 14)
        bins.setdefault(b, []).append((c, ok))
    ece = sum(
        len(v) / 6 * abs(np.mean([o for _, o in v]) - np.mean([c for c, _ in v]))
        for v in bins.values()
    )
    assert m.ece == pytest.approx(ece)


def test_ece_is_zero_when_confidence_matches_accuracy():
    conf = np.full(10, 0.7)
    correct = np.array([1] * 7 + [0] * 3, bool)
    assert expected_calibration_error(conf, correct) == pytest.approx(0.0)
    assert expected_calibration_error(np.full(4, 1.0), np.zeros(4, bool)) == pytest.approx(1.0)


def test_top_predictions_orders_and_softmaxes():
    logits = np.array([[0.0, 2.0, 1.0], [5.0, 0.0, 0.0]], np.float32)
    p = top_predictions(logits, k=5)
    assert p.topk.tolist() == [[1, 2, 0], [0, 1, 2]]
    e = np.exp([0.0, 2.0, 1.0])
    assert p.confidence[0] == pytest.approx(e[1] / e.sum(), rel=1e-6)


def test_csv_tsv_and_npz_readers(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "list.csv").write_text("path,label\na.png,cat\nsub/b.png,dog\nc.png,cat\n")
    data = read_labelled(tmp_path / "list.csv")
    assert data.class_names == ["cat", "dog"] and data.labels.tolist() == [0, 1, 0]
    assert data.paths[1] == tmp_path / "sub" / "b.png"
    labels = tmp_path / "labels.txt"
    labels.write_text("bird\ndog\ncat\n")
    assert read_labelled(tmp_path / "list.csv", labels).labels.tolist() == [2, 1, 2]
    (tmp_path / "list.tsv").write_text("a.png\t4\nb.png\t0\n")
    assert read_labelled(tmp_path / "list.tsv").labels.tolist() == [4, 0]
    np.savez(
        tmp_path / "d.npz", x_test=np.zeros((3, 3, 8, 8), np.float32), y_test=np.array([0, 1, 2])
    )
    data = read_labelled(f"{tmp_path / 'd.npz'}:test")
    assert len(data) == 3 and data.arrays.shape == (3, 3, 8, 8)


@pytest.mark.parametrize(
    "setup, expected",
    [
        (lambda d: (d / "list.csv").write_text("a.png\n"), "not a 'path,label' pair"),
        (
            lambda d: np.savez(d / "d.npz", x=np.zeros((2, 3, 8, 8), np.float32)),
            "needs 'x' and 'y'",
        ),
        (lambda d: (d / "empty").mkdir(), "no class folders"),
    ],
)
def test_bad_data_is_refused_with_a_hint(tmp_path, setup, expected):
    setup(tmp_path)
    source = next(p for p in tmp_path.iterdir())
    with pytest.raises(DataError, match=expected) as info:
        read_labelled(source)
    assert info.value.hint


def test_labels_file_must_name_every_class_folder(tmp_path):
    (tmp_path / "val" / "cat").mkdir(parents=True)
    (tmp_path / "val" / "cat" / "x.png").write_bytes(b"")
    (tmp_path / "labels.txt").write_text("dog\n")
    with pytest.raises(DataError, match="not in the labels file: 'cat'"):
        read_labelled(tmp_path / "val", tmp_path / "labels.txt")


def test_npz_arrays_evaluate_and_class_count_is_checked(cifar_onnx, tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 3, 32, 32)).astype(np.float32)
    logits = _ort_logits(cifar_onnx, x)
    y = logits.argmax(1)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    result = evaluate([cifar_onnx], tmp_path / "d.npz", batch_size=4)
    assert result.targets[0].metrics.top1 == 1.0 and not result.comparisons
    np.savez(tmp_path / "bad.npz", x=x, y=np.full(6, 12))
    with pytest.raises(DataError, match="class index 12, but the model has 10"):
        evaluate([cifar_onnx], tmp_path / "bad.npz")


def test_cli_evaluate_writes_json_and_png(cli, cifar_onnx, int8_onnx, labelled, tmp_path):

    root, _ = labelled
    out, png = tmp_path / "eval.json", tmp_path / "eval.png"
    args = ["evaluate", str(cifar_onnx), str(int8_onnx), "--data", str(root), "--batch", "7"]
    result = cli([*args, "-o", str(out), "--plot", str(png)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["targets"][0]["top1"] == pytest.approx(0.5)
    assert "p_value" in report["comparisons"][0] and "ci_low" in report["comparisons"][0]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "vs" in result.output and "broken.jpg" in result.output

    bad = cli(["evaluate", str(cifar_onnx), "--data", str(tmp_path / "nope")])
    assert bad.exit_code == 2 and "--data" in bad.output and "does not exist" in bad.output
    wrong = cli([*args, "--plot", str(tmp_path / "x.jpg")])
    assert wrong.exit_code == 2 and "--plot" in wrong.output


def test_markdown_table_for_a_readme(cifar_onnx, tmp_path):
    from deploy_ran.evaluate import labelled_arrays
    from deploy_ran.tables import markdown_table

    x = np.random.default_rng(2).standard_normal((8, 3, 32, 32)).astype(np.float32)
    y = _ort_logits(cifar_onnx, x).argmax(1)
    y[:2] = (y[:2] + 1) % 10  # two known misses
    result = evaluate([cifar_onnx], labelled_arrays(x, y, "digits test split"))
    table = markdown_table(result, {str(cifar_onnx): "FP32"})
    assert "| FP32 | ort fp32 |" in table and "| 75.00 [" in table and "reference" in table


class _LinearRunner:
    """A stand-in runner (no model file): logits = a fixed linear map of the pixel means."""

    @staticmethod
    def make(weights: np.ndarray, nan_rows: int = 0):
        from deploy_ran.runners.base import BaseRunner, TensorSpec

        class Linear(BaseRunner):
            backend = "stand-in"

            def __init__(self):
                super().__init__(
                    name="linear", device="cpu", precision="fp32",
                    input_spec=[TensorSpec("input", (None, 3, 4, 4), "float32")],
                    output_names=["logits"], num_classes=weights.shape[1],
                )  # fmt: skip

            def _stage(self, feed):
                return feed["input"]

            def _execute(self, x):
                out = x.mean(axis=(2, 3)) @ weights
                out[:nan_rows] = np.nan
                return out

            def _fetch(self, out):
                return {"logits": out.astype(np.float32)}

        return Linear()


def test_memory_stays_bounded_over_50000_samples():
    """Only top-5 and a confidence per image are kept: 50,000 samples add a few MB at most."""
    import tracemalloc

    from deploy_ran.evaluate import labelled_arrays

    rng = np.random.default_rng(0)
    n = 50_000
    x = rng.standard_normal((n, 3, 4, 4)).astype(np.float32)
    weights = rng.standard_normal((3, 10))
    y = (x.mean(axis=(2, 3)) @ weights).argmax(1)
    data = labelled_arrays(x, y)
    runner = _LinearRunner.make(weights)
    tracemalloc.start()
    result = evaluate([runner], data, batch_size=500)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert result.targets[0].metrics.top1 == 1.0 and result.targets[0].metrics.n == n
    # The input alone is 9.6 MB; predictions are 50,000 x (5 int32 + 1 float32) = 1.2 MB.
    assert peak < 6e6, f"peak {peak / 1e6:.1f} MB"


def test_nan_logits_count_as_wrong_and_do_not_poison_the_averages():
    from deploy_ran.evaluate import labelled_arrays

    rng = np.random.default_rng(1)
    x = rng.standard_normal((10, 3, 4, 4)).astype(np.float32)
    weights = rng.standard_normal((3, 10))
    y = (x.mean(axis=(2, 3)) @ weights).argmax(1)
    result = evaluate(
        [_LinearRunner.make(weights, nan_rows=2)], labelled_arrays(x, y), batch_size=5
    )
    m = result.targets[0].metrics
    assert m.nonfinite == 4 and m.top1 == pytest.approx(6 / 10)  # two per batch of five
    assert np.isfinite(m.mean_confidence) and np.isfinite(m.ece)


def test_report_names_the_weakest_classes():
    from deploy_ran.evaluate import labelled_arrays
    from deploy_ran.tables.evaluate import weakest_classes

    rng = np.random.default_rng(4)
    x = rng.standard_normal((12, 3, 4, 4)).astype(np.float32)
    weights = rng.standard_normal((3, 10))
    y = (x.mean(axis=(2, 3)) @ weights).argmax(1)
    wrong = y.copy()
    wrong[0] = (y[0] + 1) % 10  # one miss, in the class of y[0]'s neighbour
    result = evaluate([_LinearRunner.make(weights)], labelled_arrays(x, wrong))
    (line,) = weakest_classes(result, count=1)
    c = int(wrong[0])
    n = int(np.sum(wrong == c))
    acc = np.sum((wrong == c) & (y == wrong)) / n
    assert f"{c} {acc * 100:.1f} % ({int(round(acc * n))}/{n})" in line
