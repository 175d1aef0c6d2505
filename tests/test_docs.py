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


def _anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives a page's headings."""
    found = set()
    for heading in re.findall(r"^#{1,6} (.*)$", markdown, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(slug)
    return found


DOCS = sorted((ROOT / "docs").glob("*.md"))


def test_the_readme_is_short_and_links_every_docs_page():
    readme = ROOT.joinpath("README.md").read_text()
    assert len(readme.splitlines()) < 300
    linked = set(re.findall(r"\]\(docs/([\w-]+\.md)", readme))
    assert linked == {p.name for p in DOCS}


@pytest.mark.parametrize("page", [ROOT / "README.md", *DOCS], ids=lambda p: p.name)
def test_every_link_between_the_pages_resolves(page):
    """A relative link names a file that exists, and an anchor a heading of its page."""
    text = page.read_text()
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue  # a URL
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.exists(), f"{page.name} links {target}: no such file"
        if anchor:
            assert anchor in _anchors(linked.read_text()), f"{page.name} links {target}"
