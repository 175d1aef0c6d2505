from __future__ import annotations

import hashlib
import json
import os
import subprocess

import git
import pytest

from bridge.catalog import load_catalog
from bridge.errors import FingerprintError
from bridge.fingerprint import encode, fingerprint_all, open_repo


def fingerprints(repo, names=("base", "snowflake"), **kwargs):
    catalog = load_catalog(repo.path)
    snap = fingerprint_all(open_repo(repo.path), catalog.closure(names), **kwargs)
    return {n: f.value for n, f in snap.fingerprints.items()}, snap


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


def test_explicit_commit_fingerprints_that_commit(repo):
    old_head = repo.git("rev-parse", "HEAD")
    old, _ = fingerprints(repo)
    repo.write("base/tasks/baseline.sh", "#!/bin/sh\necho v2\n")
    repo.commit("v2")
    at_old, snap = fingerprints(repo, commit=old_head)
    assert at_old == old and snap.commit == old_head
    repo.git("tag", "-a", "-m", "release", "v1", old_head)
    tag_object = repo.git("rev-parse", "v1")
    assert tag_object != old_head
    for spelling in (old_head.upper(), old_head[:10], "v1", tag_object, "HEAD~1"):
        at, snap = fingerprints(repo, commit=spelling)
        assert (at, snap.commit) == (old, old_head), spelling


@pytest.mark.parametrize("what", ["nope", "a tree", "a missing SHA"])
def test_unknown_commit_is_clear(repo, what):
    rev = {
        "nope": "nope",
        "a tree": repo.git("rev-parse", "HEAD^{tree}"),
        "a missing SHA": "0123456789" * 4,
    }[what]
    with pytest.raises(FingerprintError, match=f"Cannot find commit '{rev}'"):
        fingerprints(repo, commit=rev)


def test_uncommitted_template_is_clear(repo):
    data = repo.catalog()
    data["definitions"]["extra"] = {"template": "extra/extra.json"}
    repo.set_catalog(data)
    repo.write("extra/extra.json", json.dumps({"builders": []}))
    with pytest.raises(FingerprintError, match="extra/extra.json"):
        fingerprints(repo, ["extra"], allow_dirty=False, commit=repo.git("rev-parse", "HEAD"))


def test_provisioner_outside_repo_is_refused(repo):
    template = json.loads(repo.path.joinpath("base/base.json").read_text())
    template["provisioners"].append({"type": "shell-local", "script": "../../etc/passwd"})
    repo.write("base/base.json", json.dumps(template))
    repo.commit("escape")
    with pytest.raises(FingerprintError, match="outside the repository"):
        fingerprints(repo, ["base"])


def test_template_dir_expression_is_resolved(repo):
    template = json.loads(repo.path.joinpath("snowflake/snowflake.json").read_text())
    template["provisioners"].append({"type": "file", "source": "{{template_dir}}/../shared/f.txt"})
    repo.write("shared/f.txt", "one\n")
    repo.write("snowflake/snowflake.json", json.dumps(template))
    repo.commit("file provisioner")
    _, snap = fingerprints(repo)
    assert "shared/f.txt" in {e.path for e in snap.fingerprints["snowflake"].inputs}


def test_not_a_git_repo(tmp_path):
    (tmp_path / "ami-chain.json").write_text("{}")
    with pytest.raises(FingerprintError, match="is not inside a git repository") as err:
        open_repo(tmp_path)
    assert "git init" not in str(err.value)  # never advice that nests a repository in another


def test_git_invocations_do_not_grow_with_history(repo, monkeypatch):
    """Fingerprinting reads objects at one commit; history length must not matter."""
    calls: list[list[str]] = []
    real_popen = subprocess.Popen

    def counting(argv, *args, **kwargs):
        if argv and "git" in str(argv[0]):
            calls.append(list(argv))
        return real_popen(argv, *args, **kwargs)

    def count_once() -> tuple[int, dict]:
        calls.clear()
        monkeypatch.setattr(subprocess, "Popen", counting)
        monkeypatch.setattr(git.cmd, "safer_popen", counting)
        try:
            fps, _ = fingerprints(repo)
        finally:
            monkeypatch.setattr(subprocess, "Popen", real_popen)
            monkeypatch.setattr(git.cmd, "safer_popen", real_popen)
        return len(calls), fps

    short_count, short_fps = count_once()
    for i in range(150):
        repo.write("history.txt", f"{i}\n")
        repo.git("add", "history.txt")
        repo.git("commit", "-q", "-m", f"history {i}")
    long_count, long_fps = count_once()
    assert long_fps == short_fps
    assert long_count == short_count
    # One `git status` and one long-lived `git cat-file --batch`, whatever the history: HEAD is
    # read from the ref files and the commit through the same reader as the trees.
    assert sorted(" ".join(argv[1:3]) for argv in calls) == [
        "cat-file --batch",
        "status --porcelain=v1",
    ]


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


def edit(repo, rel: str, text: str = "changed\n") -> None:
    repo.write(rel, text)


def edit_catalog(repo, change) -> None:
    data = repo.catalog()
    change(data["definitions"])
    repo.set_catalog(data)


def rewrite_template(repo, rel, change) -> None:
    template = json.loads(repo.path.joinpath(rel).read_text())
    change(template)
    repo.write(rel, json.dumps(template, indent=2))


def setup_inputs(repo) -> None:
    """Every kind of input the snowflake can have, committed."""
    repo.write("shared/motd", "welcome\n")
    repo.write("shared/linked.txt", "link target\n")
    repo.write("common/files/banner.txt", "banner\n")
    link(repo, "snowflake/files/linked.txt", "../../shared/linked.txt")
    rewrite_template(
        repo,
        "snowflake/snowflake.json",
        lambda t: t["provisioners"].append(
            {"type": "file", "source": "{{template_dir}}/../common/files/banner.txt",
             "destination": "/etc/banner"}
        ),
    )  # fmt: skip
    edit_catalog(
        repo,
        lambda d: d["snowflake"].update(inputs=["shared/motd"], variables={"docker": "27"}),
    )
    repo.commit("every input kind")


# (what changes, how) -> does the snowflake's fingerprint change?
INPUT_KINDS = [
    ("template", lambda r: rewrite_template(r, "snowflake/snowflake.json", lambda t: t.update(description="x")), True),
    ("file in the definition's directory", lambda r: edit(r, "snowflake/tasks/docker.sh"), True),
    ("new file in the definition's directory", lambda r: edit(r, "snowflake/new.txt"), True),
    ("provisioner script outside the directory", lambda r: edit(r, "base/tasks/cleanup.sh"), True),
    ("{{template_dir}}/.. path", lambda r: edit(r, "common/files/banner.txt"), True),
    ("symlink target", lambda r: edit(r, "shared/linked.txt"), True),
    ("declared input", lambda r: edit(r, "shared/motd"), True),
    ("catalog variable", lambda r: edit_catalog(r, lambda d: d["snowflake"].update(variables={"docker": "28"})), True),
    ("parent's content", lambda r: edit(r, "base/tasks/baseline.sh"), True),
    ("unrelated file", lambda r: edit(r, "README.txt"), False),
    ("unrelated directory", lambda r: edit(r, "other/thing.sh"), False),
    ("catalog tags", lambda r: edit_catalog(r, lambda d: d["snowflake"].update(tags={"Team": "web"})), False),
]  # fmt: skip


@pytest.mark.parametrize(
    ("change", "changes_fingerprint"),
    [case[1:] for case in INPUT_KINDS],
    ids=[case[0] for case in INPUT_KINDS],
)
def test_every_input_kind_changes_the_fingerprint_and_nothing_else_does(
    repo, change, changes_fingerprint
):
    setup_inputs(repo)
    before, _ = fingerprints(repo)
    change(repo)
    repo.commit("change")
    after, _ = fingerprints(repo)
    assert (after["snowflake"] != before["snowflake"]) is changes_fingerprint


# (block, key, value form) -> a file Packer reads: editing it changes the fingerprint.
REFERENCES = [
    ("builders", {"type": "amazon-ebs"}, "user_data_file", "one"),
    ("builders", {"type": "qemu"}, "http_directory", "dir"),
    ("builders", {"type": "qemu"}, "floppy_files", "list"),
    ("provisioners", {"type": "shell"}, "script", "one"),
    ("provisioners", {"type": "powershell"}, "scripts", "list"),
    ("provisioners", {"type": "file", "destination": "/tmp/x"}, "sources", "list"),
    ("provisioners", {"type": "ansible-local"}, "playbook_file", "one"),
    ("provisioners", {"type": "ansible-local", "playbook_file": "x.yml"}, "playbook_dir", "dir"),
    ("provisioners", {"type": "ansible-local", "playbook_file": "x.yml"}, "role_paths", "list"),
    ("provisioners", {"type": "ansible"}, "playbook_file", "one"),
    ("provisioners", {"type": "puppet-masterless"}, "manifest_file", "one"),
    ("provisioners", {"type": "salt-masterless"}, "local_state_tree", "dir"),
    ("provisioners", {"type": "chef-solo"}, "cookbook_paths", "list"),
    ("post-processors", {"type": "shell-local"}, "script", "one"),
]


@pytest.mark.parametrize(
    ("block", "fields", "key", "form"),
    REFERENCES,
    ids=[f"{r[1]['type']}.{r[2]}" for r in REFERENCES],
)
def test_files_a_template_makes_packer_read_are_inputs(repo, block, fields, key, form):
    target = "provisioning/thing" + ("/main.yml" if form == "dir" else ".txt")
    repo.write(target, "v1\n")
    repo.write("x.yml", "- hosts: all\n")  # the playbook some of the blocks name as well
    ref = target.rsplit("/", 1)[0] if form == "dir" else target
    rewrite_template(
        repo,
        "base/base.json",
        lambda t: t.setdefault(block, []).append({**fields, key: [ref] if form == "list" else ref}),
    )
    repo.commit("a reference")
    before, snap = fingerprints(repo, ["base"])
    assert ref in {e.path for e in snap.fingerprints["base"].inputs}
    repo.write(target, "v2\n")
    repo.commit("the referenced file changes")
    after, _ = fingerprints(repo, ["base"])
    assert after["base"] != before["base"]


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


def test_a_provisioner_type_whose_files_are_unknown_gets_a_warning(repo, caplog):
    rewrite_template(
        repo,
        "base/base.json",
        lambda t: t["provisioners"].append({"type": "custom-thing", "config": "x.cfg"}),
    )
    repo.commit("a custom provisioner")
    with caplog.at_level("WARNING", logger="bridge"):
        fingerprints(repo, ["base"])
    assert "type 'custom-thing'" in caplog.text and "`inputs`" in caplog.text


HCL2_TEMPLATE = """
variable "playbook" {
  type    = string
  default = "x.yml"
}
source "amazon-ebs" "tools" {
  user_data_file = "files/user-data.sh"
  region         = "us-east-1"
}
build {
  sources = ["source.amazon-ebs.tools"]
  provisioner "ansible-local" {
    playbook_file = "${path.root}/../play/site.yml"
    role_paths    = ["play/roles"]
  }
  provisioner "shell-local" {
    inline = ["echo ${var.playbook}"]
  }
  provisioner "ansible-local" {
    playbook_file = var.playbook
  }
  post-processor "shell-local" {
    script = "post/notify.sh"
  }
}
"""


@pytest.mark.parametrize("layout", ["file", "directory"])
def test_files_an_hcl2_template_makes_packer_read_are_inputs(repo, caplog, layout):
    for rel in ("files/user-data.sh", "play/site.yml", "play/roles/web/tasks.yml",
                "post/notify.sh"):  # fmt: skip
        repo.write(rel, "v1\n")
    add_tools(repo, HCL2_TEMPLATE, "tools/tools.pkr.hcl" if layout == "file" else "tools")
    with caplog.at_level("WARNING", logger="bridge"):
        before, snap = fingerprints(repo, ["tools"])
    inputs = {e.path for e in snap.fingerprints["tools"].inputs}
    assert {"files/user-data.sh", "play/site.yml", "play/roles", "post/notify.sh"} <= inputs
    assert "var.playbook" in caplog.text and "`inputs`" in caplog.text
    for rel in (
        "files/user-data.sh",
        "play/site.yml",
        "play/roles/web/tasks.yml",
        "post/notify.sh",
    ):
        repo.write(rel, f"changed {rel}\n")
        repo.commit(f"{rel} changes")
        after, _ = fingerprints(repo, ["tools"])
        assert after["tools"] != before["tools"], rel
        before = after


def add_tools(repo, hcl: str, template: str = "tools/tools.pkr.hcl") -> None:
    """A `tools` definition from one HCL2 file, committed."""
    repo.write("tools/tools.pkr.hcl", hcl)
    data = repo.catalog()
    data["definitions"]["tools"] = {"template": template}
    repo.set_catalog(data)
    repo.commit("a tools definition")


def test_an_hcl2_file_that_does_not_parse_is_named(repo):
    add_tools(repo, 'build {\n  provisioner "shell" {\n')
    with pytest.raises(
        FingerprintError,
        match="HCL2 file tools/tools.pkr.hcl of definition 'tools' cannot be parsed",
    ):
        fingerprints(repo, ["tools"])


def test_a_root_beside_another_template_file_does_not_take_the_directory_sha(repo):
    """Another catalog, or a pipeline outside any catalog, may build base/other.json."""
    repo.write("base/other.json", json.dumps({"builders": []}))
    repo.commit("another template in base/")
    fps, _ = fingerprints(repo, ["base"])
    assert fps["base"] != repo.tree_sha("base")


def test_git_failing_on_an_ignored_input_is_a_clear_error(repo):
    repo.write(".gitignore", "secret/\n")
    repo.commit("ignore a directory")
    repo.write("secret/token.sh", "echo secret\n")
    repo.write("base/tasks/baseline.sh", "#!/bin/sh\necho dirty\n")
    data = repo.catalog()
    data["definitions"]["base"]["inputs"] = ["secret/token.sh"]
    repo.set_catalog(data)
    with pytest.raises(FingerprintError, match=r"git failed while hashing .*\.gitignore"):
        fingerprints(repo, ["base"], allow_dirty=True)


def test_hcl2_attributes_named_like_blocks_are_ignored(repo):
    add_tools(repo, 'source = "x"\nbuild = "y"\n')
    fps, _ = fingerprints(repo, ["tools"])
    assert len(fps["tools"]) == 40


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
