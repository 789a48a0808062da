"""Writing files so that a crash or a bad input never leaves half a file behind.

Everything the toolkit writes goes to a temporary name in the destination folder and is renamed
into place only when complete: ``os.replace`` is atomic on one filesystem, so a reader sees either
the old file or the new one.

Temporary names carry the writer's PID and a host tag (``.NAME.<pid>-<host>.XXXXXXXX.tmp``,
``deploy-ran-calib-<pid>-<host>-XXXXXXXX``): a run killed by SIGKILL cannot clean up after itself,
so the next run that writes the same output removes the leftovers whose owner is dead, and never
those of a run that is still alive. A full disk is reported as a :class:`DiskFullError` (the old
file is left as it was), and :func:`exclusive_lock` lets one writer at a time own an output.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import math
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from deploy_ran.errors import DeployRanError

#: errno values that mean "the data did not fit", whichever limit was hit.
FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


class DiskFullError(DeployRanError):
    """Writing an output ran out of space (disk, quota or file-size limit)."""


class OutputLockedError(DeployRanError):
    """Another process is writing the same output right now."""


def _host_tag() -> str:
    return hashlib.sha1(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:8]


def owner_tag() -> str:
    """``<pid>-<host>``: who owns a temporary file, so that stale ones can be told apart."""
    return f"{os.getpid()}-{_host_tag()}"


def pid_alive(pid: int) -> bool:
    """Whether a process with this PID exists (a PID we may not signal counts as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stale(pid: str, host: str) -> bool:
    """A leftover of a dead process on this host (another host's files are never touched)."""
    return host == _host_tag() and not pid_alive(int(pid))


def _remove_stale(folder: str | os.PathLike[str], pattern: re.Pattern[str]) -> list[Path]:
    """Remove the entries of ``folder`` whose name matches ``pattern`` (groups: pid, host) and
    whose writer is dead; what was removed. Best effort, never raises."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        found = pattern.match(entry.name)
        if found and _stale(*found.groups()):
            with contextlib.suppress(OSError):
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path)
                else:
                    os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


def clean_stale_temps(path: str | os.PathLike[str]) -> list[Path]:
    """Remove ``.NAME.<pid>-<host>.*.tmp`` files beside ``path`` whose writer is dead.

    Returns what was removed. Files of live writers, of other hosts and of other names are kept;
    nothing here raises (cleaning up is best effort).
    """
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.(\d+)-([0-9a-f]{{8}})\.[^/]*\.tmp$")
    return _remove_stale(parent, pattern)


def clean_stale_temps_in(folder: str | os.PathLike[str]) -> list[Path]:
    """Remove every ``.NAME.<pid>-<host>.*.tmp`` file or folder in ``folder`` whose writer is
    dead, whatever NAME: a repository whose earlier run was killed while staging a model that
    this run does not write gets its leftovers removed too. Best effort, never raises."""
    pattern = re.compile(r"^\..+\.(\d+)-([0-9a-f]{8})\.[^/]*\.tmp$")
    return _remove_stale(folder, pattern)


def temp_sibling(path: str | os.PathLike[str], suffix: str = "") -> Path:
    """Create an empty temporary file beside ``path``, named so that it can be cleaned later."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.{owner_tag()}.", suffix=suffix + ".tmp", dir=parent
    )
    os.close(fd)
    return Path(tmp)


def clean_stale_temp_dirs(prefix: str) -> list[Path]:
    """Remove ``<prefix><pid>-<host>-*`` folders in the system temp folder whose owner is dead."""
    base = Path(tempfile.gettempdir())
    pattern = re.compile(rf"^{re.escape(prefix)}(\d+)-([0-9a-f]{{8}})-")
    removed: list[Path] = []
    try:
        entries = list(os.scandir(base))
    except OSError:
        return removed
    for entry in entries:
        found = pattern.match(entry.name)
        if found and entry.is_dir(follow_symlinks=False) and _stale(*found.groups()):
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(Path(entry.path))
    return removed


@contextlib.contextmanager
def temp_dir(prefix: str) -> Iterator[Path]:
    """A temporary folder ``<prefix><pid>-<host>-XXXX`` removed on exit (Ctrl-C, SIGTERM too).

    Leftovers of earlier runs killed with SIGKILL are removed first.
    """
    clean_stale_temp_dirs(prefix)
    with tempfile.TemporaryDirectory(prefix=f"{prefix}{owner_tag()}-") as tmp:
        yield Path(tmp)


def is_disk_full(exc: BaseException, where: str | os.PathLike[str] | None = None) -> bool:
    """Whether ``exc`` (or what caused it) says the disk, quota or file-size limit is full.

    Writers that wrap the ``OSError`` (``torch.save`` says only "file write failed") count when
    the folder ``where`` has less than 1 MiB left.
    """
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in FULL_ERRNOS:
            return True
        if "No space left on device" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    if where is not None and "write failed" in str(exc):
        with contextlib.suppress(OSError):
            return shutil.disk_usage(where).free < (1 << 20)
    return False


def disk_full_error(path: str | os.PathLike[str], exc: BaseException, kept: str) -> DiskFullError:
    """The error to raise for ``exc`` while writing ``path``; ``kept`` says what survived."""
    text = str(exc).splitlines()
    reason = getattr(exc, "strerror", None) or (text[0] if text else "disk full")
    return DiskFullError(
        f"No space left to write {path} ({reason}); {kept}.",
        hint="Free some space on that disk (or choose an --output on another one) and run again.",
    )


def lock_path(path: str | os.PathLike[str]) -> Path:
    """The lock file that guards ``path``: ``.NAME.lock`` beside it."""
    path = Path(path)
    return path.with_name(f".{path.name}.lock")


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike[str], what: str = "run") -> Iterator[Path]:
    """Hold an exclusive ``flock`` on ``.NAME.lock`` beside ``path`` for the block.

    A second writer is refused at once with :class:`OutputLockedError` (no waiting). The lock dies
    with its process, so a killed run never blocks the next one; the lock file is removed on exit
    while still held, and a writer that locked a file which was removed meanwhile locks again.
    """
    lock = lock_path(path)
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutputLockedError(
                f"Another {what} is writing {Path(path)} right now (it holds {lock}).",
                hint="Wait for it to finish, or write to another --output.",
            ) from None
        except OSError:
            os.close(fd)
            raise
        try:
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the previous holder removed the file we locked: lock the new one
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield lock
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock)
        os.close(fd)


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


#: Bytes a temporary name adds to an output's name: ``.NAME.<pid>-<host>.XXXXXXXX<suffix>.tmp``.
TEMP_NAME_OVERHEAD = 48


def check_name_length(path: str | os.PathLike[str], overhead: int = TEMP_NAME_OVERHEAD) -> None:
    """Refuse an output whose name, with its temporary-file decoration, exceeds the filesystem's
    limit (``NAME_MAX``, 255 bytes on most): the write would fail after the work was done."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    try:
        limit = os.pathconf(parent if parent.exists() else ".", "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    size = len(os.fsencode(path.name))
    if size + overhead > limit:
        raise DeployRanError(
            f"The output name {path.name[:40]}… is {size} bytes; with the temporary name the "
            f"toolkit writes first it would pass this filesystem's limit of {limit} bytes.",
            hint=f"Choose an --output whose file name is at most {limit - overhead} bytes.",
            param="output",
        )


def check_writable(path: str | os.PathLike[str]) -> Path:
    """Fail early, before any long work, when ``path`` cannot be written."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    check_name_length(path)
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
    clean_stale_temps(path)
    tmp_path = temp_sibling(path, suffix)
    try:
        yield tmp_path
        publish(tmp_path, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        if is_disk_full(exc, path.parent if str(path.parent) else "."):
            kept = f"{path} was left as it was" if path.exists() else "nothing was written"
            raise disk_full_error(path, exc, kept) from None
        raise


def publish(tmp: Path, path: str | os.PathLike[str]) -> None:
    """Give ``tmp`` the permissions a plain ``open()`` would (mkstemp makes 0600), rename it."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)


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


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def json_text(obj: Any, *, indent: int | None = 2, default: Any = str) -> str:
    """Strict JSON for a report: NaN and ±inf (a PSNR of identical outputs, a metric of an empty
    set) become ``null``, since JSON has no such numbers and strict parsers reject them."""
    return json.dumps(_finite(obj), indent=indent, default=default, allow_nan=False) + "\n"
