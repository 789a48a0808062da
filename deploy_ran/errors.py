"""Errors a user can act on.

Every failure caused by the user's input (a name, a path, a file) is raised as a
:class:`DeployRanError` carrying a *hint* that says how to fix it. The CLI prints the message and
the hint and exits with a non-zero code instead of a traceback; library users can catch one type.

Library messages name library parameters (``batch_sizes``), never command-line flags: a Python
user has no ``--batch-sizes``. An error about one argument carries its name in ``param``, so the
CLI can say which flag to change.
"""

from __future__ import annotations


class DeployRanError(Exception):
    """An error caused by input the user can fix; ``hint`` says how, ``param`` names the
    library parameter at fault (``None`` when no single one is)."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        #: The library parameter at fault (``batch_size``), so a front end can name its own
        #: spelling of it (``--batch``) without the library knowing about flags.
        self.param = param

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\nHint: {self.hint}"


class UnknownModelError(DeployRanError, KeyError):
    """A model name that is not in the registry."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return DeployRanError.__str__(self)


class CheckpointError(DeployRanError):
    """A checkpoint that cannot be read or does not fit the model."""


class ExportError(DeployRanError):
    """An export that produced a graph the toolkit refuses to hand out."""


class ParityError(ExportError):
    """An exported graph whose outputs do not match eager PyTorch."""


class OnnxFileError(DeployRanError):
    """An ONNX file that is missing, corrupt or not what a command expects."""


class AccuracyError(DeployRanError):
    """A converted file whose outputs fail the criteria ``verify`` would apply to it.

    Exit code 1, as ``verify`` exits on a failed comparison: the input was fine, the result is not.
    """

    exit_code = 1
