"""Finding models as a person searches: a word is a substring, a pattern is a shell pattern."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from cli import app
from deploy_ran.models import list_models


def test_a_word_finds_every_name_containing_it():
    found = list_models("resnet")
    assert found and all("resnet" in n for n in found)
    assert found == list_models("*resnet*")
    assert "ran56_cifar" in list_models("ran56") and "ran56" in list_models("ran56")


def test_a_pattern_is_still_a_shell_pattern():
    assert list_models("ran*_cifar") == [
        n for n in list_models() if n.startswith("ran") and n.endswith("_cifar")
    ]
    assert list_models("nothing*") == [] and list_models("nothing") == []


def test_models_command_searches_by_substring():
    result = CliRunner().invoke(app, ["models", "resnet", "--json"])
    assert result.exit_code == 0, result.output
    names = [row["name"] for row in json.loads(result.output)]
    assert names == list_models("*resnet*")
