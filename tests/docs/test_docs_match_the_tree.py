"""The docs tell the truth about the tree: README's Layout names every package and module, and no
file holds committed merge-conflict markers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _layout() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("## Layout")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def _rooms() -> list[str]:
    """Every package and module of the library floors, as README names them."""
    names = []
    for floor in ("deploy_ran", "exporters", "calibration"):
        for path in sorted((ROOT / floor).iterdir()):
            if path.name.startswith(("_", ".")):
                continue
            if path.is_dir() and (path / "__init__.py").exists():
                names.append(f"{floor}/{path.name}")
            elif path.suffix == ".py":
                names.append(f"{floor}/{path.stem}")
    return names


@pytest.mark.parametrize("room", _rooms())
def test_readme_layout_names_every_package_and_module(room):
    layout = _layout()
    name = room.split("/", 1)[1]
    assert re.search(rf"`{re.escape(name)}[`/.(]|[(,] `?{re.escape(name)}`", layout) or (
        f"`{room}" in layout
    ), f"README's Layout does not mention {room}"


def test_no_file_holds_merge_conflict_markers():
    marker = re.compile(r"^(<{7} |>{7} |={7}$)", re.M)
    suffixes = {".py", ".md", ".toml", ".txt", ".cfg", ".sh", ".yaml", ".yml"}
    bad = []
    for path in ROOT.rglob("*"):
        if path.suffix not in suffixes or any(p.startswith(".") for p in path.parts):
            continue
        if "site-packages" in path.parts or not path.is_file():
            continue
        if marker.search(path.read_text(encoding="utf-8", errors="replace")):
            bad.append(str(path.relative_to(ROOT)))
    assert not bad, f"merge-conflict markers in {bad}"
