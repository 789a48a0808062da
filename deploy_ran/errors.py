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


#: errno values that a user fixes by changing a path (name, permissions, type).
_PATH_ERRNOS = {
    "ENAMETOOLONG": "the name is longer than the filesystem allows (255 bytes a name)",
    "ELOOP": "it is a symlink loop",
    "ENOENT": "it does not exist",
    "EACCES": "permission denied",
    "EPERM": "operation not permitted",
    "EISDIR": "it is a folder",
    "ENOTDIR": "a part of it is not a folder",
    "EROFS": "the filesystem is read-only",
    "ENXIO": "it is a device or pipe with nothing on the other side",
}


def system_error(exc: BaseException) -> DeployRanError | None:
    """The user-facing error for an ``OSError`` about a path or a ``MemoryError``; None for
    anything else (a bug, which should keep its traceback).

    The last net under every command: each reader checks its own inputs, but a path the user
    gave can still fail deep inside a library (a 240-byte output name, a symlink loop), and the
    answer must be the path and what to change, not a traceback.
    """
    import errno

    if isinstance(exc, MemoryError):
        return DeployRanError(
            "Ran out of memory: an input asks for more than this machine has "
            f"({exc or 'allocation failed'}).",
            hint="Check the input's declared shape or image size and the batch size.",
        )
    if not isinstance(exc, OSError) or exc.errno is None:
        return None
    name = errno.errorcode.get(exc.errno, "")
    if name not in _PATH_ERRNOS:
        return None
    where = exc.filename if exc.filename is not None else "a path"
    if isinstance(where, bytes):
        where = where.decode("utf-8", "backslashreplace")
    return DeployRanError(
        f"Cannot use {where}: {_PATH_ERRNOS[name]}.",
        hint="Choose another path (shorter name, existing folder, readable file, --output "
        "elsewhere).",
    )
