"""The one writer of an output: records appended and flushed batch by batch, nothing half-written.

A killed run loses at most the batch in flight. A new output (and its producer record) is
created when the first batch is written, so a model that fails on its first batch leaves no
empty file; ``overwrite`` writes under a temporary name and swaps the new file and its producer
record in only when the run has finished; a full disk is a
:class:`~deploy_ran.fileio.DiskFullError` (what was written stays resumable).
"""

from __future__ import annotations

import contextlib
import csv
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

from deploy_ran.fileio import (
    atomic_write_text,
    disk_full_error,
    is_disk_full,
    publish,
    temp_sibling,
)
from deploy_ran.infer.producer import PRODUCER_KIND, producer_path
from deploy_ran.infer.records import csv_header, format_records, is_model_error
from deploy_ran.infer.resume import truncate_partial_line


class OutputWriter:
    """Writes records into the output as :func:`run_inference` promises (see the module doc).

    ``mode``: "fresh" (create on the first write), "append" (resume: drop a torn last line, then
    append) or "replace" (``overwrite``: write a temporary file, swap it in at ``finish``).
    """

    def __init__(
        self, output: Path, fmt: str, mode: str, header: list[str] | None, producer: dict
    ) -> None:
        self.output, self.fmt, self.mode, self.header = output, fmt, mode, header
        self.producer = producer
        self.sidecar = producer_path(output)
        self.tmp: Path | None = None
        self.fh: IO[str] | None = None

    def _open(self) -> IO[str]:
        if self.mode == "append":
            truncate_partial_line(self.output)
            target, how = self.output, "a"
        elif self.mode == "replace":
            self.tmp = target = temp_sibling(self.output)
            how = "w"
        else:
            atomic_write_text(self.sidecar, self._sidecar_text())  # before the first record
            target, how = self.output, "w"
        # CSV writes a name's own bytes; JSON Lines holds only valid UTF-8 (path_hex).
        errors = "surrogateescape" if self.fmt == "csv" else "strict"
        fh = open(target, how, encoding="utf-8", errors=errors, newline="")
        if self.header is not None and fh.tell() == 0:
            csv.writer(fh, lineterminator="\n").writerow(self.header)
        return fh

    def _sidecar_text(self) -> str:
        from deploy_ran import __version__

        record = {"kind": PRODUCER_KIND, "deploy_ran": __version__, "producer": self.producer}
        return json.dumps(record, indent=2, ensure_ascii=False) + "\n"

    def write(self, text: str) -> None:
        try:
            if self.fh is None:
                self.fh = self._open()
            self.fh.write(text)
            self.fh.flush()
        except OSError as exc:
            if is_disk_full(exc):
                raise disk_full_error(self.output, exc, self._kept()) from None
            raise

    def _kept(self) -> str:
        if self.mode == "replace":
            return f"{self.output} was left as it was"
        return "the records written so far are kept; free space, then run again with resume=True"

    def finish(self) -> None:
        """Close; for ``replace``, swap the new file and its producer record in."""
        if self.fh is None:
            self.write("")  # no pending image (all done): still create/replace the output
        assert self.fh is not None
        try:
            self.fh.close()
            if self.mode == "replace" and self.tmp is not None:
                side_tmp = temp_sibling(self.sidecar)
                try:
                    side_tmp.write_text(self._sidecar_text(), encoding="utf-8")
                    # No window in which the new records sit beside the old producer record:
                    # without a record, a resume refuses rather than mixes.
                    with contextlib.suppress(FileNotFoundError):
                        self.sidecar.unlink()
                    publish(self.tmp, self.output)
                    publish(side_tmp, self.sidecar)
                finally:
                    with contextlib.suppress(FileNotFoundError):
                        side_tmp.unlink()
        except OSError as exc:
            self.abort()
            if is_disk_full(exc):
                raise disk_full_error(self.output, exc, self._kept()) from None
            raise

    def abort(self) -> None:
        """Close after a failure; a ``replace`` run's temporary file is removed."""
        if self.fh is not None and not self.fh.closed:
            with contextlib.suppress(OSError):
                self.fh.close()
        if self.tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                self.tmp.unlink()


def write_batches(
    output: Path,
    fmt: str,
    mode: str,
    identity: dict[str, Any],
    batches: Iterable[list[dict[str, Any]]],
    *,
    topk: int,
    with_labels: bool,
    total: int,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[int, int, int]:
    """Write each batch of records as it comes (flushed), then finish the output (see the module
    docstring for ``mode`` and what a failure leaves); returns (processed, unreadable,
    model errors). ``progress(done, total)`` follows every batch."""
    header = csv_header(topk, with_labels) if fmt == "csv" else None
    writer = OutputWriter(output, fmt, mode, header, identity)
    processed = failed = model_errors = 0
    try:
        for records in batches:
            writer.write(format_records(records, fmt, topk, with_labels))
            bad_logits = sum(1 for r in records if is_model_error(r))
            model_errors += bad_logits
            failed += sum(1 for r in records if "error" in r) - bad_logits
            processed += len(records)
            if progress is not None:
                progress(processed, total)
        writer.finish()
    except BaseException:
        writer.abort()
        raise
    return processed, failed, model_errors
