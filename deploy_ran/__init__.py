"""deploy-ran: take attention CNNs from PyTorch to ONNX, ONNX Runtime and TensorRT."""

__version__ = "0.1.0"
