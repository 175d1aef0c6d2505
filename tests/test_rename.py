"""Renaming a definition (`formerly`): its images are still its images, nothing is rebuilt
(catalog.py, plan.py, publish.adopt; real Packer and the sandbox)."""

from __future__ import annotations

import json

from bridge import model
from testing.bridge import external, run_bridge
from testing.sandbox import BUCKET, manifest_keys, own_images, tags_of


def resolve(env, repo, definition, **extra):
    proc = external(env, {"definition": definition, "repo": str(repo.path), **extra})
    assert proc.code == 0, proc.stderr
    return json.loads(proc.stdout)


def rename_snowflake(repo, *, formerly: bool) -> None:
    data = repo.catalog()
    spec = data["definitions"].pop("snowflake")
    if formerly:
        spec["formerly"] = ["snowflake"]
    data["definitions"]["web"] = spec
    data["manifest"] = {"bucket": BUCKET, "prefix": "images"}
    repo.set_catalog(data)
    repo.commit("snowflake is now web")


def test_a_renamed_definition_resolves_to_its_image_and_rebuilds_nothing(sandbox_env, repo, packer):
    data = repo.catalog()
    data["manifest"] = {"bucket": BUCKET, "prefix": "images"}
    repo.set_catalog(data)
    repo.commit("manifests")
    before = resolve(sandbox_env, repo, "snowflake")
    images = len(own_images())
    rename_snowflake(repo, formerly=True)

    looked = resolve(sandbox_env, repo, "web", on_missing="fail")
    assert (looked["ami_id"], looked["fingerprint"]) == (before["ami_id"], before["fingerprint"])

    built = run_bridge(["build", "web", "--repo", str(repo.path), "--json"], sandbox_env)
    assert built.code == 0, built.stderr
    report = json.loads(built.stdout)["web"]
    assert report["ami_id"] == before["ami_id"] and report["state"] == "found"
    assert len(own_images()) == images  # nothing built
    (image,) = [i for i in own_images() if i["ImageId"] == before["ami_id"]]
    assert tags_of(image)[model.TAG_DEFINITION] == "web"
    assert f"images/web/{before['fingerprint']}.json" in manifest_keys()
    assert report["manifest_uri"] == f"s3://{BUCKET}/images/web/{before['fingerprint']}.json"


def test_without_formerly_a_renamed_definition_is_missing(sandbox_env, repo, packer):
    before = resolve(sandbox_env, repo, "snowflake")
    rename_snowflake(repo, formerly=False)
    proc = external(
        sandbox_env, {"definition": "web", "repo": str(repo.path), "on_missing": "fail"}
    )
    assert proc.code == 3, proc.stderr
    assert before["fingerprint"] in proc.stderr


def test_a_former_name_that_is_a_current_definition_is_refused(repo):
    data = repo.catalog()
    data["definitions"]["snowflake"]["formerly"] = ["base"]
    repo.set_catalog(data)
    proc = run_bridge(["check", "--repo", str(repo.path)], {})
    assert proc.code == 1
    assert "`formerly`" in proc.stderr and "'base'" in proc.stderr
