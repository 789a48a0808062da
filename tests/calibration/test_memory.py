"""The calibration memory estimate: sizes from shape inference, said before the run, and a batch
that would not fit refused with the batch that would."""

from __future__ import annotations

import onnx
import pytest

from calibration.memory import (
    DEVICE_FACTOR,
    HOST_FACTOR,
    CalibrationMemoryError,
    bytes_per_image,
    estimate_memory,
)
from tests.tiny_graphs import conv_relu_model


def _tiny() -> onnx.ModelProto:
    """input [batch, 3, 8, 8] → Conv 3×3 (4 channels) → Relu → y."""
    return conv_relu_model(kernel=3, output="y", opset=17)


def test_bytes_per_image_from_shape_inference():
    per_image, unknown = bytes_per_image(_tiny(), ["input", "c", "y", "nowhere"])
    assert per_image == 4 * (3 * 8 * 8 + 4 * 8 * 8 + 4 * 8 * 8)
    assert unknown == 1  # "nowhere" has no shape: not counted, and said so


def test_a_batch_that_fits_passes_and_is_described():
    per_image, _ = bytes_per_image(_tiny(), ["c", "y"])
    est = estimate_memory(_tiny(), ["c", "y"], 8, "cuda:0", host_free=10**9, device_free=10**9)
    assert est.device_needed == int(DEVICE_FACTOR * per_image * 8)
    assert est.host_needed == int(HOST_FACTOR * per_image * 8)
    assert "batch 8" in est.summary() and "cuda:0" in est.summary()
    est.require_fits()
    assert estimate_memory(_tiny(), ["c"], 8, "cpu", host_free=10**9).device_needed is None


def test_a_batch_that_would_not_fit_is_refused_with_one_that_would():
    per_image, _ = bytes_per_image(_tiny(), ["c", "y"])
    # Room for ~10 images on the device, plenty on the host.
    device_free = int(10 * DEVICE_FACTOR * per_image / 0.8)
    est = estimate_memory(
        _tiny(), ["c", "y"], 64, "cuda", host_free=10**12, device_free=device_free
    )
    assert est.largest_batch() == 10
    with pytest.raises(CalibrationMemoryError, match="batch 64 would not fit") as info:
        est.require_fits()
    assert "batch=10" in info.value.hint and info.value.param == "batch"
    smaller = estimate_memory(
        _tiny(), ["c", "y"], 10, "cuda", host_free=10**12, device_free=device_free
    )
    smaller.require_fits()


def test_nothing_fits_and_fixed_batches_say_so():
    est = estimate_memory(_tiny(), ["c", "y"], 4, "cpu", host_free=10)
    with pytest.raises(CalibrationMemoryError) as info:
        est.require_fits()
    assert "more memory" in info.value.hint
    with pytest.raises(CalibrationMemoryError, match="would not fit") as info:
        estimate_memory(_tiny(), ["c"], 4, "cpu", host_free=10).require_fits(fixed_batch=True)
    assert "dynamic batch" in info.value.hint


def test_unreadable_free_memory_refuses_nothing():
    est = estimate_memory(_tiny(), ["c"], 4096, "cuda", host_free=None, device_free=None)
    est = type(est)(**{**est.as_dict(), "host_free": None, "device_free": None})
    assert est.largest_batch() == 4096
    est.require_fits()


def test_calibrate_says_the_estimate_and_refuses_before_running(
    export_cache, tmp_path, monkeypatch
):
    """quantize_int8 reports the estimate before any forward pass and refuses a batch the
    (here: faked, tiny) free host memory cannot hold, naming the batch that fits; nothing is
    written."""
    import calibration.memory as memory_mod
    import calibration.ranges as ranges_mod
    from calibration.quantize import quantize_int8

    fp32 = export_cache("ran56_cifar", image_size=32)
    model = onnx.load(fp32.path, load_external_data=False)
    per_image, _ = bytes_per_image(model, [i.name for i in model.graph.value_info])
    assert per_image > 0
    monkeypatch.setattr(memory_mod, "host_free_bytes", lambda: int(3 * HOST_FACTOR * per_image))
    ran = []
    monkeypatch.setattr(ranges_mod, "compute_ranges", lambda *a, **k: ran.append(1) or {})
    phases = []
    out = tmp_path / "m.int8.onnx"
    with pytest.raises(CalibrationMemoryError, match="batch 16 would not fit") as info:
        quantize_int8(
            fp32.path, out, data="synthetic", method="minmax", num_images=32, batch=16,
            use_cache=False, progress=lambda phase, done, total: phases.append(phase),
        )  # fmt: skip
    assert info.value.param == "batch" and "batch=" in info.value.hint
    best = int(info.value.hint.split("batch=")[1].split()[0])
    assert 1 <= best < 16
    assert any(p.startswith("calibration memory ≈ batch 16") for p in phases)
    assert not ran and not out.exists()
