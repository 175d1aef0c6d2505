"""The module READMEs document every input and output the code has."""

from __future__ import annotations

import re

import pytest

from tests.conftest import ROOT

MODULES = [ROOT / "terraform", *sorted(p for p in (ROOT / "modules").iterdir() if p.is_dir())]


def names(path, kind: str) -> list[str]:
    return re.findall(rf'^{kind} "([^"]+)"', path.read_text(), re.M)


@pytest.mark.parametrize("module", MODULES, ids=lambda p: p.name)
def test_readme_tables_match_code(module):
    readme = module.joinpath("README.md").read_text()
    docs = readme.split("<!-- BEGIN_TF_DOCS -->", 1)[1].split("<!-- END_TF_DOCS -->", 1)[0]
    inputs, outputs = docs.split("## Outputs", 1)
    documented_inputs = re.findall(r"^\| `([^`]+)` \|", inputs, re.M)
    documented_outputs = re.findall(r"^\| `([^`]+)` \|", outputs, re.M)
    assert documented_inputs == names(module / "variables.tf", "variable")
    assert documented_outputs == names(module / "outputs.tf", "output")


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
