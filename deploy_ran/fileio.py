"""Writing files so that a crash or a bad input never leaves half a file behind.

Everything the toolkit writes goes to a temporary name in the destination folder and is renamed
into place only when complete: ``os.replace`` is atomic on one filesystem, so a reader sees either
the old file or the new one.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from deploy_ran.errors import DeployRanError


def _same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name one file: through symlinks, ``..`` and case-folding filesystems."""
    key_a = os.path.normcase(os.path.realpath(a))
    key_b = os.path.normcase(os.path.realpath(b))
    if key_a == key_b:
        return True
    try:  # both exist: the filesystem decides (case-insensitive volumes, hard links, bind mounts)
        return os.path.samefile(a, b)
    except OSError:
        return False


PathLike = str | os.PathLike[str]


def refuse_output_over_inputs(
    outputs: Mapping[str, PathLike | None],
    inputs: Mapping[str, PathLike | Iterable[PathLike] | None],
) -> None:
    """Raise (exit code 2) when an output would replace one of the inputs it is made from.

    Keys are the parameter names (``output``, ``checkpoint``, ...); the refused output's name
    travels in the error's ``param`` so that a front end can name its own flag. An input may be a
    list of paths (images); ``None`` values are ignored. Paths are compared after resolving
    symlinks and ``..`` and case-folding where the platform does, and by ``samefile`` where both
    exist. Called before any work, so a refused run has written nothing.
    """
    for out_name, out in outputs.items():
        if out is None:
            continue
        for in_name, value in inputs.items():
            if value is None:
                continue
            many = not isinstance(value, (str, os.PathLike))
            for src in value if many else [value]:  # type: ignore[union-attr]
                if _same_file(Path(out), Path(src)):
                    raise DeployRanError(
                        f"The {out_name} {out} is the {in_name} {src}: writing it would destroy "
                        "an input.",
                        hint=f"Choose another {out_name} path.",
                        param=out_name,
                    )


def derived_output(
    source: Path, output: str | os.PathLike[str] | None, default: Path, what: str
) -> Path:
    """The output path of a conversion of ``source`` (``default`` when none is given), checked.

    A conversion must never replace the file it reads, and must fail before any long work when
    it could not write its result.
    """
    path = Path(output) if output is not None else default
    if path.resolve() == source.resolve():
        raise DeployRanError(
            f"The {what} output {path} would overwrite its FP32 source.",
            hint=f"Choose another --output (default: {default.name}).",
        )
    return check_writable(path)


def check_writable(path: str | os.PathLike[str]) -> Path:
    """Fail early, before any long work, when ``path`` cannot be written."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise DeployRanError(
            f"Output path {path} is a directory.",
            hint="Give a file name, e.g. --output model.onnx.",
        )
    if not parent.exists():
        raise DeployRanError(
            f"Output folder {parent} does not exist.",
            hint=f"Create it first (mkdir -p {parent}) or choose another --output.",
        )
    if not os.access(parent, os.W_OK):
        raise DeployRanError(
            f"Output folder {parent} is not writable.",
            hint="Choose another --output or fix the folder's permissions.",
        )
    if not parent.is_dir():
        raise DeployRanError(
            f"Output folder {parent} is not a folder.",
            hint="Choose an --output inside an existing folder.",
        )
    try:  # a real probe: os.access says yes to root even on read-only filesystems
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as exc:
        raise DeployRanError(
            f"Output folder {parent} is not writable ({exc.strerror}).",
            hint="Choose another --output or fix the folder's permissions.",
        ) from None
    if path.exists() and not os.access(path, os.W_OK):
        raise DeployRanError(
            f"Output file {path} exists and is not writable.",
            hint="Remove it, fix its permissions, or choose another --output.",
        )
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds.

    On an exception the temporary file is removed and ``path`` is left as it was.
    """
    path = check_writable(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix + ".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates 0600 files; give the result the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks so large checkpoints do not fill memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()
