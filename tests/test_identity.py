"""Identity: the AMI handed out is the one this commit's definition builds, or the bridge refuses.

Each test is a case where a resolve once returned another image's AMI, or built something other
than what its tags record (real git, the sandbox, and real Packer where a build matters).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bridge.catalog import load_catalog
from bridge.errors import FingerprintError
from bridge.fingerprint import fingerprint_all
from bridge.git import open_repo
from testing.bridge import external, run_bridge
from testing.fingerprint import rewrite_template
from testing.git import GitRepo, make_repo
from testing.sandbox import BUCKET, aws_client, manifest_keys, own_images, tags_of


def query(repo, definition="base", **extra):
    return {"definition": definition, "repo": str(repo.path), **extra}


def fingerprints(repo):
    catalog = load_catalog(repo.path)
    snapshot = fingerprint_all(open_repo(repo.path), catalog.all())
    return {name: fp.value for name, fp in snapshot.fingerprints.items()}


def add_hardened(repo):
    """A second root whose template sits in the base's directory."""
    template = json.loads(repo.path.joinpath("base/base.json").read_text())
    template["provisioners"].append({"type": "shell-local", "inline": ["echo hardened"]})
    repo.write("base/hardened.json", json.dumps(template, indent=2))
    data = repo.catalog()
    data["definitions"]["hardened"] = {"template": "base/hardened.json"}
    repo.set_catalog(data)
    repo.commit("hardened, beside base")


def test_two_roots_in_one_directory_are_two_images(sandbox_env, repo, packer):
    alone = fingerprints(repo)["base"]
    assert alone == repo.tree_sha("base")  # alone in its directory: the seed's identity
    add_hardened(repo)
    fps = fingerprints(repo)
    assert fps["hardened"] != fps["base"]
    assert repo.tree_sha("base") not in (fps["base"], fps["hardened"])
    base = external(sandbox_env, query(repo))
    assert base.code == 0, base.stderr
    hardened = external(sandbox_env, query(repo, "hardened"))
    assert hardened.code == 0, hardened.stderr
    base_ami, hardened_ami = (
        json.loads(base.stdout)["ami_id"],
        json.loads(hardened.stdout)["ami_id"],
    )
    assert hardened_ami != base_ami
    assert json.loads(hardened.stdout)["built"] == "true"
    by_id = {i["ImageId"]: tags_of(i) for i in own_images()}
    assert by_id[hardened_ami]["ami-chain:definition"] == "hardened"


def test_a_region_the_definition_is_not_in_is_refused(sandbox_env, repo):
    asked = external(sandbox_env, query(repo, region="eu-central-1", on_missing="build"))
    assert asked.code == 1 and asked.stdout == ""
    assert "not distributed to eu-central-1 (its regions: us-east-1)" in asked.stderr
    from_env = external({**sandbox_env, "AWS_REGION": "ap-south-1"}, query(repo))
    assert from_env.code == 1 and "not distributed to ap-south-1" in from_env.stderr
    assert own_images() == [] and own_images("eu-central-1") == []


def test_a_root_keeps_its_templates_own_ami_base_default(sandbox_env, repo, packer):
    """The bridge has no parent AMI for a root, so it passes none: the template's default stands."""
    template = json.loads(repo.path.joinpath("base/base.json").read_text())
    builder = template["builders"][0]
    del builder["source_ami_filter"]
    builder["source_ami"] = "{{user `ami_base`}}"
    template["variables"]["ami_base"] = "ami-0c55b159cbfafe1f0"
    repo.write("base/base.json", json.dumps(template, indent=2))
    repo.commit("base from a pinned source")
    proc = external(sandbox_env, query(repo))
    assert proc.code == 0, proc.stderr
    assert json.loads(proc.stdout)["built"] == "true"


def test_credentials_the_owners_would_not_count_build_nothing(sandbox_env, repo, packer):
    """An image built with them would never be found: refused before Packer runs."""
    proc = external(sandbox_env, query(repo, owners="111111111111"))
    assert proc.code == 1 and proc.stdout == ""
    err = " ".join(proc.stderr.split())
    assert "these credentials are account 123456789012" in err and "(111111111111)" in err
    assert "Traceback" not in err
    assert own_images() == []
    assert manifest_keys() == []  # no manifest, and no build lease taken
    # Counting the account by its ID builds as usual.
    counted = external(sandbox_env, query(repo, owners="111111111111,123456789012"))
    assert counted.code == 0, counted.stderr


def fingerprint_at(repo, commit=None, allow_dirty=False):
    catalog = load_catalog(repo.path)
    snapshot = fingerprint_all(
        open_repo(repo.path),
        catalog.all(),
        commit=commit,
        allow_dirty=allow_dirty,
        catalog_path=catalog.path,
    )
    return {name: fp.value for name, fp in snapshot.fingerprints.items()}


def declare_docker_version(repo):
    rewrite_template(
        repo, "snowflake/snowflake.json", lambda t: t["variables"].update(docker_version="")
    )
    repo.commit("snowflake declares docker_version")


def set_variable(repo, value):
    data = repo.catalog()
    data["definitions"]["snowflake"]["variables"] = {"docker_version": value}
    repo.set_catalog(data)


def test_a_pinned_commit_is_not_fingerprinted_with_todays_catalog(repo):
    declare_docker_version(repo)
    set_variable(repo, "26")
    old = repo.commit("docker 26")
    old_fps = fingerprint_at(repo)
    set_variable(repo, "27")
    repo.commit("docker 27")
    new_fps = fingerprint_at(repo)
    assert new_fps["snowflake"] != old_fps["snowflake"]
    # The old commit's files with today's entry would be today's fingerprint: refused.
    with pytest.raises(FingerprintError, match=r"catalog entries of snowflake differ from the"):
        fingerprint_at(repo, commit=old)
    # Entries that did not change between the commits are fine.
    assert fingerprint_at_names(repo, old, ["base"]) == {"base": old_fps["base"]}


def fingerprint_at_names(repo, commit, names):
    catalog = load_catalog(repo.path)
    snapshot = fingerprint_all(
        open_repo(repo.path), catalog.closure(names), commit=commit, catalog_path=catalog.path
    )
    return {name: fp.value for name, fp in snapshot.fingerprints.items()}


def test_an_uncommitted_catalog_entry_is_dirty(sandbox_env, repo):
    declare_docker_version(repo)
    committed = fingerprint_at(repo)
    set_variable(repo, "27")
    proc = external(sandbox_env, query(repo, "snowflake"))
    assert proc.code == 1 and proc.stdout == ""
    assert "catalog entries of snowflake differ from the ones committed" in proc.stderr
    assert own_images() == []
    dirty = fingerprint_at(repo, allow_dirty=True)
    assert dirty["base"] == committed["base"] and dirty["snowflake"] != committed["snowflake"]
    # An entry nobody uses in this resolve may change freely.
    assert external(sandbox_env, query(repo, "base", on_missing="report")).code == 0


def build_logs(env):
    return "".join(p.read_text() for p in (Path(env["AMI_BRIDGE_STATE_DIR"]) / "logs").iterdir())


def test_a_pinned_commit_builds_that_commits_content(sandbox_env, repo, packer):
    repo.write("base/tasks/baseline.sh", "#!/bin/sh\necho baseline-of-the-old-commit\n")
    old = repo.commit("old baseline")
    old_fp = repo.tree_sha("base")
    repo.write("base/tasks/baseline.sh", "#!/bin/sh\necho baseline-of-the-new-commit\n")
    repo.commit("new baseline")
    proc = run_bridge(
        ["build", "base", "--commit", old, "--json", "--repo", str(repo.path)], sandbox_env
    )
    assert proc.code == 0, proc.stderr
    result = json.loads(proc.stdout)["base"]
    assert result["fingerprint"] == old_fp and result["git_commit"] == old
    logs = build_logs(sandbox_env)
    assert "baseline-of-the-old-commit" in logs and "baseline-of-the-new-commit" not in logs
    (image,) = own_images()
    assert tags_of(image)["ami-chain:git-commit"] == old


def test_a_committed_build_ignores_the_working_trees_drift(sandbox_env, repo, packer):
    """An untracked file Packer would read from the working tree is not there for the build."""
    template = json.loads(repo.path.joinpath("base/base.json").read_text())
    template["provisioners"].append({"type": "shell-local", "inline": ["cat local/secret.txt"]})
    repo.write("base/base.json", json.dumps(template, indent=2))
    repo.commit("base reads an untracked file")
    repo.write("local/secret.txt", "only-in-the-working-tree\n")
    proc = external(sandbox_env, query(repo))
    assert proc.code == 1 and proc.stdout == ""
    assert "only-in-the-working-tree" not in build_logs(sandbox_env)
    assert own_images() == []


def test_allow_dirty_builds_the_working_tree_it_fingerprinted(sandbox_env, repo, packer):
    repo.write("base/tasks/baseline.sh", "#!/bin/sh\necho uncommitted-baseline\n")
    proc = external(sandbox_env, query(repo, allow_dirty="true"))
    assert proc.code == 0, proc.stderr
    assert json.loads(proc.stdout)["fingerprint"] != repo.tree_sha("base")
    assert "uncommitted-baseline" in build_logs(sandbox_env)


def add_roles_submodule(repo, tmp_path):
    """base/roles: a submodule holding a file the base's build prints."""
    roles = make_repo(tmp_path / "roles-src", source=repo.path / "base" / "tasks")
    roles.write("site.yml", "roles-at-the-recorded-commit\n")
    recorded = roles.commit("roles v1")
    repo.git(
        "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(roles.path), "base/roles"
    )
    template = json.loads(repo.path.joinpath("base/base.json").read_text())
    template["provisioners"].append({"type": "shell-local", "inline": ["cat base/roles/site.yml"]})
    repo.write("base/base.json", json.dumps(template, indent=2))
    repo.commit("base runs its roles from a submodule")
    roles.write("site.yml", "roles-after-the-recorded-commit\n")
    roles.commit("roles v2, not recorded")
    return recorded


def test_a_submodule_is_built_at_its_recorded_commit_or_refused(
    sandbox_env, repo, packer, tmp_path
):
    add_roles_submodule(repo, tmp_path)
    bare = GitRepo(tmp_path / "clone")
    repo.git("clone", "-q", str(repo.path), str(bare.path))  # without --recurse-submodules
    assert fingerprints(bare)["base"] == fingerprints(repo)["base"]
    refused = external(sandbox_env, query(bare))
    assert refused.code == 1 and refused.stdout == ""
    assert "submodule base/roles is not checked out" in refused.stderr
    assert "git submodule update --init" in refused.stderr
    assert own_images() == []
    # The full checkout builds the submodule's recorded content.
    built = external(sandbox_env, query(repo))
    assert built.code == 0, built.stderr
    assert "roles-at-the-recorded-commit" in build_logs(sandbox_env)
    # A submodule moved past its recorded commit is an uncommitted change, like any input's.
    recorded_fp = fingerprints(repo)["base"]
    repo.git("-C", "base/roles", "pull", "-q", "origin", "HEAD")
    moved = external(sandbox_env, query(repo, on_missing="report"))
    assert moved.code == 1 and "Uncommitted changes to inputs of base: base/roles" in moved.stderr
    # Recording the new commit names a new image.
    repo.commit("record roles v2")
    assert fingerprints(repo)["base"] != recorded_fp


def test_a_catalog_in_a_subdirectory_of_a_monorepo(sandbox_env, repo):
    """The repository root is found through git; catalog paths stay relative to it."""
    data = repo.catalog()
    (repo.path / "ami-chain.json").unlink()
    repo.write("images/ami-chain.json", json.dumps(data, indent=2))
    repo.commit("the catalog lives in images/")
    from_subdir = external(sandbox_env, {**query(repo, on_missing="report"),
                                         "repo": str(repo.path / "images")})  # fmt: skip
    assert from_subdir.code == 0, from_subdir.stderr
    assert json.loads(from_subdir.stdout)["fingerprint"] == repo.tree_sha("base")
    status = run_bridge(["status", "--repo", str(repo.path / "images")], sandbox_env)
    assert status.code == 0 and "snowflake" in status.stdout, status.stderr
    elsewhere = external(sandbox_env, {**query(repo), "repo": str(repo.path / "base")})
    assert elsewhere.code == 1 and "No catalog at base/ami-chain.json" in elsewhere.stderr
    assert "git init" not in elsewhere.stderr


def test_an_empty_input_directory_says_git_does_not_track_it(sandbox_env, repo):
    (repo.path / "shared" / "empty").mkdir(parents=True)
    data = repo.catalog()
    data["definitions"]["base"]["inputs"] = ["shared/empty"]
    repo.set_catalog(data)
    repo.commit("an empty input")
    proc = external(sandbox_env, query(repo, on_missing="report"))
    assert proc.code == 1 and "git does not track empty directories" in proc.stderr


def test_a_missing_manifest_is_written_again_from_the_images_tags(sandbox_env, repo, packer):
    first = external(sandbox_env, query(repo, "snowflake"))
    assert first.code == 0, first.stderr
    result = json.loads(first.stdout)
    key = result["manifest_uri"].split("/", 3)[3]
    s3, ec2 = aws_client("s3"), aws_client("ec2")
    written = json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    # The manifest write failed after tagging: no object, no manifest tag.
    s3.delete_object(Bucket=BUCKET, Key=key)
    ec2.delete_tags(Resources=[result["ami_id"]], Tags=[{"Key": "ami-chain:manifest"}])
    report = external(sandbox_env, query(repo, "snowflake", on_missing="report"))
    assert report.code == 0 and key not in manifest_keys()  # resolve-only writes nothing
    again = external(sandbox_env, query(repo, "snowflake"))
    assert again.code == 0, again.stderr
    assert json.loads(again.stdout)["built"] == "false"
    assert json.loads(again.stdout)["manifest_uri"] == result["manifest_uri"]
    restored = json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    # What the build was seen to read is not in the image's tags: a manifest written again from
    # them does not say.
    assert {k: v for k, v in restored.items() if k not in {"build_time", "observed"}} == {
        k: v for k, v in written.items() if k not in {"build_time", "observed"}
    }
    assert "observed" in written and "observed" not in restored
    (image,) = ec2.describe_images(ImageIds=[result["ami_id"]])["Images"]
    assert tags_of(image)["ami-chain:manifest"] == result["manifest_uri"]


def test_a_pinned_commit_is_resolved_with_its_own_catalog(sandbox_env, repo):
    declare_docker_version(repo)
    set_variable(repo, "26")
    old = repo.commit("docker 26")
    old_fps = fingerprint_at(repo)
    # Today's catalog changes the variable and moves the template.
    set_variable(repo, "27")
    data = repo.catalog()
    data["definitions"]["snowflake"]["template"] = "snowflake/main.json"
    repo.set_catalog(data)
    repo.git("mv", "snowflake/snowflake.json", "snowflake/main.json")
    repo.commit("docker 27, template renamed")
    assert fingerprint_at(repo)["snowflake"] != old_fps["snowflake"]
    args = ["resolve", "snowflake", "--on-missing", "report", "--json", "--repo", str(repo.path)]
    pinned = run_bridge([*args, "--commit", old], sandbox_env)
    assert pinned.code == 3, pinned.stderr  # missing, as reported: nothing is built yet
    assert json.loads(pinned.stdout)["snowflake"]["fingerprint"] == old_fps["snowflake"]
    today = run_bridge(args, sandbox_env)
    assert json.loads(today.stdout)["snowflake"]["fingerprint"] != old_fps["snowflake"]
