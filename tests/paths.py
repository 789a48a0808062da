"""Where the repository and the committed test data are, for tests at any folder depth.

Test files live in folders that mirror the packages (``tests/runners/``, ``tests/compare/``...),
so ``Path(__file__).parent`` means something different in each; these two constants do not.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the repository root (cli.py, pyproject.toml)
DATA = ROOT / "tests" / "data"  # small committed files: tiny ONNX models, TensorRT API surfaces
