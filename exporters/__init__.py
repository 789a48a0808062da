"""Turn a model or an ONNX file into the next artifact: FP32 ONNX, FP16 ONNX, TensorRT plans."""
