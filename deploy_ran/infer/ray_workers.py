"""What runs on the Ray workers for ``infer --ray``: decode tasks, model actors and the probe.

Module-level so Ray pickles them by reference; every node must import ``deploy_ran``. Each goes
through the same steps as local ``infer`` (:func:`~deploy_ran.infer.dataset.decode_image`,
:func:`~deploy_ran.infer.request.check_runner`, :func:`~deploy_ran.infer.predict.predict_records`),
so a record reads the same whichever ran it.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from deploy_ran.infer.dataset import decode_image
from deploy_ran.infer.predict import predict_records
from deploy_ran.infer.producer import producer_identity
from deploy_ran.infer.request import check_runner


def decode_batch(batch: dict[str, np.ndarray], preprocessing: dict) -> dict[str, np.ndarray]:
    """Ray task: paths (bytes) → preprocessed arrays (zeros where unreadable) + error strings."""
    shape = (3, int(preprocessing["crop_size"]), int(preprocessing["crop_size"]))
    arrays, errors = [], []
    for path in batch["path"]:
        array, error = decode_image(os.fsdecode(bytes(path)), preprocessing)
        arrays.append(array if array is not None else np.zeros(shape, np.float32))
        errors.append(error or "")
    return {
        "index": np.asarray(batch["index"], dtype=np.int64),
        "path": np.asarray([bytes(p) for p in batch["path"]], dtype=object),
        "pixels": np.stack(arrays),
        "error": np.asarray(errors, dtype=object),
    }


class Predictor:
    """Ray actor: one runner, built once; a batch of decoded images → JSON-encoded records."""

    def __init__(
        self,
        target: str,
        runner_kwargs: dict[str, Any],
        output_name: str,
        batch_size: int | None,
        topk: int,
        label_names: list[str] | None,
    ) -> None:
        from deploy_ran.runners import load_runner

        self.runner = load_runner(target, **runner_kwargs)
        self.output_name = output_name
        self.batch_size = batch_size
        self.topk = topk
        self.label_names = label_names

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        items = [
            (os.fsdecode(bytes(path)), None if err else np.asarray(pixels), str(err) or None)
            for path, pixels, err in zip(batch["path"], batch["pixels"], batch["error"])
        ]
        records, _ = predict_records(
            self.runner,
            items,
            output_name=self.output_name,
            batch_size=self.batch_size,
            topk=self.topk,
            label_names=self.label_names,
        )
        # JSON text keeps each record exactly (nested top-k, optional labels) through Arrow.
        encoded = [json.dumps(r, ensure_ascii=False, allow_nan=False) for r in records]
        return {"index": batch["index"], "record": np.asarray(encoded, dtype=object)}


def probe(
    target: str,
    runner_kwargs: dict[str, Any],
    output_name: str | None,
    topk: int,
    label_names: list[str] | None,
    labels: str | None,
    fmt: str,
) -> dict[str, Any]:
    """Ray task with a worker's resources: can a worker build this runner, and is it usable?

    One blank image goes through :func:`~deploy_ran.infer.predict.predict_records` too, so an output that is not
    ``[batch, classes]`` logits fails here rather than in every actor. Returns what the driver
    needs, the producer record of the output included (the runner lives on the workers).
    """
    from deploy_ran.runners import load_runner

    with load_runner(target, **runner_kwargs) as runner:
        name = check_runner(
            runner, output_name=output_name, topk=topk, label_names=label_names, labels=labels
        )
        blank = np.zeros(runner.input_spec[0].shape_for(1)[1:], np.float32)
        predict_records(
            runner,
            [("blank", blank, None)],
            output_name=name,
            batch_size=None,
            topk=topk,
            label_names=label_names,
        )
        return {
            "output_name": name,
            "preprocessing": dict(runner.preprocessing or {}),
            "fixed_batch": runner.fixed_batch,
            "runner": runner.describe(),
            "producer": producer_identity(runner, name, topk, labels, fmt),
        }
