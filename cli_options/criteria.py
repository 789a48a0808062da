"""The criteria group: verify's thresholds (override a default criterion or add one).

Builds the ``criteria`` mapping :func:`deploy_ran.verify.verify` takes; an unset flag keeps the
library's default for that output kind.
"""

from __future__ import annotations

import cli_args as o
from cli_options.group import Field, Group

CRITERIA = Group(
    "Criteria",
    dict,
    Field("max_rel_l2", o.MaxRelL2Opt),
    Field("min_cosine", o.MinCosineOpt),
    Field("min_top1", o.MinTop1Opt),
    Field("min_top5", o.MinTop5Opt),
    Field("min_psnr", o.MinPsnrOpt),
    Field("max_abs", o.MaxAbsOpt),
    Field("atol", o.AtolOpt),
    Field("rtol", o.RtolOpt),
)
