"""Attention CNNs in PyTorch and the registry that builds them by name.

The registry (``registry.py``) imports no model. Each family module registers its own names when it
is imported, and this package imports every family module below, as timm's ``models/__init__.py``
does, so ``from deploy_ran.models import create_model`` sees every model. A new family: write its
module, call ``register_model`` at its bottom, and add one import here.
"""

from deploy_ran.models import abn, attend_rectify, ran  # noqa: F401  (register their models)
from deploy_ran.models.complexity import count_macs, count_params
from deploy_ran.models.registry import (
    INIT_SEED,
    ModelSpec,
    closest_models,
    create_model,
    get_spec,
    is_model_name,
    list_models,
    register_model,
)

__all__ = [
    "INIT_SEED",
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
