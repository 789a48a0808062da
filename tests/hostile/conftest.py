"""The hostile tests' shared pieces: the corpus and registry on ``sys.path`` (importlib import
mode does not add test folders), and the valid inputs every invocation starts from."""

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from corpus import png  # noqa: E402  (needs the path above)


@pytest.fixture(scope="session")
def valid(tmp_path_factory, cifar_onnx, cifar_checkpoint):
    """The valid inputs every invocation starts from (hostile cases replace one of them)."""
    folder = tmp_path_factory.mktemp("valid")
    images = folder / "images"
    images.mkdir()
    for i in range(3):
        png(images / f"im{i}.png", (34 + i, 32), seed=i)
    for k, cls in enumerate(("class 0", "class 1")):
        (folder / "labelled" / cls).mkdir(parents=True)
        for i in range(2):
            png(folder / "labelled" / cls / f"im{i}.png", (32, 32), seed=10 + 2 * k + i)
    (folder / "labels.txt").write_text("".join(f"class {i}\n" for i in range(10)))
    np.save(folder / "data.npy", np.random.default_rng(0).normal(size=(2, 3, 32, 32)).astype("f4"))
    onnx_path = folder / "m.onnx"
    shutil.copy(cifar_onnx, onnx_path)
    return {
        "folder": folder,
        "onnx": str(onnx_path),
        "target": str(onnx_path),
        "images": str(images),
        "labels": str(folder / "labels.txt"),
        "data": str(folder / "data.npy"),
        "labelled": str(folder / "labelled"),
        "checkpoint": str(cifar_checkpoint),
    }
