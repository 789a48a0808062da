"""Attention CNNs in PyTorch and the registry that builds them by name."""

from deploy_ran.models.complexity import count_macs, count_params
from deploy_ran.models.registry import (
    ModelSpec,
    closest_models,
    create_model,
    get_spec,
    is_model_name,
    list_models,
    register_model,
)

__all__ = [
    "ModelSpec",
    "closest_models",
    "count_macs",
    "count_params",
    "create_model",
    "get_spec",
    "is_model_name",
    "list_models",
    "register_model",
]
