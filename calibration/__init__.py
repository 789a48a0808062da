"""Calibration data and INT8 quantization (Q/DQ ONNX) for TensorRT's explicit-precision networks."""
