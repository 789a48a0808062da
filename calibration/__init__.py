"""Calibration data and INT8 quantization (Q/DQ ONNX) for TensorRT's explicit-precision networks.

Front door: :func:`calibration.quantize.quantize_int8` (FP32 ONNX + calibration data → INT8 Q/DQ
ONNX, with a range cache and an optional sensitivity analysis). The pieces:
:mod:`calibration.data` (sources and subsets), :mod:`calibration.ranges` (ONNX Runtime's
calibrators and the cache), :mod:`calibration.placement` (where Q/DQ go, node groups),
:mod:`calibration.qdq` (ONNX Runtime's quantizer driven by the placement),
:mod:`calibration.sensitivity` (per-group sensitivity, ``--exclude auto``),
:mod:`calibration.source` (the FP32 file, its data and ranges: the first steps of the front door),
:mod:`calibration.entropy` (TensorRT's KL search, floored), :mod:`calibration.foreign` (metadata
for INT8 files from ModelOpt or ONNX Runtime's quantizer).
"""
