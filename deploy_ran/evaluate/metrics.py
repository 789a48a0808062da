"""Accuracy of one target against ground-truth labels, from what a run keeps per image.

A run keeps only each image's top-5 class indices and its top-1 softmax probability (a few bytes
per image), so 50,000 images cost well under a megabyte per target; every number here is computed
from those:

* **top-1 / top-5** with a Wilson 95 % interval on top-1 (:func:`deploy_ran.compare.paired.wilson_interval`);
* **per-class accuracy** (images, correct, accuracy per true class);
* **mean confidence** (the mean top-1 probability) and the **expected calibration error** with
  15 equal-width confidence bins (Guo et al. 2017): the images-weighted mean of
  ``|accuracy - confidence|`` per bin. A well-calibrated model's confidence is its accuracy;
* a **confusion matrix** (true × predicted) when there are at most ``CONFUSION_MAX_CLASSES``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deploy_ran.compare.paired import wilson_interval

ECE_BINS = 15
TOPK = 5
CONFUSION_MAX_CLASSES = 50


@dataclass
class Predictions:
    """What a run keeps per image: top-k classes (best first) and the top-1 probability."""

    topk: np.ndarray  # (N, k) int32
    confidence: np.ndarray  # (N,) float32

    @property
    def top1(self) -> np.ndarray:
        return self.topk[:, 0]


def top_predictions(logits: np.ndarray, k: int = TOPK) -> Predictions:
    """Top-``k`` classes and the softmax top-1 probability of a batch of logits (float64 math).

    An image whose logits hold NaN or inf gets class ``-1`` (never a label: counted wrong) and
    confidence 0, so one broken image cannot turn every average into NaN.
    """
    x = np.array(logits, dtype=np.float64).reshape(len(logits), -1)
    broken = ~np.isfinite(x).all(axis=1)
    x[broken] = 0.0
    k = min(k, x.shape[1])
    order = np.argsort(-x, axis=1, kind="stable")[:, :k]
    shifted = x - x.max(axis=1, keepdims=True)
    probs = np.exp(shifted)
    probs /= probs.sum(axis=1, keepdims=True)
    confidence = np.take_along_axis(probs, order[:, :1], axis=1)[:, 0]
    order[broken] = -1
    confidence[broken] = 0.0
    return Predictions(order.astype(np.int32), confidence.astype(np.float32))


def expected_calibration_error(
    confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS
) -> float:
    """ECE over ``bins`` equal-width bins of (0, 1]: Σ (n_b / N) · |acc_b − conf_b|."""
    conf = np.asarray(confidence, np.float64)
    ok = np.asarray(correct, np.float64)
    if conf.size == 0:
        return float("nan")
    # Bin b holds confidences in (b/bins, (b+1)/bins]; a confidence of exactly 0 joins bin 0.
    which = np.clip(np.ceil(conf * bins).astype(np.int64) - 1, 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    acc_sum = np.bincount(which, weights=ok, minlength=bins)
    conf_sum = np.bincount(which, weights=conf, minlength=bins)
    used = count > 0
    gap = np.abs(acc_sum[used] - conf_sum[used])  # n_b · |acc_b − conf_b|
    return float(gap.sum() / conf.size)


@dataclass
class AccuracyMetrics:
    """One target's accuracy on the labelled images it was given."""

    n: int
    top1: float
    top5: float
    top1_ci: tuple[float, float]
    mean_confidence: float
    ece: float
    per_class: list[dict[str, Any]] = field(default_factory=list)
    confusion: list[list[int]] | None = None
    nonfinite: int = 0  # images whose logits held NaN/inf (counted wrong)

    def as_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "top1": self.top1,
            "top1_ci95": list(self.top1_ci),
            "top5": self.top5,
            "mean_confidence": self.mean_confidence,
            "ece": self.ece,
            "ece_bins": ECE_BINS,
            "per_class": self.per_class,
            "confusion": self.confusion,
            "nonfinite_logits": self.nonfinite,
        }


def accuracy_metrics(
    predictions: Predictions,
    labels: np.ndarray,
    num_classes: int,
    class_names: list[str] | None = None,
) -> AccuracyMetrics:
    """Every number of :class:`AccuracyMetrics` from a run's kept predictions."""
    y = np.asarray(labels, np.int64)
    n = int(y.size)
    hit1 = predictions.top1 == y
    hit5 = np.any(predictions.topk == y[:, None], axis=1)
    correct1 = int(hit1.sum())
    per_true = np.bincount(y, minlength=num_classes)
    per_hit = np.bincount(y[hit1], minlength=num_classes)
    per_class = [
        {
            "class": c,
            "name": class_names[c] if class_names and c < len(class_names) else str(c),
            "n": int(per_true[c]),
            "correct": int(per_hit[c]),
            "accuracy": float(per_hit[c] / per_true[c]) if per_true[c] else None,
        }
        for c in range(num_classes)
        if per_true[c]
    ]
    confusion = None
    if num_classes <= CONFUSION_MAX_CLASSES:
        from sklearn.metrics import confusion_matrix

        # labels= keeps the matrix num_classes square; a -1 (NaN logits) falls outside it.
        confusion = confusion_matrix(
            y, predictions.top1.astype(np.int64), labels=np.arange(num_classes)
        ).tolist()
    return AccuracyMetrics(
        n=n,
        top1=correct1 / n if n else float("nan"),
        top5=float(hit5.mean()) if n else float("nan"),
        top1_ci=wilson_interval(correct1, n),
        mean_confidence=float(predictions.confidence.astype(np.float64).mean())
        if n
        else float("nan"),
        ece=expected_calibration_error(predictions.confidence, hit1),
        per_class=per_class,
        confusion=confusion,
        nonfinite=int(np.sum(predictions.top1 < 0)),
    )
