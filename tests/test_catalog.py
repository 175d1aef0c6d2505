from __future__ import annotations

import os
import re

import pytest

from bridge.catalog import load_catalog
from bridge.errors import CatalogError
from bridge.repopaths import normalize


def test_example_catalog_loads_in_chain_order(repo):
    catalog = load_catalog(repo.path)
    assert [d.name for d in catalog.all()] == ["base", "snowflake"]
    snowflake = catalog.get("snowflake")
    assert snowflake.parent == "base"
    assert snowflake.template_format == "json"
    assert snowflake.directory == "snowflake"
    assert dict(snowflake.tags) == {"Team": "platform"}
    assert catalog.manifest_bucket == "ami-chain-manifests"
    assert catalog.closure(["snowflake"]) == [catalog.get("base"), snowflake]


def test_parents_come_first_whatever_the_file_order(repo):
    data = repo.catalog()
    data["definitions"] = {
        "leaf": {"template": "snowflake/snowflake.json", "parent": "mid"},
        "mid": {"template": "snowflake/snowflake.json", "parent": "base"},
        "base": {"template": "base/base.json"},
    }
    repo.set_catalog(data)
    catalog = load_catalog(repo.path)
    assert [d.name for d in catalog.all()] == ["base", "mid", "leaf"]
    assert [d.name for d in catalog.closure(["leaf"])] == ["base", "mid", "leaf"]


def test_hcl2_file_and_directory(repo):
    repo.write("hcl/main.pkr.hcl", "# hcl\n")
    data = repo.catalog()
    data["definitions"]["hfile"] = {"template": "hcl/main.pkr.hcl"}
    data["definitions"]["hdir"] = {"template": "hcl/"}
    repo.set_catalog(data)
    catalog = load_catalog(repo.path)
    assert catalog.get("hfile").template_format == "hcl2"
    assert catalog.get("hfile").directory == "hcl"
    assert catalog.get("hdir").template_format == "hcl2"
    assert catalog.get("hdir").directory == "hcl"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["definitions"]["snowflake"].update(parent="ghost"), "parent 'ghost'"),
        (lambda d: d["definitions"]["base"].update(parent="snowflake"), "parent cycle"),
        (lambda d: d["definitions"]["base"].update(parent="base"), "base -> base"),
        (
            lambda d: d["definitions"]["base"].update(template="../outside.json"),
            "leaves the repository",
        ),
        (
            lambda d: d["definitions"]["base"].update(template="/etc/passwd"),
            "at $.definitions.base.template",
        ),
        (lambda d: d["definitions"]["base"].update(template="base/missing.json"), "does not exist"),
        (lambda d: d["definitions"]["base"].update(inputs=["../../x"]), "leaves the repository"),
        (lambda d: d["definitions"]["base"].update(colour="blue"), "$.definitions.base"),
        (
            lambda d: d["definitions"].update({"Bad Name": {"template": "base/base.json"}}),
            "$.definitions",
        ),
        (lambda d: d.update(definitions={}), "$.definitions"),
        (lambda d: d.update(owners=["someone"]), "$.owners[0]"),
        (
            lambda d: d["definitions"]["base"].update(variables={"x": 1}),
            "$.definitions.base.variables.x",
        ),
        # The bridge's own variables: a catalog value would build what the tags do not say.
        *[
            (
                lambda d, v=variable: d["definitions"]["snowflake"].update(variables={v: "x"}),
                f"sets the Packer variable {variable!r}, which the bridge sets itself",
            )
            for variable in ("ami_base", "ami_sha", "ami_name", "region")
        ],
    ],
)
def test_invalid_catalogs_are_named(repo, mutate, message):
    data = repo.catalog()
    mutate(data)
    repo.set_catalog(data)
    with pytest.raises(CatalogError) as err:
        load_catalog(repo.path)
    assert message in str(err.value)


def test_cycle_is_spelled_out(repo):
    data = repo.catalog()
    data["definitions"]["base"]["parent"] = "snowflake"
    repo.set_catalog(data)
    with pytest.raises(
        CatalogError, match="base -> snowflake -> base|snowflake -> base -> snowflake"
    ):
        load_catalog(repo.path)


def test_malformed_json_says_where(repo):
    repo.write("ami-chain.json", '{"definitions": {,}}')
    with pytest.raises(CatalogError, match="not valid JSON.*line 1, column 18"):
        load_catalog(repo.path)


def test_missing_catalog(tmp_path):
    with pytest.raises(CatalogError, match="No catalog at ami-chain.json"):
        load_catalog(tmp_path)


def test_symlinked_template_leaving_repo_is_refused(repo, tmp_path):
    outside = tmp_path / "outside.json"
    outside.write_text("{}")
    os.symlink(outside, repo.path / "base" / "link.json")
    data = repo.catalog()
    data["definitions"]["base"]["template"] = "base/link.json"
    repo.set_catalog(data)
    with pytest.raises(CatalogError, match="leaves the repository"):
        load_catalog(repo.path)


def test_unknown_definition_lists_known(repo):
    with pytest.raises(CatalogError, match="defines base, snowflake"):
        load_catalog(repo.path).get("nope")


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("snowflak", "Did you mean 'snowflake'?"),
        ("Snowflake", "names are lowercase: did you mean 'snowflake'?"),
    ],
)
def test_unknown_definition_suggests_the_closest(repo, name, hint):
    with pytest.raises(CatalogError, match=re.escape(hint)):
        load_catalog(repo.path).get(name)


def test_unknown_definition_in_a_large_catalog_is_not_a_wall_of_names(repo):
    data = repo.catalog()
    for i in range(200):
        data["definitions"][f"image-{i:03d}"] = {"template": "base/base.json"}
    repo.set_catalog(data)
    with pytest.raises(CatalogError) as error:
        load_catalog(repo.path).get("zzz")
    assert "It defines 202" in str(error.value) and "image-150" not in str(error.value)


def test_normalize():
    assert normalize("./base/") == "base"
    assert normalize(".") == "."
    assert normalize("a/../b/c") == "b/c"


def hcl2_definition(repo, **entry) -> dict:
    """A catalog with `hcl`, an HCL2 directory definition; `entry` adds to it (not written)."""
    repo.write("hcl/main.pkr.hcl", "# hcl\n")
    repo.write("vars/defaults.pkrvars.hcl", 'x = "1"\n')
    repo.write("vars/defaults.json", '{"x": "1"}\n')
    repo.write("vars/notes.txt", "x\n")
    data = repo.catalog()
    data["definitions"]["hcl"] = {"template": "hcl", **entry}
    return data


def test_typed_variables_load(repo):
    variables = {"n": 3, "ratio": 0.5, "on": True, "names": ["a"], "tags": {"k": "v"}, "s": "x"}
    repo.set_catalog(hcl2_definition(repo, variables=variables))
    assert dict(load_catalog(repo.path).get("hcl").variables) == variables


@pytest.mark.parametrize("value", [3, True, ["a"], {"k": "v"}])
def test_a_json_template_takes_string_variables_only(repo, value):
    data = repo.catalog()
    data["definitions"]["base"]["variables"] = {"count": value}
    repo.set_catalog(data)
    with pytest.raises(CatalogError) as err:
        load_catalog(repo.path)
    assert "$.definitions.base.variables.count" in str(err.value)
    assert "whose variables are strings" in str(err.value)


def test_a_number_packer_cannot_take_is_refused(repo):
    repo.set_catalog(hcl2_definition(repo))
    text = (repo.path / "ami-chain.json").read_text()
    repo.write(
        "ami-chain.json",
        text.replace('"template": "hcl"', '"template": "hcl", "variables": {"n": 1e999}'),
    )
    with pytest.raises(CatalogError, match="variables.n: it holds inf"):
        load_catalog(repo.path)


def test_var_files_are_the_catalogs_in_order_or_the_definitions_own(repo):
    data = hcl2_definition(repo)
    data["var_files"] = ["vars/defaults.json", "./vars/defaults.pkrvars.hcl"]
    data["definitions"]["own"] = {"template": "hcl", "var_files": ["vars/defaults.json"]}
    data["definitions"]["none"] = {"template": "hcl", "var_files": []}
    repo.set_catalog(data)
    catalog = load_catalog(repo.path)
    assert catalog.get("hcl").var_files == ("vars/defaults.json", "vars/defaults.pkrvars.hcl")
    assert catalog.get("base").var_files == ("vars/defaults.json", "vars/defaults.pkrvars.hcl")
    assert catalog.get("own").var_files == ("vars/defaults.json",)
    assert catalog.get("none").var_files == ()


def test_only_names_one_build(repo):
    repo.set_catalog(hcl2_definition(repo, only="amazon-ebs.a"))
    catalog = load_catalog(repo.path)
    assert catalog.get("hcl").only == "amazon-ebs.a"
    assert catalog.get("base").only is None


INVALID_ENTRIES = [
    ({"variables": {"x": None}}, "$.definitions.hcl.variables.x"),
    ({"variables": {"x": [1, None]}}, "$.definitions.hcl.variables.x[1]"),
    ({"var_files": ["vars/missing.json"]}, "var file of 'hcl' 'vars/missing.json'"),
    ({"var_files": ["vars"]}, "'vars' in ami-chain.json is a directory"),
    ({"var_files": ["../outside.json"]}, "leaves the repository"),
    ({"var_files": ["vars/defaults.json", "vars/defaults.json"]}, "$.definitions.hcl.var_files"),
    ({"var_files": ["vars/notes.txt"]}, "ends neither in .hcl nor in .json"),
    ({"only": "amazon-ebs.*"}, "names one build exactly, without wildcards or commas"),
    ({"only": "amazon-ebs.a,amazon-ebs.b"}, "without wildcards or commas"),
    ({"only": ""}, "$.definitions.hcl.only"),
]


@pytest.mark.parametrize(("entry", "message"), INVALID_ENTRIES)
def test_invalid_entries_are_named(repo, entry, message):
    repo.set_catalog(hcl2_definition(repo, **entry))
    with pytest.raises(CatalogError) as err:
        load_catalog(repo.path)
    assert message in str(err.value)


def test_a_definition_with_more_tags_than_an_image_has_room_for_is_refused(repo):
    """EC2 allows 50 tags on an image; the bridge's own (and the fingerprint) must fit beside a
    definition's, or the build would fail only when it is tagged."""
    from bridge import model

    room = model.TAGS_PER_RESOURCE - len(model.BRIDGE_TAGS) - 1
    assert model.TAG_BUILT_AT in model.BRIDGE_TAGS and 0 < room < 50
    data = repo.catalog()
    data["definitions"]["base"]["tags"] = {f"Tag{n}": "x" for n in range(room)}
    repo.set_catalog(data)
    assert len(load_catalog(repo.path).get("base").tags) == room
    data["definitions"]["base"]["tags"]["OneMore"] = "x"
    repo.set_catalog(data)
    with pytest.raises(CatalogError) as err:
        load_catalog(repo.path)
    message = " ".join(str(err.value).split())
    assert f"'base' has {room + 1} tags" in message
    assert f"at most {room}" in message and "Remove 1 of them" in message


def test_the_catalog_docs_state_the_room_a_definition_has_for_tags():
    from pathlib import Path

    from bridge import model

    own = len(model.BRIDGE_TAGS) + 1
    readme = (Path(__file__).resolve().parent.parent / "docs" / "catalog.md").read_text()
    assert f"at most {model.TAGS_PER_RESOURCE - own}, since EC2 allows 50" in readme
    assert f"the bridge may put {own} of its own" in readme
