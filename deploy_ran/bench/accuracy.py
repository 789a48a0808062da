"""``bench --data``: each row's top-1 on labelled data beside its speed, as ``yolo benchmark`` does.

The runners the benchmark already built are handed to :func:`deploy_ran.evaluate.evaluate_runners`
(one decode of each image, every runner on the same images; unreadable ones left out of all). The
reference is the eager PyTorch FP32 row, so ``Δ top-1`` reads "what this backend and precision
cost against the model as trained", with the exact McNemar p-value and the 95 % interval of that
difference from :mod:`deploy_ran.compare.paired`. Accuracy is measured after every timing, so it
never competes with a timed run for the cores.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deploy_ran.runners import BaseRunner


def measure_accuracy(
    runners: dict[str, BaseRunner],
    data: str | Path,
    *,
    labels: str | Path | None = None,
    reference: str | None = None,
    max_images: int | None = None,
    batch_size: int = 32,
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Per runner label: top-1, top-5, n, and against ``reference``: Δ top-1, its interval, p.

    Returns ``(per_label, summary)``; ``summary`` names the data, the reference and the images
    left out. ``reference=None`` (no eager FP32 row): accuracies only, no Δ.
    """
    from deploy_ran.evaluate import evaluate_runners, read_labelled

    dataset = read_labelled(data, labels).limit(max_images)
    result = evaluate_runners(runners, dataset, reference=reference, batch_size=batch_size)
    out: dict[str, dict[str, Any]] = {}
    for t in result.targets:
        entry: dict[str, Any] = {
            "top1": t.metrics.top1,
            "top1_ci95": list(t.metrics.top1_ci),
            "top5": t.metrics.top5,
            "n": t.metrics.n,
        }
        c = result.comparisons.get(t.target) if reference is not None else None
        if t.target == reference:
            entry.update(top1_delta=0.0, reference=True)  # Δ against itself; no test to run
        elif c is not None:
            entry.update(
                top1_delta=c.delta,
                top1_delta_ci95=[c.ci_low, c.ci_high],
                top1_p=c.p_value,
                changed=c.changed,
                verdict=c.verdict,
            )
        out[t.target] = entry
    summary = {
        "data": dataset.source,
        "images": result.targets[0].metrics.n if result.targets else 0,
        "skipped": len(result.skipped),
        "reference": reference,
    }
    return out, summary
