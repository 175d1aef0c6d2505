"""`ami-bridge check`: the catalog and every fingerprint, from git alone (the pre-commit hook)."""

from __future__ import annotations

import json

from testing import ROOT
from testing.bridge import run_bridge
from testing.fingerprint import rewrite_template

# No AWS at all: credentials unset and an endpoint nothing listens on.
OFFLINE = {
    "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
    "AWS_ACCESS_KEY_ID": "",
    "AWS_SECRET_ACCESS_KEY": "",
    "AWS_REGION": "us-east-1",
}


def check(repo, env, *args: str):
    return run_bridge(["check", "--repo", str(repo.path), *args], {**env, **OFFLINE})


def test_check_fingerprints_every_definition_without_aws(repo, tmp_path):
    data = repo.catalog()
    del data["track_source"]  # the base's filter is tracked: checked, not resolved
    repo.set_catalog(data)  # uncommitted: what is about to be committed is what is checked
    env = {"AMI_BRIDGE_STATE_DIR": str(tmp_path / "state"), "PATH": "/usr/bin:/bin"}
    proc = check(repo, env)
    assert proc.code == 0, proc.stderr
    rows = [line.split() for line in proc.stdout.splitlines()]
    assert rows[0] == ["DEFINITION", "TEMPLATE", "INPUTS", "UPSTREAM"]
    assert rows[1] == ["base", "base/base.json", "1", "builder", "0"]
    assert rows[2][:3] == ["snowflake", "snowflake/snowflake.json", "3"]


def test_check_fails_on_a_broken_template_or_catalog(repo, tmp_path):
    env = {"AMI_BRIDGE_STATE_DIR": str(tmp_path / "state"), "PATH": "/usr/bin:/bin"}
    (repo.path / "snowflake" / "snowflake.json").write_text("{")
    proc = check(repo, env)
    assert proc.code == 1 and "snowflake/snowflake.json" in proc.stderr
    assert "Traceback" not in proc.stderr
    (repo.path / "ami-chain.json").write_text(json.dumps({"definitions": {"Base": {}}}))
    proc = check(repo, env)
    assert proc.code == 1 and "invalid" in proc.stderr


def test_the_pre_commit_hook_is_valid_and_runs_check():
    from pre_commit.clientlib import load_manifest

    (hook,) = load_manifest(str(ROOT / ".pre-commit-hooks.yaml"))
    assert hook["id"] == "ami-bridge-check"
    assert hook["entry"].split() == ["ami-bridge", "check"]
    assert hook["pass_filenames"] is False and hook["language"] == "python"


def test_a_filter_behind_an_empty_source_ami_is_upstream_not_fixed(repo, tmp_path):
    """`source_ami` set from a variable that is empty leaves the choice to the filter."""

    def change(template):
        template["variables"]["source_ami_id"] = ""
        template["builders"][0]["source_ami"] = "{{user `source_ami_id`}}"

    rewrite_template(repo, "base/base.json", change)
    data = repo.catalog()
    data["definitions"]["base"]["track_source"] = True
    repo.set_catalog(data)
    env = {"AMI_BRIDGE_STATE_DIR": str(tmp_path / "state"), "PATH": "/usr/bin:/bin"}
    proc = check(repo, env)
    assert proc.code == 0, proc.stderr
    assert proc.stdout.splitlines()[1].split() == ["base", "base/base.json", "1", "builder", "0"]
    # Given a value, `source_ami` is the image: the filter only checks it.
    rewrite_template(repo, "base/base.json", lambda t: t["variables"].update(source_ami_id="ami-1"))
    proc = check(repo, env)
    assert proc.code == 0, proc.stderr
    assert proc.stdout.splitlines()[1].split() == ["base", "base/base.json", "1", "fixed"]


def test_check_reports_an_input_behind_a_checkout_filter(repo, sandbox_env):
    repo.write(".gitattributes", "base/tasks/*.sh filter=git-crypt diff=git-crypt\n")
    repo.commit("encrypted scripts")
    proc = check(repo, sandbox_env)
    assert proc.code == 1
    assert "base/tasks/cleanup.sh (filter=git-crypt)" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_list_valued_root_comment_is_warned_about_as_packer_refuses_it(repo, tmp_path):
    """The seed's published templates write `_readme` as a list, which Packer 1.5 and later
    refuse at build time; check says so (and still passes: older Packer takes it)."""
    env = {"AMI_BRIDGE_STATE_DIR": str(tmp_path / "state"), "PATH": "/usr/bin:/bin"}
    proc = check(repo, env)
    assert proc.code == 0 and "root-level comment" not in proc.stderr
    rewrite_template(repo, "base/base.json", lambda t: t.update(_readme=["Ubuntu", "LTS"]))
    repo.commit("a list comment")
    proc = check(repo, env)
    assert proc.code == 0, proc.stderr
    assert "base/base.json has the root-level comment '_readme' as a list" in proc.stderr
    assert "write it as one string" in proc.stderr
