"""The test suite keeps the shape CONTRIBUTING.md promises: test files sit in folders that mirror
the packages, every such folder is named in CONTRIBUTING's table of where a test goes, and no
test folder has an ``__init__.py`` (pytest runs in importlib mode; one would change module names
and let two ``test_x.py`` in different folders collide)."""

from __future__ import annotations

from tests.paths import ROOT

TESTS = ROOT / "tests"


def _test_folders() -> set[str]:
    return {
        p.parent.relative_to(TESTS).parts[0] for p in TESTS.rglob("test_*.py") if p.parent != TESTS
    }


def test_no_test_file_sits_at_the_top_of_tests():
    top = sorted(p.name for p in TESTS.glob("test_*.py"))
    assert top == [], f"move these into the folder of the package they check: {top}"


def test_every_test_folder_is_named_in_contributing():
    text = (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
    missing = sorted(f for f in _test_folders() if f"`tests/{f}/`" not in text)
    assert missing == [], f"add these to CONTRIBUTING.md's table of test folders: {missing}"


def test_test_folders_have_no_init_file():
    inits = sorted(
        str(p.relative_to(TESTS))
        for p in TESTS.rglob("__init__.py")
        if any(p.parent.glob("test_*.py"))
    )
    assert inits == [], f"remove these (importlib import mode needs none): {inits}"
