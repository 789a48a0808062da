"""scikit-learn's digits test split as a labelled image folder, for ``evaluate``/``bench --data``.

    python examples/digits_folder.py digits_val/       # digits_val/<digit>/<index>.png, 450 images
    python cli.py evaluate digits.onnx digits.int8.onnx --data digits_val/

The same seeded 75/25 split as ``examples/digits.py data`` (so the images are that example's test
split), each 8×8 digit upscaled bilinearly to 32×32, grey copied to RGB and saved as an 8-bit PNG
under a folder named by its digit: an ImageFolder tree whose integer class folders are the class
indices. Unlike the ``.npz`` (exact floats), the PNGs are rounded to 1/255, as real images are.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image


def write_digits_folder(output: str | Path, size: int = 32, seed: int = 0) -> int:
    """Write the test split under ``output/<digit>/``; returns the number of images."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    index = np.arange(len(digits.target))
    _, test = train_test_split(index, test_size=0.25, random_state=seed, stratify=digits.target)
    out = Path(output)
    for i in test:
        pixels = digits.images[i].astype(np.float32) / 16.0
        big = np.asarray(
            Image.fromarray(pixels).resize((size, size), Image.Resampling.BILINEAR)
        ).clip(0.0, 1.0)
        folder = out / str(digits.target[i])
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((big * 255).round().astype(np.uint8)).convert("RGB").save(
            folder / f"{i:04d}.png"
        )
    return len(test)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python examples/digits_folder.py OUTPUT_FOLDER")
    print(f"wrote {write_digits_folder(sys.argv[1])} images under {sys.argv[1]}")
