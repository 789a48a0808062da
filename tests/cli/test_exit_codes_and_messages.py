"""The command line as a user meets it: exit codes, messages, files."""

from __future__ import annotations

import json
import re

import onnx
import onnx.defs
import pytest
import typer

from tests.tiny_graphs import one_node_onnx


def test_models_table_lists_every_model(cli):
    result = cli(["models"])
    assert result.exit_code == 0, result.output
    for name in ("ran56", "ran92", "ran56_next", "ran452_cifar"):
        assert name in result.output
    assert "52.47" in result.output  # ran92's parameters in millions


def test_models_json_is_machine_readable(cli):
    result = cli(["models", "ran92*", "--json"])
    rows = json.loads(result.output)
    assert [r["name"] for r in rows] == ["ran92", "ran92_cifar"]
    assert rows[0]["params"] == 52_466_344 and rows[0]["paper_params_m"] == 51.3


def test_unknown_model_suggests_and_exits_2(cli):
    result = cli(["export", "ran29"])
    assert result.exit_code == 2
    assert "'ran29'" in result.output  # named, with the nearest names
    assert "ran92" in result.output


def test_export_then_inspect(cli, tmp_path):
    out = tmp_path / "m.onnx"
    result = cli(["export", "ran56_cifar", "--static-batch", "--batch", "2", "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert "Parity check" in result.output and "rel L2" in result.output and "pass" in result.output
    assert onnx.load(out).graph.input[0].type.tensor_type.shape.dim[0].dim_value == 2

    shown = cli(["inspect", str(out)])
    assert shown.exit_code == 0, shown.output
    assert "[2, 3, 32, 32]" in shown.output
    assert "align_corners" in shown.output
    assert "static-graph checks pass" in shown.output

    as_json = json.loads(cli(["inspect", str(out), "--json"]).output)
    assert as_json["metadata"]["model"] == "ran56_cifar"
    assert as_json["graph"]["ok"] is True
    assert all(r["output_hw"] for r in as_json["graph"]["resizes"])


def test_inspect_corrupt_and_missing_files(cli, tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00\x01garbage")
    result = cli(["inspect", str(bad)])
    assert result.exit_code == 2
    assert "not a valid ONNX file" in result.output
    missing = cli(["inspect", str(tmp_path / "none.onnx")])
    assert missing.exit_code == 2 and "does not exist" in missing.output
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    assert "is empty" in cli(["inspect", str(empty)]).output


def test_export_to_missing_folder(cli, tmp_path):
    result = cli(["export", "ran56_cifar", "-o", str(tmp_path / "no" / "x.onnx")])
    assert result.exit_code == 2
    assert "does not exist" in result.output


def test_export_bad_option_value(cli):
    result = cli(["export", "ran56_cifar", "--attention", "softmax"])
    assert result.exit_code == 2
    assert "'mixed'" in result.output


def test_export_corrupt_checkpoint(cli, tmp_path):
    ckpt = tmp_path / "w.pt"
    ckpt.write_bytes(b"not a checkpoint")
    result = cli(
        ["export", "ran56_cifar", "--checkpoint", str(ckpt), "-o", str(tmp_path / "m.onnx")]
    )
    assert result.exit_code == 2
    assert "not a readable PyTorch checkpoint" in result.output
    assert not (tmp_path / "m.onnx").exists()


def test_doctor_reports_the_stack(cli):
    result = cli(["doctor", "--json"])
    env = json.loads(result.output)
    assert env["torch"].startswith("2.")
    assert "CPUExecutionProvider" in env["onnxruntime_providers"]
    assert "tensorrt" in env


# --- options are checked where parsed; the message names the allowed values ---------------------


def _flat(text: str) -> str:
    """The output without rich's box drawing and line wrapping, for substring checks."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["verify", "a", "b", "-n", "-4"], "from 1 to 1,000,000, got -4"),
        (["verify", "a", "b", "-n", "100000000"], "from 1 to 1,000,000"),
        (["verify", "a", "b", "-n", "0"], "got 0"),  # zero is a value, not "unset"
        (["verify", "a", "b", "--device", "tpu"], "cpu, cuda or cuda:N"),
        (["verify", "a", "b", "--min-top1", "5"], "in [0, 1], got 5"),
        (["verify", "a", "b", "--max-rel-l2", "nan"], "got nan"),
        (["verify", "a", "b", "--provider", "tpu"], "providers from cpu, cuda"),
        (["verify", "a", "b", "--reference-precision", "int3"], "'int3' is not one of"),
        (["export", "ran56_cifar", "--num-classes", "-5"], "from 1 to 100,000"),
        (["export", "ran56_cifar", "--image-size", "100000"], "from 1 to 4,096"),
        (
            ["export", "ran56_cifar", "--opset", "99"],
            f"from 18 to {onnx.defs.onnx_opset_version()}",
        ),
        (["export", "ran56_cifar", "--opset", "17"], "from 18 to"),
        (["export", "ran56_cifar", "--precision", "int4"], "'int4' is not one of"),
        (["bench", "ran56_cifar", "--torch-precisions", "fp32,int3"], "'int3' is not one of"),
        (["bench", "ran56_cifar", "--backends", "torch,tpu"], "'tpu' is not one of"),
        (["bench", "ran56_cifar", "--duration", "0"], "in (0, 86400]"),
        (["infer", "x.onnx", "--images", "d", "--batch", "0"], "from 1 to 4,096, got 0"),
        (["infer", "x.onnx", "--images", "d", "--workers", "-1"], "from 0 to 256"),
        (["calibrate", "m.onnx", "--percentile", "0"], "in (50, 100]"),
        (["calibrate", "m.onnx", "--target-agreement", "1.5"], "in (0, 1]"),
        (["calibrate", "m.onnx", "--num-images", "0"], "from 1 to 1,000,000"),
        (["calibrate", "m.onnx", "--method", "kl"], "'kl' is not one of"),
        (["build-engine", "m.onnx", "--opt-level", "9"], "from 0 to 5"),
        (["build-engine", "m.onnx", "--hardware-compatibility", "x"], "'x' is not one of"),
        (["build-engine", "m.onnx", "--min-batch", "8", "--max-batch", "4"], "--min-batch ≤"),
    ],
)
def test_bad_option_values_exit_2_with_the_allowed_range(
    cli, args, expected, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    result = cli(args)
    assert result.exit_code == 2, result.output
    assert expected in _flat(result.output)
    assert list(tmp_path.iterdir()) == []  # refused before any work


def test_option_parsers_accept_what_they_document():
    import cli_args

    assert cli_args.device("CUDA:1") == "cuda:1" and cli_args.device("cpu") == "cpu"
    assert cli_args.ListOf(cli_args.BATCH, "sizes")("1, 8,32") == [1, 8, 32]
    assert cli_args.Number(float, 50.0, 100.0, lo_open=True)("100") == 100.0
    assert cli_args.abn_outputs("logits,attention") == ("logits", "attention")
    with pytest.raises(typer.BadParameter, match="got inf"):
        cli_args.NONNEG("inf")


# --- error text is text: rich markup in paths and shapes is shown, never interpreted ------------


def test_a_path_with_brackets_is_printed_as_written(cli, tmp_path):
    weird = tmp_path / "[bold]x[/]" / "[red].onnx"
    result = cli(["inspect", str(weird)])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "[bold]x[/]" in result.output and "[red].onnx" in result.output


def test_inspect_shows_symbolic_shapes_and_bracketed_metadata(cli, tmp_path):
    path = one_node_onnx(tmp_path / "[m].onnx", "Relu", output="logits")
    model = onnx.load(path)
    onnx.helper.set_model_props(model, {"note": "[italic]kept[/italic]"})
    onnx.save(model, path)
    result = cli(["inspect", str(path)])
    assert result.exit_code == 0, result.output
    assert "[batch, 3, 8, 8]" in result.output
    assert "[italic]kept[/italic]" in _flat(result.output) and "[m].onnx" in result.output


# --- an output never replaces one of the command's own inputs ------------------------------------


def _refused(result, *kept):
    assert result.exit_code == 2, result.output
    text = _flat(result.output)
    assert "would destroy an input" in text and "(--output)" in text
    for path, data in kept:
        assert path.read_bytes() == data  # untouched


def test_verify_refuses_to_write_its_report_over_a_side(cli, tmp_path):
    model = one_node_onnx(tmp_path / "a.onnx", "Relu", output="logits")
    data = model.read_bytes()
    _refused(cli(["verify", str(model), str(model), "-o", str(model)]), (model, data))
    (tmp_path / "sub").mkdir()
    dotted = str(tmp_path / "sub" / ".." / "a.onnx")
    _refused(cli(["verify", "ran56_cifar", str(model), "-o", dotted]), (model, data))
    link = tmp_path / "report.json"
    link.symlink_to(model)
    _refused(cli(["verify", "ran56_cifar", str(model), "-o", str(link)]), (model, data))


def test_export_refuses_to_write_over_its_checkpoint(cli, tmp_path):
    ckpt = tmp_path / "w.pt"
    ckpt.write_bytes(b"trained weights")
    args = ["export", "ran56_cifar", "--checkpoint", str(ckpt), "-o", str(ckpt)]
    _refused(cli(args), (ckpt, b"trained weights"))


def test_infer_refuses_to_write_over_its_labels_or_list(cli, tmp_path):
    model = one_node_onnx(tmp_path / "a.onnx", "Relu", output="logits")
    labels = tmp_path / "L.csv"
    labels.write_text("cat\ndog\n")
    (tmp_path / "imgs").mkdir()
    base = ["infer", str(model), "--images", str(tmp_path / "imgs")]
    args = [*base, "--labels", str(labels), "-o", str(labels), "--overwrite"]
    _refused(cli(args), (labels, b"cat\ndog\n"))


def test_visualize_refuses_to_draw_over_an_image(cli, tmp_path):
    from PIL import Image

    image = tmp_path / "cat.png"
    Image.new("RGB", (8, 8), (200, 10, 10)).save(image)
    data = image.read_bytes()
    args = ["visualize", "ran56_cifar", str(image), "-o", str(tmp_path / "." / "cat.png")]
    _refused(cli(args), (image, data))


def test_refuse_output_over_inputs_names_the_parameter(tmp_path):
    from deploy_ran.errors import DeployRanError
    from deploy_ran.fileio import refuse_output_over_inputs

    src = tmp_path / "a.onnx"
    src.write_bytes(b"x")
    refuse_output_over_inputs({"output": tmp_path / "b.onnx"}, {"source": src, "data": None})
    refuse_output_over_inputs({"output": None}, {"source": src})
    with pytest.raises(DeployRanError) as info:
        refuse_output_over_inputs({"plan": tmp_path / "x" / ".." / "a.onnx"}, {"images": [src]})
    assert info.value.param == "plan" and info.value.exit_code == 2
