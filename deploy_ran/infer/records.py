"""One record per image: what a prediction or an error looks like in the output.

Records (JSON Lines; CSV has the same fields flattened, one column per top-k rank)::

    {"path": "imgs/cat.jpg", "class": 281, "label": "tabby", "prob": 0.912345,
     "topk": [{"class": 281, "label": "tabby", "prob": 0.912345}, ...]}
    {"path": "imgs/broken.jpg", "error": "imgs/broken.jpg is not a readable image (...)"}
    {"path": "imgs/caf\\xe9.jpg", "path_hex": "696d67732f636166e92e6a7067", "class": 3, ...}

``prob`` is the softmax of the logits, rounded to 6 decimals; ``label`` only with a labels file.
A file name that is not valid UTF-8 is written (JSON Lines) as a printable ``path`` with
``\\xNN`` escapes plus ``path_hex``, its exact bytes, which a resume matches on; CSV writes
the name's own bytes. Logits that are NaN or infinite become an error record
(:data:`NONFINITE_ERROR`), never a bare ``NaN`` in the JSON.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from deploy_ran.errors import DeployRanError

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}


PROB_DECIMALS = 6


NONFINITE_ERROR = "the model returned NaN or infinite logits for this image"


def output_format(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DeployRanError(
            f"Cannot tell the output format of {path}.",
            hint="Name the output *.jsonl (JSON Lines) or *.csv.",
            param="output",
        )
    return fmt


def csv_header(topk: int, with_labels: bool) -> list[str]:
    cols = ["path", "error"]
    for k in range(1, topk + 1):
        cols += [f"class_{k}", f"prob_{k}"] + ([f"label_{k}"] if with_labels else [])
    return cols


def printable(text: str) -> str:
    """``text`` with any surrogate-escaped bytes (undecodable file names) as ``\\xNN``."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def one_line(text: str) -> str:
    return printable(" ".join(str(text).split()))


def path_fields(path: str | Path) -> dict[str, str]:
    """``{"path": ...}``, plus ``path_hex`` for a name that is not valid UTF-8."""
    text = str(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return {"path": printable(text), "path_hex": os.fsencode(text).hex()}
    return {"path": text}


def softmax(logits: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float64)
    x = x - x.max(axis=1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=1, keepdims=True)


def prediction_records(
    paths: Sequence[str | Path], probs: np.ndarray, topk: int, labels: list[str] | None
) -> list[dict[str, Any]]:
    """One prediction record per row of ``probs`` (the image at the same place in ``paths``)."""
    top = np.argsort(-probs, axis=1, kind="stable")[:, :topk]
    out = []
    for row, (path, classes) in enumerate(zip(paths, top)):
        ranks = []
        for c in classes:
            entry: dict[str, Any] = {"class": int(c)}
            if labels is not None:
                entry["label"] = labels[c]
            entry["prob"] = round(float(probs[row, c]), PROB_DECIMALS)
            ranks.append(entry)
        rec: dict[str, Any] = {**path_fields(path), **ranks[0], "topk": ranks}
        out.append(rec)
    return out


def format_records(records: list[dict[str, Any]], fmt: str, topk: int, with_labels: bool) -> str:
    """Records as the text appended to the output: JSON Lines (never a bare NaN), or CSV rows
    (one column group per top-k rank, empty cells for an error record, a name's own bytes)."""
    if fmt == "jsonl":
        return "".join(json.dumps(r, ensure_ascii=False, allow_nan=False) + "\n" for r in records)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    for r in records:
        path = os.fsdecode(bytes.fromhex(r["path_hex"])) if "path_hex" in r else r["path"]
        row: list[Any] = [path, r.get("error", "")]
        ranks = r.get("topk", [])
        for k in range(topk):
            if k < len(ranks):
                e = ranks[k]
                row += [e["class"], e["prob"]] + ([e.get("label", "")] if with_labels else [])
            else:
                row += ["", ""] + ([""] if with_labels else [])
        writer.writerow(row)
    return buf.getvalue()


def is_model_error(record: dict[str, Any]) -> bool:
    """Whether ``record`` stands for NaN/inf logits (the model's fault, not the image's)."""
    return record.get("error") == NONFINITE_ERROR
