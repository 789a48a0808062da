"""``infer`` on a runner that takes one batch size only: every image gets its record.

The loop asks the runner for its batch (``BaseRunner.batch_for``): a static-batch artifact is fed
its own batch, the last, short batch padded by ``run_many`` and the padding dropped.
"""

from __future__ import annotations

import json

import numpy as np

from deploy_ran.infer import run_inference
from deploy_ran.runners.base import BaseRunner, TensorSpec

SIZE = 8


class StaticLogits(BaseRunner):
    """Logits = the mean of each channel, weighted per class; accepts batches of 4 only."""

    backend = "test"

    def __init__(self) -> None:
        self.seen: list[int] = []
        self.weights = np.random.default_rng(0).standard_normal((3, 5)).astype(np.float32)
        super().__init__(
            name="static-test",
            device="cpu",
            precision="fp32",
            input_spec=[TensorSpec("input", (4, 3, SIZE, SIZE), "float32")],
            output_names=["logits"],
            preprocessing={"resize_size": SIZE, "crop_size": SIZE, "mean": [0.5] * 3, "std": [0.25] * 3},
            num_classes=5,
        )

    def _stage(self, feed):
        return feed["input"]

    def _execute(self, x):
        self.seen.append(len(x))
        return {"logits": x.mean(axis=(2, 3)) @ self.weights}

    def _fetch(self, outputs):
        return outputs


def test_static_batch_runner_gets_its_batch_and_every_image_a_record(image_folder, tmp_path):
    runner = StaticLogits()
    out = tmp_path / "preds.jsonl"
    result = run_inference(runner, image_folder, out, batch_size=3, topk=2, workers=0)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert result.batch_size == 4  # the runner's own batch, not the 3 asked for
    assert len(records) == result.total == 14
    assert sum("error" in r for r in records) == result.failed == 2
    assert set(runner.seen) == {4}  # every call a full batch of 4, the short one padded
    good = [r for r in records if "error" not in r]
    assert len(good) == 12 and all(len(r["topk"]) == 2 for r in good)
