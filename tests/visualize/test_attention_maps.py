"""Attention maps from PyTorch and from ONNX Runtime, the PNG grid, and the bad inputs."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image

from deploy_ran.artifacts import get_metadata, set_metadata
from deploy_ran.compare.metrics import compare
from deploy_ran.errors import DeployRanError, OnnxFileError, UnknownModelError
from deploy_ran.images import ImageError, load_and_preprocess
from deploy_ran.visualize import (
    attention_from_model,
    attention_from_onnx,
    compute_attention,
    render_grid,
    visualize,
)
from tests.conftest import small_size

AR = "wrn16_4_ar"  # multi-head maps at three resolutions, and a fast export


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Images of several modes and sizes, plus a file that is not an image."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:90, 0:120]
    rgb = np.stack([np.sin(x / 9) * 127 + 128, np.cos(y / 7) * 127 + 128, (x + y) % 256], -1)
    Image.fromarray(rgb.astype(np.uint8)).save(folder / "rgb.jpg")
    Image.fromarray(rng.integers(0, 255, (40, 50), dtype=np.uint8), "L").save(folder / "gray.png")
    Image.fromarray(rng.integers(0, 255, (20, 30, 4), dtype=np.uint8), "RGBA").save(
        folder / "rgba.png"
    )
    Image.new("CMYK", (33, 21), (10, 200, 30, 0)).save(folder / "cmyk.jpg")
    (folder / "fake.jpg").write_text("not an image")
    return folder


@pytest.fixture(scope="module")
def good(images):
    return [images / n for n in ("rgb.jpg", "gray.png", "rgba.png", "cmyk.jpg")]


@pytest.fixture
def ar_export(export_cache, calibrated_checkpoint):
    """wrn16_4_ar on calibrated weights, exported with its attention maps (shared with test_export)."""
    ckpt = calibrated_checkpoint(AR, small_size(AR))
    result = export_cache(AR, image_size=small_size(AR), checkpoint=ckpt, return_attention=True)
    return result, ckpt


def test_pytorch_and_onnx_give_the_same_maps(cli, ar_export, good, tmp_path):
    result, ckpt = ar_export
    torch_maps = attention_from_model(AR, good, checkpoint=ckpt)
    onnx_maps = attention_from_onnx(result.path, good)
    names = ["attention_group2", "attention_group1", "attention_group0"]
    assert torch_maps.map_names == onnx_maps.map_names == names
    assert (torch_maps.backend, onnx_maps.backend) == ("pytorch", "onnxruntime")
    for a, b in zip(torch_maps.items, onnx_maps.items):
        assert np.array_equal(np.asarray(a.crop), np.asarray(b.crop))
        for ma, mb in zip(a.maps, b.maps):
            assert ma.values.shape == mb.values.shape
            assert compare(ma.values, mb.values).rel_l2 <= 1e-4
    # The command line draws the same file's maps (one export serves both checks).
    out = tmp_path / "grid.png"
    shown = cli(["visualize", str(result.path), *map(str, good[:2]), "-o", str(out)])
    assert shown.exit_code == 0, shown.output
    assert "attention_group0" in shown.output and "[4, 32, 32]" in shown.output
    assert "onnxruntime" in shown.output and out.exists()
    shapes = [m.values.shape for m in torch_maps.items[0].maps]
    assert shapes == [(4, 8, 8), (4, 16, 16), (4, 32, 32)]
    # Graded maps, not a saturated one-hot: the comparison above means something.
    deepest = torch_maps.items[0].maps[0].values
    assert np.allclose(deepest.sum(axis=(1, 2)), 1.0, atol=1e-4)
    assert deepest.max() < 0.9


def test_modes_are_converted_and_crops_are_what_the_network_saw(good):
    result = attention_from_model("ran56_cifar", good)
    assert [i.path.name for i in result.items] == [p.name for p in good]
    assert all(i.crop.mode == "RGB" and i.crop.size == (32, 32) for i in result.items)
    from deploy_ran.models import get_spec

    pre = get_spec("ran56_cifar").preprocessing(32)
    network_input = load_and_preprocess(good[1], pre)
    shown = np.asarray(result.items[1].crop, dtype=np.float32).transpose(2, 0, 1) / 255
    mean, std = (np.asarray(pre[k], dtype=np.float32)[:, None, None] for k in ("mean", "std"))
    restored = (shown - mean) / std  # back to the normalised space the network saw
    assert np.abs(restored - network_input).max() < 0.03  # 8-bit rounding of the display crop
    assert [m.title for m in result.items[0].maps] == [
        "stage1_module1",
        "stage2_module1",
        "stage3_module1",
    ]


def test_grid_png_has_one_block_per_image(tmp_path, good):
    result = attention_from_model("ran56_cifar", good[:2])
    out = render_grid(result, tmp_path / "grid.png")
    with Image.open(out) as img:
        assert img.format == "PNG"
        width, height = img.size
    # 1 image + 3 maps per row, 2 rows at 2.2 in and 100 dpi.
    assert width == pytest.approx(4 * 220, abs=4)
    assert height == pytest.approx(2 * 220 + 40, abs=4)
    assert [p.name for p in tmp_path.iterdir()] == ["grid.png"]


def test_many_maps_wrap_onto_further_rows(tmp_path, good):
    result = attention_from_model(AR, good[:1])  # 1 + 3 × 4 = 13 panels → two rows of 8
    out = render_grid(result, tmp_path / "ar.png")
    with Image.open(out) as img:
        assert img.size[0] == pytest.approx(8 * 220, abs=4)
        assert img.size[1] == pytest.approx(2 * 220 + 40, abs=4)


def test_abn_map_is_visualised(tmp_path, good):
    result = visualize("abn_resnet110_cifar", good[:1], tmp_path / "abn.png")
    assert result.map_names == ["attention"]
    assert result.items[0].maps[0].values.shape == (1, 16, 16)
    assert (tmp_path / "abn.png").stat().st_size > 0


def test_not_an_image_is_a_clear_error(images, tmp_path):
    out = tmp_path / "x.png"
    with pytest.raises(ImageError, match="fake.jpg is not a readable image"):
        visualize("ran56_cifar", [images / "fake.jpg"], out)
    assert not out.exists()


def test_unwritable_output_fails_before_work(good, tmp_path):
    with pytest.raises(DeployRanError, match="does not exist"):
        visualize("no_such_model", good, tmp_path / "missing" / "x.png")


def test_unknown_source_suggests_models(good, tmp_path):
    with pytest.raises(UnknownModelError) as info:
        compute_attention("wrn16_ar", good)
    assert "wrn16_4_ar" in str(info.value)
    with pytest.raises(OnnxFileError, match="does not exist"):
        compute_attention(str(tmp_path / "absent.onnx"), good)


# --- ONNX files the visualiser must refuse or handle ---------------------------------------


def _tiny_onnx(path, input_shape, outputs, batch_param=None):
    """A graph on ``input``: logits = mean over H, W; optional map = mean over channels."""
    shape = [batch_param or input_shape[0], *input_shape[1:]]
    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)
    nodes, outs = [], []
    if "logits" in outputs:
        axes = helper.make_tensor("axes_hw", TensorProto.INT64, [2], [2, 3])
        nodes.append(helper.make_node("Constant", [], ["ax_hw"], value=axes))
        nodes.append(helper.make_node("ReduceMean", ["input", "ax_hw"], ["logits"], keepdims=0))
        outs.append(helper.make_tensor_value_info("logits", TensorProto.FLOAT, shape[:2]))
    if "attention_mean" in outputs:
        axes = helper.make_tensor("axes_c", TensorProto.INT64, [1], [1])
        nodes.append(helper.make_node("Constant", [], ["ax_c"], value=axes))
        nodes.append(
            helper.make_node("ReduceMean", ["input", "ax_c"], ["attention_mean"], keepdims=1)
        )
        outs.append(
            helper.make_tensor_value_info(
                "attention_mean", TensorProto.FLOAT, [shape[0], 1, *shape[2:]]
            )
        )
    graph = helper.make_graph(nodes, "tiny", [inp], outs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.save(model, path)
    return path


def test_onnx_without_maps_says_to_reexport(tmp_path, good):
    path = _tiny_onnx(tmp_path / "plain.onnx", [1, 3, 16, 16], ["logits"], batch_param="batch")
    model = onnx.load(path)
    set_metadata(model, {"model": "ran56_cifar"})
    onnx.save(model, path)
    with pytest.raises(OnnxFileError) as info:
        attention_from_onnx(path, good)
    assert "no attention-map outputs" in info.value.message
    assert "export ran56_cifar --attention-maps" in info.value.hint


def test_onnx_with_wrong_input_is_refused(tmp_path, good):
    flat = tmp_path / "flat.onnx"
    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 10])
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])
    graph = helper.make_graph([helper.make_node("Relu", ["input"], ["y"])], "g", [inp], [out])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), flat)
    with pytest.raises(OnnxFileError, match=r"\[1, 10\]"):
        attention_from_onnx(flat, good)
    gray = _tiny_onnx(tmp_path / "gray.onnx", [1, 1, 16, 16], ["attention_mean"])
    with pytest.raises(OnnxFileError, match="RGB image input"):
        attention_from_onnx(gray, good)


def test_onnx_whose_metadata_disagrees_with_its_input_size(tmp_path, good):
    path = _tiny_onnx(tmp_path / "m.onnx", [1, 3, 16, 16], ["logits", "attention_mean"])
    model = onnx.load(path)
    set_metadata(model, {"image_size": "32"})
    onnx.save(model, path)
    assert get_metadata(onnx.load(path))["image_size"] == "32"
    with pytest.raises(OnnxFileError, match="built for 32×32 images, but its input is 16×16"):
        attention_from_onnx(path, good)


def test_fixed_batch_onnx_is_fed_in_padded_chunks(tmp_path, good):
    """A static batch of 2 with 3 images: the last chunk is padded; maps are the graph's own."""
    path = _tiny_onnx(tmp_path / "b2.onnx", [2, 3, 16, 16], ["logits", "attention_mean"])
    result = attention_from_onnx(path, good[:3])
    assert result.notes and "ImageNet" in result.notes[0]  # no deploy-ran metadata
    assert result.map_names == ["attention_mean"]
    from deploy_ran.visualize import describe_onnx_for_attention, prepare_images

    desc = describe_onnx_for_attention(path)
    assert desc.batch == 2 and desc.image_size == 16
    batch, _, _ = prepare_images(good[:3], desc.preprocessing)
    for item, x in zip(result.items, batch):
        assert np.allclose(item.maps[0].values, x.mean(axis=0, keepdims=True), atol=1e-6)


def test_checkpoint_with_an_onnx_file_is_refused(tmp_path, good):
    path = _tiny_onnx(tmp_path / "m.onnx", [1, 3, 16, 16], ["attention_mean"])
    with pytest.raises(DeployRanError, match="apply to a model name"):
        compute_attention(path, good, checkpoint=tmp_path / "w.pt")


# --- command line ---------------------------------------------------------------------------


def test_cli_visualize_from_a_model_with_checkpoint(cli, calibrated_checkpoint, images, tmp_path):
    ckpt = calibrated_checkpoint(AR, small_size(AR))
    out = tmp_path / "grid.png"
    shown = cli(
        [
            "visualize",
            AR,
            str(images / "gray.png"),
            "--checkpoint",
            str(ckpt),
            "--output",
            str(out),
        ],
    )
    assert shown.exit_code == 0, shown.output
    assert "pytorch" in shown.output and "attention_group2" in shown.output and out.exists()


def test_cli_visualize_bad_inputs_exit_2(cli, images, tmp_path):
    bad = cli(["visualize", "ran56_cifar", str(images / "fake.jpg"), "-o", str(tmp_path / "a.png")])
    assert bad.exit_code == 2 and "not a readable image" in bad.output
    plain = _tiny_onnx(tmp_path / "p.onnx", [1, 3, 16, 16], ["logits"])
    shown = cli(["visualize", str(plain), str(images / "rgb.jpg"), "-o", str(tmp_path / "b.png")])
    assert shown.exit_code == 2 and "--attention-maps" in shown.output
    assert not (tmp_path / "a.png").exists() and not (tmp_path / "b.png").exists()


def test_cli_export_rejects_bad_abn_outputs(cli, tmp_path):
    shown = cli(
        [
            "export",
            "abn_resnet110_cifar",
            "--outputs",
            "logits,mask",
            "-o",
            str(tmp_path / "a.onnx"),
        ],
    )
    assert shown.exit_code == 2 and "unknown output" in shown.output
    assert not (tmp_path / "a.onnx").exists()


# --- issue 11: the format follows the suffix; bad images are skipped with a note ---------------


@pytest.mark.parametrize(
    ("name", "fmt"), [("grid.jpg", "JPEG"), ("grid.JPEG", "JPEG"), ("g.webp", "WEBP")]
)
def test_output_format_follows_the_suffix(tmp_path, good, name, fmt):
    result = attention_from_model("ran56_cifar", good[:1])
    out = render_grid(result, tmp_path / name)
    with Image.open(out) as img:
        assert img.format == fmt
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_vector_formats_and_unknown_suffixes(tmp_path, good):
    result = attention_from_model("ran56_cifar", good[:1])
    assert render_grid(result, tmp_path / "g.pdf").read_bytes().startswith(b"%PDF")
    assert b"<svg" in render_grid(result, tmp_path / "g.svg").read_bytes()[:2000]
    for bad in ("grid.gif", "grid", "grid.txt"):
        with pytest.raises(DeployRanError, match="Cannot tell which image format") as info:
            visualize("no_such_model", good, tmp_path / bad)  # refused before any work
        assert ".png" in info.value.hint
        assert not (tmp_path / bad).exists()


def test_unreadable_images_are_skipped_with_a_note(images, good, tmp_path):
    from tests.hostile.test_hostile_images import png_header_only

    bomb = png_header_only(tmp_path / "bomb.png", 100_000, 100_000)
    result = visualize("ran56_cifar", [good[0], images / "fake.jpg", bomb], tmp_path / "v.jpg")
    assert [item.path for item in result.items] == [good[0]]
    skipped = [n for n in result.notes if n.startswith("skipped")]
    assert len(skipped) == 2
    assert "fake.jpg" in skipped[0] and "decompression bomb" in skipped[1]
    assert any("random weights" in n for n in result.notes)  # no checkpoint: said, not hidden
    with Image.open(tmp_path / "v.jpg") as img:
        assert img.format == "JPEG"
    with pytest.raises(ImageError, match="None of the 2 images"):
        visualize("ran56_cifar", [images / "fake.jpg", bomb], tmp_path / "w.png")
    assert not (tmp_path / "w.png").exists()
