"""The evaluate group: labelled data and how to read it (``--labels``, ``--reference``, ...).

Builds the keyword arguments of :func:`deploy_ran.evaluate.evaluate` beside ``--data`` and the
runner group; ``--precision`` (like ``--checkpoint`` and ``--image-size``, single options under the
Model heading) applies to model-name targets only.
"""

from __future__ import annotations

import cli_args as o
from cli_options.group import Field, Group

EVALUATE = Group(
    "Evaluate",
    dict,
    Field("labels", o.LabelsOpt),
    Field("reference", o.ReferenceOpt),
    Field("batch", o.Batch("Images per batch"), "batch_size", default=32),
    Field("num_images", o.EvalCountOpt, "max_images"),
    Field("workers", o.EvalWorkersOpt),
    Field("precision", o.TorchPrecisionOpt),
)
