"""Device: the one parser of device strings, and the grep that keeps it the only one."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from deploy_ran.device import Device, DeviceError, describes_cuda
from deploy_ran.errors import DeployRanError

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("text", "kind", "index"),
    [("cpu", "cpu", None), ("cuda", "cuda", None), ("cuda:1", "cuda", 1), (" CUDA:0 ", "cuda", 0)],
)
def test_parse_and_round_trip(text, kind, index):
    device = Device.parse(text)
    assert (device.kind, device.index) == (kind, index)
    assert device.is_cuda == (kind == "cuda")
    assert Device.parse(str(device)) == device
    assert str(device.torch_device) == str(device)


def test_none_takes_the_default_and_a_device_passes_through():
    assert Device.parse(None) == Device("cpu")
    assert Device.parse(None, default="cuda") == Device("cuda")
    gpu = Device("cuda", 2)
    assert Device.parse(gpu) is gpu
    import torch

    assert Device.parse(torch.device("cuda", 3)) == Device("cuda", 3)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("gpu", 'Did you mean "cuda"'),
        ("cuda:x", "expected cpu, cuda or cuda:N"),
        ("tpu", "expected cpu, cuda or cuda:N"),
        ("cpu:1", "the CPU takes no index"),
        ("cuda:-1", "expected cpu, cuda or cuda:N"),
    ],
)
def test_bad_devices_are_clear_input_errors(text, says):
    with pytest.raises(DeviceError) as err:
        Device.parse(text)
    assert isinstance(err.value, DeployRanError) and err.value.exit_code == 2
    assert says in str(err.value) and err.value.param == "device"


def test_cuda_index_and_require_cuda():
    assert Device.parse("cuda:3").cuda_index() == 3
    assert Device.parse("cuda").cuda_index(current=5) == 5
    with pytest.raises(DeviceError, match="not a CUDA device"):
        Device.parse("cpu").cuda_index()
    with pytest.raises(DeviceError, match="runs only on an NVIDIA GPU"):
        Device.parse("cpu").require_cuda("The engine")
    assert describes_cuda("cuda:0 (TensorRT)") and not describes_cuda("cpu (test buffers)")


# Files the `rooms` lane is moving into packages; they adopt Device after it lands.
_PENDING: set[str] = set()  # files still to move onto Device (none left)
# Deciding from a device's text: its prefix, a comparison, a regex of the syntax, torch's parser.
_DECIDING = re.compile(
    r"""startswith\(\s*["']cuda|device\w*\s*(==|!=|not in|in)\s*\(?["'](cpu|cuda)|"""
    r"""fullmatch\(r?["']cpu\|cuda|torch\.device\(\s*device\s*\)"""
)
# Splitting text at ":" is a device parse when a device is in sight (a few lines around).
_SPLITTING = re.compile(r"""(split|partition)\(\s*["']:["']""")


def _offenders(path: Path, rel: str) -> list[str]:
    lines = [line.split("#", 1)[0] for line in path.read_text().splitlines()]
    found = []
    for number, code in enumerate(lines, 1):
        near = " ".join(lines[max(0, number - 4) : number + 3]).lower()
        if _DECIDING.search(code) or (
            _SPLITTING.search(code) and ("cuda" in near or "device" in near)
        ):
            found.append(f"{rel}:{number}: {code.strip()}")
    return found


def test_device_strings_are_parsed_only_in_device_py():
    """The bar of issue 18: device-string parsing and ``startswith("cuda")`` in one module."""
    paths = [ROOT / "cli.py", ROOT / "cli_args.py"]
    for folder in ("deploy_ran", "exporters", "calibration"):
        paths += sorted((ROOT / folder).rglob("*.py"))
    offenders = []
    for path in paths:
        rel = path.relative_to(ROOT).as_posix()
        if rel != "deploy_ran/device.py" and rel not in _PENDING:
            offenders += _offenders(path, rel)
    assert not offenders, "parse devices with deploy_ran.device.Device:\n" + "\n".join(offenders)


def test_the_grep_finds_what_it_looks_for(tmp_path):
    """The check above can fail: each way of parsing a device it bans is found in a sample."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        'a = device.startswith("cuda")\n'
        'b = device == "cpu"\n'
        'kind, _, index = device.partition(":")\n' + "pass\n" * 4 + 'c = path.split(":")\n'
    )
    assert [line.split(":")[1] for line in _offenders(sample, "s")] == ["1", "2", "3"]
