"""The runner group: where and how a runner runs (``--device``, ``--provider``, ``--threads``).

Builds the keyword arguments every runner-using library call takes (``verify``, ``infer``):
``device``, ``providers``, ``threads``.
"""

from __future__ import annotations

import cli_args as o
from cli_options.group import Field, Group, GroupValues

RUNNER = Group(
    "Runner",
    dict,
    Field("device", o.DeviceOpt),  # None: cpu, or cuda for an engine (the registry decides)
    Field("provider", o.ProviderOpt, "providers"),
    Field("threads", o.ThreadsOpt),
)


def _ray_only(values: GroupValues, given: dict) -> None:
    values.refuse_unless(bool(given.get("ray")), "--ray", ["address", "gpus_per_worker"])


#: ``infer --ray``: Ray Data's settings, refused without ``--ray``.
RAY = Group(
    "Ray",
    dict,
    Field("ray", o.RayOpt, default=False),
    Field("address", o.RayAddressOpt),
    Field("gpus_per_worker", o.GpusPerWorkerOpt),
    check=_ray_only,
)
