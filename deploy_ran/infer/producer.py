"""``NAME.producer.json``: what produced an output, so that a resume continues only what is ours.

The record beside the output names the artifact (sha256), or model name + checkpoint sha256,
the precision, preprocessing, output name, top-k, labels sha256 and format. A resume checks it
before touching anything: a file of another model, of other settings, or with no producer record
is refused and left as it was.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from deploy_ran.errors import DeployRanError
from deploy_ran.fileio import sha256_file
from deploy_ran.runners import BaseRunner

PRODUCER_KIND = "deploy-ran infer output"


def producer_path(output: str | Path) -> Path:
    """``NAME.producer.json`` beside ``output``: what produced it (see the module docstring)."""
    output = Path(output)
    return output.with_name(output.name + ".producer.json")


def producer_identity(
    runner: BaseRunner, output_name: str, topk: int, labels: str | Path | None, fmt: str
) -> dict[str, Any]:
    """What makes two runs' records interchangeable: same weights, preprocessing and settings.

    Device, providers, batch size and threads are left out: they change timings, not answers.
    """
    ident: dict[str, Any] = {"backend": runner.backend, "model": runner.model}
    source = Path(runner.name)
    if source.is_file():
        ident["artifact_sha256"] = sha256_file(source)
    else:
        ident["artifact"] = runner.name
    checkpoint = runner.describe().get("checkpoint")
    if checkpoint:
        ckpt = Path(checkpoint)
        ident["checkpoint_sha256"] = sha256_file(ckpt) if ckpt.is_file() else str(checkpoint)
    elif runner.backend == "torch":
        ident["checkpoint_sha256"] = None
    ident.update(
        precision=runner.precision,
        preprocessing=runner.preprocessing,
        output=output_name,
        topk=topk,
        labels_sha256=sha256_file(labels) if labels is not None else None,
        format=fmt,
    )
    return json.loads(json.dumps(ident))  # tuples → lists, as read back from the file


def read_producer(path: Path) -> dict[str, Any] | None:
    """The producer record at ``path`` (None when absent); refuses a file that is not one."""
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        record = None
    if not isinstance(record, dict) or record.get("kind") != PRODUCER_KIND:
        raise DeployRanError(
            f"{path} exists and is not a deploy-ran producer record; it is left as it was.",
            hint="Move it away, or choose another output.",
            param="output",
        )
    return record.get("producer") if isinstance(record.get("producer"), dict) else {}


def check_producer(output: Path, identity: dict[str, Any]) -> None:
    """Refuse to resume ``output`` unless its producer record says this run wrote it."""
    sidecar = producer_path(output)
    found = read_producer(sidecar)
    if found is None:
        raise DeployRanError(
            f"{output} has no producer record ({sidecar.name}), so it cannot be told that this "
            "model and these settings wrote it; it is left as it was.",
            hint="Set overwrite=True to start it again, or choose another output.",
            param="output",
        )
    differ = sorted(k for k in set(found) | set(identity) if found.get(k) != identity.get(k))
    if differ:
        details = "; ".join(
            f"{k}: file {_short(found.get(k))}, this run {_short(identity.get(k))}" for k in differ
        )
        raise DeployRanError(
            f"{output} was written by another model or with other settings ({details}); "
            "it is left as it was.",
            hint="Resume with the same model and settings, overwrite it, or choose another output.",
            param="output",
        )


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 24 else text[:20] + "…"
