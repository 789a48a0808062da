"""Calibration's defaults, written once.

The calibration library (``quantize_int8``, the range collectors, the data sampler), the
conversion layer's :class:`deploy_ran.convert.CalibrationConfig` and the command line's
``calibrate``/``build-engine --int8`` options all read these names, so a default changes in one
place and cannot drift (99.99 used to be written four times). Importing this module is free: it
holds constants only.
"""

from __future__ import annotations

#: Range method: percentile 99.99 is the measured best on the digits accuracy check
#: (``examples/digits.py``, numbers in the README) and robust to a few outlier images.
DEFAULT_METHOD = "percentile"
DEFAULT_PERCENTILE = 99.99
#: Histogram bins over ``|x|``: 2048, as TensorRT's entropy calibrator.
DEFAULT_BINS = {"entropy": 2048, "percentile": 2048}
#: Images drawn (seeded) from the calibration data; NVIDIA advises at least 500.
DEFAULT_NUM_IMAGES = 512
#: Images per ONNX Runtime run while collecting ranges.
DEFAULT_BATCH = 8
DEFAULT_SEED = 0
#: Held-out images the INT8 file is compared on (agreement with FP32) before it is handed out.
DEFAULT_EVAL_IMAGES = 200
#: Top-1 agreement that ``exclude="auto"`` (sensitivity) aims for.
DEFAULT_TARGET_AGREEMENT = 0.99
#: Where ranges are collected.
DEFAULT_DEVICE = "cpu"
#: What the non-quantized part of a Q/DQ file is computed in: FP16, as NVIDIA's tooling writes
#: it; on the digits example the paired test finds no significant loss against an FP32 float
#: part (README, "INT8 on digits").
DEFAULT_FLOAT_PRECISION = "fp16"
#: Where Q/DQ go: "trt" places them for TensorRT's fusions (calibration.placement).
DEFAULT_PLACEMENT = "trt"
