"""ami_chain's inputs other than `definition` are ami_catalog's, copied by testing/tfvars.py."""

from __future__ import annotations

import shutil

import hcl2
import pytest

from testing.tfvars import BEGIN, END, SOURCE, TARGET, differences, main, shared_blocks

REGION = "AWS region to resolve in. Null means the AWS provider's region."


@pytest.fixture
def copies(tmp_path):
    """Copies of the two variables.tf files, (ami_catalog's, ami_chain's), agreeing."""
    source, target = tmp_path / "catalog.tf", tmp_path / "chain.tf"
    shutil.copy(SOURCE, source)
    shutil.copy(TARGET, target)
    assert main([str(source), str(target)]) == 0
    return source, target


def test_ami_chain_has_the_catalogs_shared_inputs_as_written():
    problems = differences(SOURCE, TARGET)
    assert not problems, "\n".join([*problems, "run `make docs`"])
    assert main(["--check"]) == 0


def test_ami_chain_keeps_its_own_definition_outside_the_markers():
    text = TARGET.read_text()
    marked = text[text.index(BEGIN) : text.index(END)]
    assert 'variable "definition"' in text
    assert 'variable "definition"' not in marked
    assert 'variable "definitions"' not in text
    assert "definitions" not in shared_blocks(SOURCE)


def test_ami_chain_passes_every_shared_input_to_the_catalog():
    (module,) = hcl2.load(TARGET.with_name("main.tf").open())["module"]
    inputs = {k: v for k, v in module['"catalog"'].items() if k not in ("source", "__is_block__")}
    assert inputs == {
        "definitions": ["${var.definition}"],
        **{name: f"${{var.{name}}}" for name in shared_blocks(SOURCE)},
    }


def test_check_names_a_variable_whose_description_changed_in_the_catalog(copies, capsys):
    source, target = copies
    source.write_text(source.read_text().replace(REGION, "The region to resolve in."))
    assert differences(source, target) == [f'variable "region" differs from {source}']
    assert main(["--check", str(source), str(target)]) == 1
    assert 'variable "region" differs' in capsys.readouterr().err

    own = target.read_text()[: target.read_text().index(BEGIN)]
    assert main([str(source), str(target)]) == 0
    assert differences(source, target) == []
    assert 'description = "The region to resolve in."' in target.read_text()
    assert REGION not in target.read_text()
    assert target.read_text().startswith(own)


def test_check_names_a_block_edited_in_ami_chain(copies):
    source, target = copies
    edited = target.read_text().replace('default     = "build"', 'default     = "report"', 1)
    assert edited != target.read_text()
    target.write_text(edited)
    assert differences(source, target) == [f'variable "on_missing" differs from {source}']


def test_a_new_catalog_input_is_copied_and_a_removed_one_dropped(copies):
    source, target = copies
    added = 'variable "jobs" {\n  description = "Builds at once."\n  type        = number\n}'
    text = source.read_text()
    start = text.index('variable "commit" {')
    end = text.index("\n}\n", start) + 3
    source.write_text(text[:start] + text[end:].lstrip("\n") + "\n" + added + "\n")
    assert differences(source, target) == [
        f'variable "jobs" of {source} is missing',
        f'variable "commit" is not in {source}',
    ]
    main([str(source), str(target)])
    assert differences(source, target) == []
    assert 'variable "commit"' not in target.read_text()
    assert target.read_text().endswith(f"{added}\n\n{END}\n")


def test_a_variable_declared_by_both_outside_the_markers_is_an_error(copies):
    source, target = copies
    region = source.read_text()
    start = region.index('variable "region" {')
    block = region[start : region.index("\n}\n", start) + 2]
    target.write_text(target.read_text().replace(BEGIN, f"{block}\n\n{BEGIN}"))
    with pytest.raises(ValueError, match="declares region outside its markers"):
        differences(source, target)
