"""Which command-line arguments name existing files (for the refusal of outputs over inputs)."""

from __future__ import annotations

from pathlib import Path


def existing(text: str | Path | None) -> Path | None:
    """``text`` as a path when it names an existing file or folder (a model name does not)."""
    if text is None:
        return None
    for path in (Path(text), Path(str(text).rsplit(":", 1)[0])):  # data.npz:key names data.npz
        if path.exists():
            return path
    return None
