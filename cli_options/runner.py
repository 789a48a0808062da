"""The runner group: where and how a runner runs (``--device``, ``--provider``, ``--threads``).

Builds the keyword arguments every runner-using library call takes (``verify``, ``infer``):
``device``, ``providers``, ``threads``.
"""

from __future__ import annotations

import cli_args as o
from cli_options.group import Field, Group

RUNNER = Group(
    "Runner",
    dict,
    Field("device", o.DeviceOpt),  # None: cpu, or cuda for an engine (the registry decides)
    Field("provider", o.ProviderOpt, "providers"),
    Field("threads", o.ThreadsOpt),
)
