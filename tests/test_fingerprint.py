from __future__ import annotations

import hashlib
import json
import os

import pytest

from bridge.catalog import load_catalog
from bridge.errors import FingerprintError
from bridge.fingerprint import encode, fingerprint_all
from bridge.git import open_repo
from testing.bridge import run_bridge
from testing.fingerprint import fingerprints, rewrite_template


def test_root_definition_matches_seed_tree_sha(repo):
    fps, snap = fingerprints(repo, ["base"])
    assert fps["base"] == repo.tree_sha("base")
    assert snap.commit == repo.git("rev-parse", "HEAD")


def test_child_fingerprint_is_documented_encoding(repo):
    fps, snap = fingerprints(repo)
    child = snap.fingerprints["snowflake"]
    assert fps["snowflake"] != repo.tree_sha("snowflake")
    assert child.parent == fps["base"]
    inputs = {e.path for e in child.inputs}
    # The snowflake runs the base's cleanup and debug tasks, so they are its inputs too.
    assert inputs == {"snowflake", "base/tasks/cleanup.sh", "base/tasks/debug.sh"}
    expected_lines = [
        "ami-chain-bridge/fingerprint/v2",
        'template "snowflake/snowflake.json"',
        f'input "base/tasks/cleanup.sh" 100755 blob {repo.git("rev-parse", "HEAD:base/tasks/cleanup.sh")}',
        f'input "base/tasks/debug.sh" 100755 blob {repo.git("rev-parse", "HEAD:base/tasks/debug.sh")}',
        f'input "snowflake" 040000 tree {repo.tree_sha("snowflake")}',
        f"parent {fps['base']}",
    ]
    text = "".join(line + "\n" for line in expected_lines)
    assert fps["snowflake"] == hashlib.sha1(text.encode()).hexdigest()
    catalog = load_catalog(repo.path)
    assert encode(catalog.get("snowflake"), child.inputs, child.parent) == text.encode()


def test_shared_script_change_rebuilds_child_not_seed_defect(repo):
    before, _ = fingerprints(repo)
    repo.write("base/tasks/cleanup.sh", "#!/bin/sh\necho changed\n")
    repo.commit("cleanup changed")
    after, _ = fingerprints(repo)
    assert after["base"] != before["base"]
    assert after["snowflake"] != before["snowflake"]


def test_parent_change_propagates_to_child(repo):
    before, _ = fingerprints(repo)
    repo.write("base/base.json", repo.path.joinpath("base/base.json").read_text() + "\n")
    repo.commit("base template whitespace")
    after, _ = fingerprints(repo)
    assert after["base"] != before["base"]
    assert after["snowflake"] != before["snowflake"]


def test_unrelated_change_changes_nothing(repo):
    before, _ = fingerprints(repo)
    repo.write("README.md", "docs\n")
    repo.write("base/tasks/../../other/notes.txt", "x\n")
    repo.commit("docs")
    after, _ = fingerprints(repo)
    assert after == before


def test_child_change_leaves_parent(repo):
    before, _ = fingerprints(repo)
    repo.write("snowflake/tasks/docker.sh", "#!/bin/sh\necho docker 2\n")
    repo.commit("docker")
    after, _ = fingerprints(repo)
    assert after["base"] == before["base"]
    assert after["snowflake"] != before["snowflake"]


def test_variables_are_fingerprinted(repo):
    rewrite_template(repo, "base/base.json", lambda t: t["variables"].update(instance_type=""))
    repo.commit("instance_type")
    before, _ = fingerprints(repo)
    data = repo.catalog()
    data["definitions"]["base"]["variables"] = {"instance_type": "t3.small"}
    repo.set_catalog(data)
    repo.commit("variables")
    after, _ = fingerprints(repo)
    assert after["base"] != before["base"]
    assert after["base"] != repo.tree_sha("base")  # variables: the composite encoding
    assert after["snowflake"] != before["snowflake"]


def test_declared_extra_inputs_are_fingerprinted(repo):
    data = repo.catalog()
    data["definitions"]["base"]["inputs"] = ["shared/motd"]
    repo.write("shared/motd", "hello\n")
    repo.set_catalog(data)
    repo.commit("motd")
    first, _ = fingerprints(repo)
    repo.write("shared/motd", "hello again\n")
    repo.commit("motd 2")
    second, _ = fingerprints(repo)
    assert first["base"] != second["base"]


def test_dirty_input_is_an_error_naming_the_file(repo):
    repo.write("base/tasks/baseline.sh", "#!/bin/sh\necho dirty\n")
    with pytest.raises(FingerprintError) as err:
        fingerprints(repo)
    assert "base/tasks/baseline.sh" in str(err.value)
    assert "allow_dirty" in str(err.value)


def test_untracked_file_in_input_is_dirty(repo):
    repo.write("snowflake/tasks/new.sh", "echo new\n")
    with pytest.raises(FingerprintError, match="snowflake/tasks/new.sh"):
        fingerprints(repo)


def test_dirty_outside_inputs_is_fine(repo):
    clean, _ = fingerprints(repo)
    repo.write("notes.txt", "scratch\n")
    again, _ = fingerprints(repo)
    assert again == clean


def test_allow_dirty_hashes_working_tree_like_git(repo):
    clean, _ = fingerprints(repo)
    repo.write("base/tasks/baseline.sh", "#!/bin/sh\necho dirty\n")
    dirty, _ = fingerprints(repo, allow_dirty=True)
    assert dirty["base"] != clean["base"]
    # Committing the same content gives the same fingerprint: git's own object hashing.
    repo.commit("now committed")
    committed, _ = fingerprints(repo)
    assert committed == dirty


def link(repo, rel: str, target: str) -> None:
    path = repo.path / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, path)


def test_a_symlink_counts_by_what_it_points_to(repo):
    repo.write("shared/hardening.sh", "#!/bin/sh\necho v1\n")
    link(repo, "base/tasks/hardening.sh", "../../shared/hardening.sh")
    repo.commit("base links a shared script")
    before, _ = fingerprints(repo, ["base"])
    assert before["base"] != repo.tree_sha("base")  # the tree SHA does not cover the target
    repo.write("shared/hardening.sh", "#!/bin/sh\necho v2\n")
    repo.commit("shared script v2")
    after, _ = fingerprints(repo, ["base"])
    assert after["base"] != before["base"]


@pytest.mark.parametrize(
    ("target", "message"),
    [("/etc/hostname", "outside the repository"), ("../../../outside", "outside the repository"),
     ("../nowhere.sh", "not in commit")],
)  # fmt: skip
def test_a_symlink_out_of_the_repository_or_to_nothing_is_refused(repo, target, message):
    link(repo, "base/tasks/linked.sh", target)
    repo.commit("a link")
    with pytest.raises(FingerprintError, match=message) as err:
        fingerprints(repo, ["base"])
    assert "base/tasks/linked.sh" in str(err.value)


def test_links_pointing_at_each_other_end(repo):
    link(repo, "base/a", "b")
    link(repo, "base/b", "a")
    repo.commit("a loop of links")
    fps, _ = fingerprints(repo, ["base"])
    assert fps["base"] == repo.tree_sha("base")  # both targets lie inside the base's own tree


def test_a_referenced_file_git_does_not_track_is_an_error(repo):
    repo.write(".gitignore", "secrets/\n")
    repo.write("secrets/token.sh", "echo token\n")
    rewrite_template(
        repo,
        "base/base.json",
        lambda t: t["provisioners"].append({"type": "shell-local", "script": "secrets/token.sh"}),
    )
    repo.commit("reads an ignored file")
    with pytest.raises(FingerprintError, match="'secrets/token.sh' of definition 'base' is not in"):
        fingerprints(repo, ["base"])


def test_a_root_beside_another_template_file_does_not_take_the_directory_sha(repo):
    """Another catalog, or a pipeline outside any catalog, may build base/other.json."""
    repo.write("base/other.json", json.dumps({"builders": []}))
    repo.commit("another template in base/")
    fps, _ = fingerprints(repo, ["base"])
    assert fps["base"] != repo.tree_sha("base")


def test_allow_dirty_hashes_files_a_dirty_template_newly_reads(repo):
    repo.write("shared/x.sh", "echo v1\n")
    repo.commit("a shared script nobody runs yet")
    rewrite_template(
        repo,
        "base/base.json",
        lambda t: t["provisioners"].append({"type": "shell-local", "script": "shared/x.sh"}),
    )
    repo.write("shared/x.sh", "echo v2\n")
    dirty, _ = fingerprints(repo, ["base"], allow_dirty=True)
    repo.commit("the base runs it, v2")
    committed, _ = fingerprints(repo, ["base"])
    assert dirty == committed  # the working tree's x.sh was hashed, not the commit's


def test_only_var_files_and_typed_variables_are_encoded(repo):
    repo.write("fleet/main.pkr.hcl", 'source "null" "a" {}\nsource "null" "b" {}\n'
               'build {\n  sources = ["source.null.a", "source.null.b"]\n}\n'
               'variable "s" {}\nvariable "n" {}\nvariable "on" {}\nvariable "names" {}\n'
               'variable "tags" {}\n')  # fmt: skip
    repo.write("vars/z.json", '{"x": "1"}\n')
    repo.write("vars/a.json", '{"x": "2"}\n')
    data = repo.catalog()
    data["definitions"]["fleet"] = {
        "template": "fleet/main.pkr.hcl",
        "only": "null.a",
        "var_files": ["vars/z.json", "vars/a.json"],
        "variables": {
            "s": "é",
            "n": 20.0,
            "on": True,
            "names": ["a", "b"],
            "tags": {"z": 1, "a": [0.5]},
        },
    }
    repo.set_catalog(data)
    repo.commit("a definition with every new key")
    fps, snap = fingerprints(repo, ["fleet"])
    blob = lambda rel: repo.git("rev-parse", f"HEAD:{rel}")  # noqa: E731
    text = "".join(line + "\n" for line in [
        "ami-chain-bridge/fingerprint/v2",
        'template "fleet/main.pkr.hcl"',
        'only "null.a"',
        f'input "fleet" 040000 tree {repo.tree_sha("fleet")}',
        f'input "vars/a.json" 100644 blob {blob("vars/a.json")}',
        f'input "vars/z.json" 100644 blob {blob("vars/z.json")}',
        'var_file "vars/z.json"',  # in the order Packer reads them, not sorted
        'var_file "vars/a.json"',
        'variable "n" 20',  # a whole number, however it is spelled
        'variable "names" ["a","b"]',
        'variable "on" true',
        'variable "s" "\\u00e9"',  # a string, as before typed variables
        'variable "tags" {"a":[0.5],"z":1}',
    ])  # fmt: skip
    fp = snap.fingerprints["fleet"]
    assert encode(load_catalog(repo.path).get("fleet"), fp.inputs, None) == text.encode()
    assert fps["fleet"] == hashlib.sha1(text.encode()).hexdigest()


@pytest.mark.parametrize(
    ("before", "after", "same"),
    [
        ({"n": 20}, {"n": 20.0}, True),
        ({"m": {"a": 1, "b": 2}}, {"m": {"b": 2, "a": 1}}, True),
        ({"n": 20}, {"n": 21}, False),
        ({"n": 20}, {"n": "20"}, False),
        ({"l": ["a", "b"]}, {"l": ["b", "a"]}, False),
        ({"on": True}, {"on": "true"}, False),
    ],
)
def test_a_variable_is_identified_by_its_value_not_its_spelling(repo, before, after, same):
    repo.write(
        "fleet/main.pkr.hcl",
        'source "null" "a" {}\nbuild {\n  sources = ["source.null.a"]\n}\n'
        + "".join(f'variable "{name}" {{}}\n' for name in before),
    )
    values = []
    for variables in (before, after):
        data = repo.catalog()
        data["definitions"]["fleet"] = {"template": "fleet", "variables": variables}
        repo.set_catalog(data)
        repo.commit("variables")
        values.append(fingerprints(repo, ["fleet"])[0]["fleet"])
    assert (values[0] == values[1]) is same


def test_var_files_order_and_content_are_the_identity(repo):
    repo.write("vars/a.json", '{"x": "1"}\n')
    repo.write("vars/b.json", '{"x": "2"}\n')

    def fingerprint(var_files):
        data = repo.catalog()
        data["var_files"] = var_files
        repo.set_catalog(data)
        repo.commit("var files")
        return fingerprints(repo, ["base"])[0]["base"]

    seed = repo.tree_sha("base")
    ab, ba = (
        fingerprint(["vars/a.json", "vars/b.json"]),
        fingerprint(["vars/b.json", "vars/a.json"]),
    )
    assert len({seed, ab, ba}) == 3  # var files name the image; their order decides values
    repo.write("vars/b.json", '{"x": "3"}\n')
    assert fingerprint(["vars/b.json", "vars/a.json"]) != ba
    assert fingerprint([]) == seed  # the base without var files keeps the seed's identity


def test_an_uncommitted_catalog_wide_var_file_list_is_dirty(repo):
    repo.write("vars/a.json", '{"x": "1"}\n')
    repo.commit("a var file")
    data = repo.catalog()
    data["var_files"] = ["vars/a.json"]
    repo.set_catalog(data)
    catalog = load_catalog(repo.path)
    with pytest.raises(FingerprintError, match="catalog entries of base, snowflake differ"):
        fingerprint_all(open_repo(repo.path), catalog.all(), catalog_path=catalog.path)


def test_a_catalog_that_is_a_symlink_in_the_repository_is_read_through_it(repo):
    """A catalog kept elsewhere in the repository and linked to: every command reads it, as
    `check` does."""
    config = repo.path / "config"
    config.mkdir()
    os.replace(repo.path / "ami-chain.json", config / "ami-chain.json")
    os.symlink("config/ami-chain.json", repo.path / "ami-chain.json")
    repo.commit("the catalog lives in config/")
    found, _ = fingerprints(repo)
    assert set(found) == {"base", "snowflake"}
    proc = run_bridge(["inputs", "snowflake", "--repo", str(repo.path), "--json"], {})
    assert proc.code == 0, proc.stderr
