"""Packer is the referee (observe.py, pipeline/referee.py): every build runs under strace, and a
repository file it read that the identity does not cover fails it, with nothing published."""

from __future__ import annotations

import json
import os

import pytest

from bridge import model
from testing.bridge import external
from testing.sandbox import BUCKET, aws_client, manifest_keys, own_images, tags_of

READS_SHARED = "#!/bin/sh\necho baseline\ncat shared/motd.txt\n"


@pytest.fixture
def strace() -> None:
    """The tests of observation need strace (`make setup` installs it)."""
    from shutil import which

    assert which("strace"), "strace is not on PATH: install it (apt-get install strace; make setup)"


def resolve(env, repo, definition="base", **extra):
    return external(env, {"definition": definition, "repo": str(repo.path), **extra})


def manifest(key_part: str) -> dict:
    (key,) = [
        k for k in manifest_keys() if key_part in k and k.endswith(".json") and "intoto" not in k
    ]
    body = aws_client("s3").get_object(Bucket=BUCKET, Key=key)["Body"].read()
    return json.loads(body)


def test_a_script_that_reads_a_file_outside_the_identity_fails_the_build(
    sandbox_env, repo, packer, strace
):
    repo.write("shared/motd.txt", "welcome\n")
    repo.write("base/tasks/baseline.sh", READS_SHARED)
    repo.commit("baseline reads a file the identity does not name")
    proc = resolve(sandbox_env, repo)
    assert proc.code == 1, proc.stdout
    assert "shared/motd.txt" in proc.stderr and "`cat shared/motd.txt`" in proc.stderr
    assert "`inputs`" in proc.stderr and "deregistered" in proc.stderr
    assert "Traceback" not in proc.stderr
    # Nothing resolvable: no image left, no manifest.
    assert [i for i in own_images() if i["State"] != "deregistered"] == []
    assert manifest_keys() == []


def test_listing_the_read_in_inputs_builds_and_records_what_was_read(
    sandbox_env, repo, packer, strace
):
    repo.write("shared/motd.txt", "welcome\n")
    repo.write("base/tasks/baseline.sh", READS_SHARED)
    data = repo.catalog()
    data["definitions"]["base"]["inputs"] = ["shared/motd.txt"]
    repo.set_catalog(data)
    repo.commit("the read is an input")
    proc = resolve(sandbox_env, repo)
    assert proc.code == 0, proc.stderr
    observed = manifest("base/")["observed"]
    assert observed["traced"] is True
    reads = {r["path"]: r["blob"] for r in observed["reads"]}
    blob = repo.git("rev-parse", "HEAD:shared/motd.txt").strip()
    assert reads["shared/motd.txt"] == blob
    assert {"base/base.json", "base/tasks/baseline.sh"} <= set(reads)


def test_with_keep_rejected_the_image_is_kept_tagged_rejected_and_never_resolved(
    sandbox_env, repo, packer, strace
):
    repo.write("shared/motd.txt", "welcome\n")
    repo.write("base/tasks/baseline.sh", READS_SHARED)
    repo.set_catalog({**repo.catalog(), "keep_rejected": True})
    repo.commit("keep what is rejected")
    proc = resolve(sandbox_env, repo)
    assert proc.code == 1 and "kept, tagged ami-chain:rejected" in proc.stderr
    (image,) = own_images()
    tags = tags_of(image)
    assert tags[model.TAG_REJECTED].startswith("read outside its identity")
    assert "SHA" not in tags and tags[model.TAG_DEFINITION] == "base"
    again = resolve(sandbox_env, repo, on_missing="report")
    assert json.loads(again.stdout)["ami_id"] == ""


def test_observe_off_builds_without_looking(sandbox_env, repo, packer):
    repo.write("shared/motd.txt", "welcome\n")
    repo.write("base/tasks/baseline.sh", READS_SHARED)
    repo.commit("baseline reads a file the identity does not name")
    proc = resolve({**sandbox_env, "AMI_BRIDGE_OBSERVE": "off"}, repo)
    assert proc.code == 0, proc.stderr
    assert manifest("base/")["observed"] == {"traced": False, "why_not": "observe is off"}


def test_observe_required_without_strace_fails_before_building(sandbox_env, repo, packer, tmp_path):
    # A PATH with Packer and the shell's tools but no strace.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("packer", "sh", "git", "cat", "echo"):
        from shutil import which

        found = which(tool)
        if found:
            os.symlink(found, bin_dir / tool)
    env = {**sandbox_env, "PATH": str(bin_dir), "AMI_BRIDGE_OBSERVE": "required"}
    proc = resolve(env, repo)
    assert proc.code == 1
    assert "observe = required" in proc.stderr and "strace is not on PATH" in proc.stderr
    assert own_images() == [] and manifest_keys() == []


def test_an_unknown_observe_setting_is_refused(sandbox_env, repo):
    proc = resolve({**sandbox_env, "AMI_BRIDGE_OBSERVE": "sometimes"}, repo)
    assert proc.code == 1
    assert (
        "AMI_BRIDGE_OBSERVE is 'sometimes'" in proc.stderr and "required, auto, off" in proc.stderr
    )


def test_a_read_outside_the_repository_is_a_warning_and_recorded(
    sandbox_env, repo, packer, strace, tmp_path
):
    outside = tmp_path / "outside" / "banner.txt"
    outside.parent.mkdir()
    outside.write_text("from the build machine\n")
    repo.write("base/tasks/baseline.sh", f"#!/bin/sh\ncat {outside}\n")
    repo.commit("baseline uploads a file from the build machine")
    proc = resolve(sandbox_env, repo)
    assert proc.code == 0, proc.stderr
    assert f"read {outside}, outside the repository" in proc.stderr
    assert str(outside) in manifest("base/")["observed"]["outside"]
