"""The module READMEs document every input and output the code has."""

from __future__ import annotations

import re

import pytest

from testing import ROOT
from testing.tfdocs import readme_block, render

MODULES = [ROOT / "terraform", *sorted(p for p in (ROOT / "modules").iterdir() if p.is_dir())]


@pytest.mark.parametrize("module", MODULES, ids=lambda p: p.name)
def test_readme_tables_are_generated_from_code(module):
    readme = module.joinpath("README.md").read_text()
    assert readme_block(readme) == render(module), (
        f"{module.name}/README.md Inputs/Outputs tables differ from the .tf files: run `make docs`"
    )


@pytest.mark.parametrize("module", MODULES[1:], ids=lambda p: p.name)
def test_every_variable_is_typed_and_described(module):
    text = module.joinpath("variables.tf").read_text()
    for block in re.split(r'^variable "', text, flags=re.M)[1:]:
        name = block.split('"', 1)[0]
        assert re.search(r"^\s+type\s+=", block, re.M), f"{module.name}.{name} has no type"
        assert re.search(r"^\s+description\s+=", block, re.M), (
            f"{module.name}.{name} has no description"
        )


def test_readme_first_screen_has_the_two_commands():
    first_screen = "\n".join(ROOT.joinpath("README.md").read_text().splitlines()[:25])
    assert "make demo" in first_screen and "make test" in first_screen
