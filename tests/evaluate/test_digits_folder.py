"""examples/digits_folder.py: the digits test split as a labelled folder evaluate reads."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from deploy_ran.evaluate import read_labelled

ROOT = Path(__file__).resolve().parents[2]


def test_digits_folder_is_the_test_split_with_integer_classes(tmp_path):
    spec = importlib.util.spec_from_file_location(
        "digits_folder", ROOT / "examples/digits_folder.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.write_digits_folder(tmp_path / "val") == 450
    data = read_labelled(tmp_path / "val")
    assert len(data) == 450 and data.class_names is None  # integer folders are the indices
    assert all(int(p.parent.name) == y for p, y in zip(data.paths, data.labels))
    assert np.bincount(data.labels).tolist() == [45, 46, 44, 46, 45, 46, 45, 45, 43, 45]
