"""The ONNX opsets the exporter writes, in a module that imports nothing heavy.

The conversion layer's ``ExportConfig`` and the command line's ``--opset`` read them without
importing PyTorch (``exporters.onnx`` does), so ``--help`` and a refused flag answer at once.
"""

from __future__ import annotations

DEFAULT_OPSET = 18  # the lowest opset PyTorch's torch.export-based exporter emits
MIN_OPSET = 18
