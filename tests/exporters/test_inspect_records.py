"""What an export records and inspect reports: every Resize output shape, parameters = weights."""

from __future__ import annotations

import onnx
import torch

from deploy_ran.models import create_model
from exporters.inspect import count_parameters, inspect_onnx


def _shapes(model, name):
    return [
        [d.dim_value if d.HasField("dim_value") else d.dim_param for d in vi.type.tensor_type.shape.dim]
        for vi in model.graph.value_info
        if vi.name == name
    ]


def test_dynamic_batch_file_records_every_resize_output_shape(export_cache):
    result = export_cache("ran56_cifar", image_size=32)
    model = onnx.load(result.path)
    resizes = [n for n in model.graph.node if n.op_type == "Resize"]
    assert resizes
    for node in resizes:
        (shape,) = _shapes(model, node.output[0])  # recorded once, and fully
        assert shape[0] == "batch" and all(isinstance(d, int) and d > 0 for d in shape[1:])


def test_parameters_count_weights_not_shape_constants(export_cache):
    result = export_cache("ran56_cifar", image_size=32)
    model = onnx.load(result.path)
    every_element = sum(int(torch.tensor(i.dims).prod()) for i in model.graph.initializer)
    weights = count_parameters(model)
    assert inspect_onnx(result.path).parameters == weights < every_element
    eager = sum(p.numel() for p in create_model("ran56_cifar").parameters())
    # The simplifier folds BatchNorm into convolutions (2C weights become a C bias): within 2 %.
    assert abs(weights - eager) / eager < 0.02
