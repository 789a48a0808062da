"""Accuracy on labelled data: ``evaluate(targets, data)`` and what it reports.

``data`` reads labelled images (folder, CSV/TSV list, .npz); ``metrics`` computes top-1/top-5,
per-class accuracy, confidence and calibration error from a run's kept predictions; ``run``
streams the data through every target and compares each with the reference
(:mod:`deploy_ran.compare.paired`); ``output`` writes the JSON and PNG (the terminal table:
:mod:`deploy_ran.tables.evaluate`).
"""

from deploy_ran.evaluate.data import DataError, LabelledData, labelled_arrays, read_labelled
from deploy_ran.evaluate.metrics import AccuracyMetrics, expected_calibration_error
from deploy_ran.evaluate.run import EvaluateResult, TargetAccuracy, evaluate, evaluate_runners

__all__ = [
    "AccuracyMetrics",
    "DataError",
    "EvaluateResult",
    "LabelledData",
    "TargetAccuracy",
    "evaluate",
    "evaluate_runners",
    "labelled_arrays",
    "expected_calibration_error",
    "read_labelled",
]
