"""Reading what a user points at: only regular files, loop-safe walks, paths kept in their folder.

A path on a command line or inside a file (a ``.txt`` list, an ONNX's external-data location, a
sidecar) can name anything: a FIFO that blocks the first ``open`` forever, ``/dev/zero`` that
never ends, a folder, a symlink loop, or a file outside the folder the path came from. Every
reader goes through these helpers, so a hostile path is one clear error (exit code 2) instead
of a hang, a traceback, or a copy of ``/etc/hostname``.
"""

from __future__ import annotations

import contextlib
import fnmatch
import glob
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

from deploy_ran.errors import DeployRanError

_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class NotARegularFileError(DeployRanError):
    """A path that should name a file names a folder, a FIFO, a device or a socket.

    Opening a FIFO blocks until a writer appears, and ``/dev/zero`` never ends: a reader that
    opened one would hang or fill memory, so such paths are refused before anything opens them.
    """


def _cap(what: str) -> str:
    """``labels file`` → ``Labels file``: messages start with what was read."""
    return what[:1].upper() + what[1:]


def _kind(mode: int) -> str:
    for test, name in _KINDS:
        if test(mode):
            return name
    return "not a regular file"


def require_regular_file(
    path: str | os.PathLike[str], what: str = "file", *, param: str | None = None
) -> Path:
    """``path`` when it names a regular file (through symlinks); a clear error otherwise.

    Call it before handing a path to a library that opens it itself (PIL, onnx, NumPy, torch):
    ``stat`` does not open, so a FIFO cannot block here. ``what`` names the file in the message
    ("labels file", "image").
    """
    path = Path(path)
    shown = os.fsencode(path).decode("utf-8", "backslashreplace")
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise DeployRanError(
            f"{_cap(what)} {shown} does not exist.", hint="Check the path.", param=param
        ) from None
    except OSError as exc:  # ELOOP (symlink loop), ENAMETOOLONG, EACCES, ENOTDIR
        raise DeployRanError(
            f"{_cap(what)} {shown} cannot be read ({exc.strerror or exc}).",
            hint="Check the path: a symlink loop, a name too long, or missing permissions.",
            param=param,
        ) from None
    if not stat.S_ISREG(mode):
        raise NotARegularFileError(
            f"{_cap(what)} {shown} is {_kind(mode)}, not a regular file.",
            hint=f"Give the path of a regular {what}; folders, pipes and devices are not read.",
            param=param,
        )
    return path


def read_regular_bytes(
    path: str | os.PathLike[str],
    what: str = "file",
    *,
    max_bytes: int | None = None,
    param: str | None = None,
) -> bytes:
    """The bytes of a regular file, checked on the open descriptor (no race with a swap).

    Opened with ``O_NONBLOCK`` so that a FIFO swapped in after a check cannot block the open;
    ``max_bytes`` refuses files larger than a reader should ever need (a list, a sidecar).
    """
    require_regular_file(path, what, param=param)
    shown = os.fsencode(path).decode("utf-8", "backslashreplace")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise DeployRanError(
            f"{_cap(what)} {shown} cannot be opened ({exc.strerror or exc}).",
            hint="Check the path and its permissions.",
            param=param,
        ) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotARegularFileError(
                f"{_cap(what)} {shown} is {_kind(info.st_mode)}, not a regular file.",
                hint=f"Give the path of a regular {what}.",
                param=param,
            )
        if max_bytes is not None and info.st_size > max_bytes:
            raise DeployRanError(
                f"{_cap(what)} {shown} is {info.st_size:,} bytes, more than the {max_bytes:,} "
                f"a {what} can sensibly hold.",
                hint=f"Check that this is the {what} you meant.",
                param=param,
            )
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as fh:
            return fh.read()
    finally:
        os.close(fd)


def read_utf8_lines(
    path: str | os.PathLike[str], what: str = "file", *, param: str | None = None
) -> list[str]:
    """Lines of a UTF-8 text file (a BOM dropped, trailing blank lines removed), stripped.

    Another encoding (latin-1, cp1252, UTF-16) is refused with the byte and line that failed,
    rather than guessed: a wrongly decoded label would be written into every record.
    """
    data = read_regular_bytes(path, what, max_bytes=64 << 20, param=param)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        shown = os.fsencode(path).decode("utf-8", "backslashreplace")
        raise DeployRanError(
            f"{_cap(what)} {shown} is not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line}).",
            hint=f"Convert it to UTF-8, e.g. iconv -f latin1 -t utf-8 {shown} > {what.split()[0]}"
            ".utf8.txt",
            param=param,
        ) from None
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    return [ln.strip() for ln in lines]


def walk_files(folder: str | os.PathLike[str]) -> Iterator[Path]:
    """Every regular file under ``folder``, each folder visited once.

    Symlinked folders are followed (a dataset assembled from links works), but a folder already
    seen (by device and inode) is skipped, so a loop such as ``l1 -> .`` ends instead of
    recursing until the path is too long. Unreadable folders are skipped.
    """
    seen: set[tuple[int, int]] = set()
    for root, dirs, files in os.walk(folder, followlinks=True):
        try:
            info = os.stat(root)
        except OSError:
            dirs[:] = []
            continue
        key = (info.st_dev, info.st_ino)
        if key in seen:
            dirs[:] = []
            continue
        seen.add(key)
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(root, name)
            with contextlib.suppress(OSError):
                if stat.S_ISREG(os.stat(full).st_mode):
                    yield Path(full)


def glob_files(pattern: str) -> list[Path]:
    """Regular files matching a shell pattern (``**`` spans folders), sorted; loop-safe.

    :func:`glob.glob` with ``recursive=True`` follows symlinked folders without remembering them,
    so one ``l1 -> .`` link makes it run until names exceed ``PATH_MAX`` (and many links,
    exponentially longer). Here the fixed leading part of the pattern is walked with
    :func:`walk_files` and each file is matched against the whole pattern.
    """
    parts = Path(pattern).parts
    fixed: list[str] = []
    for part in parts:
        if glob.has_magic(part):
            break
        fixed.append(part)
    root = Path(*fixed) if fixed else Path(".")
    rest = parts[len(fixed) :]
    if not rest:
        return [root] if root.is_file() else []
    if "**" not in rest and len(rest) == 1:  # one level: no walk needed
        return sorted(p for p in map(Path, glob.glob(pattern)) if _is_regular(p))
    regex = re.compile(_translate(rest))
    found = []
    for path in walk_files(root):
        rel = path.relative_to(root).parts
        if regex.fullmatch("/".join(rel)):
            found.append(path)
    return sorted(found)


def _is_regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def _translate(parts: tuple[str, ...]) -> str:
    """A regex for path parts joined with ``/``; ``**`` matches zero or more whole folders."""
    out = []
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if part == "**":
            out.append(".*" if last else "(?:[^/]+/)*")
            continue
        body = fnmatch.translate(part)  # '(?s:...)\Z'; one name never spans a slash
        body = body[: body.rindex("\\Z")].replace(".*", "[^/]*")
        out.append(body + ("" if last else "/"))
    return "".join(out)


def resolve_inside(
    folder: str | os.PathLike[str], name: str, what: str = "file", *, param: str | None = None
) -> Path:
    """``folder / name`` resolved, refused unless it stays inside ``folder``.

    For paths that a file names (an ONNX's external-data ``location``, a list's entries): an
    absolute path or one that climbs out with ``..`` (or through a symlink) could make the toolkit
    read ``/etc/hostname`` or overwrite a file elsewhere while copying.
    """
    base = Path(folder).resolve()
    if os.path.isabs(name):
        raise DeployRanError(
            f"{_cap(what)} {name!r} is an absolute path; it must be relative to {base}.",
            hint="Keep the files a model names beside it, with relative names.",
            param=param,
        )
    target = (base / name).resolve()
    if target != base and base not in target.parents:
        raise DeployRanError(
            f"{_cap(what)} {name!r} resolves to {target}, outside {base}.",
            hint="Keep the files a model names inside its folder (no '..', no links out).",
            param=param,
        )
    return target
