"""What an existing output already holds, and what is left to do (``resume``).

Read-only until the run goes ahead: :func:`plan_output` checks the producer record and the whole
file first; only then does the writer drop a half-written last line
(:func:`truncate_partial_line`). Duplicate entries of an image list are kept as given: each
occurrence gets its own record, in a resumed run as in a whole one.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deploy_ran.errors import DeployRanError
from deploy_ran.infer.producer import check_producer, producer_path, read_producer
from deploy_ran.infer.records import csv_header


def complete_part(data: bytes) -> bytes:
    """``data`` without a half-written last line (a run killed mid-write)."""
    return data if not data or data.endswith(b"\n") else data[: data.rfind(b"\n") + 1]


def truncate_partial_line(path: Path) -> int:
    """Drop a half-written last line; returns the bytes removed. Only after checking the file."""
    size = path.stat().st_size
    if size == 0:
        return 0
    with open(path, "rb+") as fh:
        fh.seek(-1, os.SEEK_END)
        if fh.read(1) == b"\n":
            return 0
        fh.seek(0)
        keep = len(complete_part(fh.read()))
        fh.truncate(keep)
        return size - keep


def _record_path(rec: dict[str, Any], where: str) -> str:
    """The path a JSON record stands for (``path_hex`` holds the exact bytes when present)."""
    if "path_hex" in rec:
        try:
            return os.fsdecode(bytes.fromhex(rec["path_hex"]))
        except (TypeError, ValueError):
            raise DeployRanError(
                f"{where} has a malformed 'path_hex'.",
                hint="Write to a new output.",
                param="output",
            ) from None
    if not isinstance(rec["path"], str):
        raise DeployRanError(
            f"{where} has a non-text 'path'.", hint="Write to a new output.", param="output"
        )
    return rec["path"]


def read_done(path: Path, fmt: str, topk: int, with_labels: bool) -> list[str]:
    """Paths an existing output already holds (one per record, duplicates kept), read-only.

    Checks the whole file was written the same way; the half-written last line of a killed
    run is ignored here and removed only when the run goes ahead.
    """
    text = complete_part(path.read_bytes()).decode("utf-8", "surrogateescape")
    if fmt == "csv":
        rows = list(csv.reader(io.StringIO(text)))
        if not rows:
            return []
        want = csv_header(topk, with_labels)
        if rows[0] != want:
            raise DeployRanError(
                f"{path} was written with other settings (columns {rows[0][:6]}…).",
                hint="Resume with the same topk and labels, or write to a new output.",
                param="output",
            )
        return [r[0] for r in rows[1:] if r]
    done: list[str] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            raise DeployRanError(
                f"{path} line {n} is not JSON; it is not an output of `infer`.",
                hint="Write to a new output, or fix the file.",
                param="output",
            ) from None
        if not isinstance(rec, dict) or "path" not in rec:
            raise DeployRanError(
                f"{path} line {n} has no 'path'; it is not an output of `infer`.",
                hint="Write to a new output.",
                param="output",
            )
        ranks = rec.get("topk")
        if ranks is not None and (
            not isinstance(ranks, list) or len(ranks) != topk or ("label" in rec) != with_labels
        ):
            raise DeployRanError(
                f"{path} line {n} was written with other topk / labels settings.",
                hint="Resume with the same topk and labels, or write to a new output.",
                param="output",
            )
        done.append(_record_path(rec, f"{path} line {n}"))
    return done


def pending_indices(paths: Sequence[Path], done: Sequence[str]) -> list[int]:
    """Indices of ``paths`` still to do: each record in the output covers one occurrence.

    A list that names an image twice gets two records, in a resumed run as in a whole one.
    """
    left = Counter(done)
    pending = []
    for i, p in enumerate(paths):
        key = str(p)
        if left[key] > 0:
            left[key] -= 1
        else:
            pending.append(i)
    return pending


def plan_output(
    output: Path,
    fmt: str,
    identity: dict[str, Any],
    paths: Sequence[Path],
    *,
    topk: int,
    with_labels: bool,
    resume: bool,
    overwrite: bool,
) -> tuple[str, list[int]]:
    """How to write ``output`` (the :class:`OutputWriter` mode) and the indices of ``paths``
    still to do. Read-only: a resume checks the producer record and the whole file first, so a
    file this run did not write is refused and left as it was. Call it holding the lock."""
    done: list[str] = []
    if overwrite:
        mode = "replace"
    elif resume and output.exists() and output.stat().st_size > 0:
        check_producer(output, identity)
        done = read_done(output, fmt, topk, with_labels)
        mode = "append"
    else:
        mode = "fresh"
    if mode != "append":
        read_producer(producer_path(output))  # never replace someone else's file of that name
    return mode, pending_indices(paths, done)
