"""The command line's option groups (Polygraphy ``tools/args`` style), used only by ``cli.py``.

Each group declares its flags once and builds one library config with the library's defaults:
:data:`calibration.CALIBRATION` → ``CalibrationConfig``, :data:`engine.ENGINE` →
``EngineBuildOptions``, :data:`model.MODEL` / :data:`model.EXPORT` → ``ExportConfig``,
:data:`runner.RUNNER` → a runner's ``device`` / ``providers`` / ``threads``. Single flags are
declared in ``cli_args``; :mod:`cli_options.hints` turns library parameter names in hints into
these flags.
"""

from cli_options import panels  # noqa: F401  (help headings of the shared single options)
from cli_options.group import Field, Group, GroupValues, groups, params_of

__all__ = ["Field", "Group", "GroupValues", "params_of", "groups"]
