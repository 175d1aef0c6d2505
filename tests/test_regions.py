"""Regions: one build, copies everywhere else, repairs by copy (resolve.py, registry.copy_image)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import boto3

from bridge.model import TAG_BUILD_ID, TAG_DEFINITION, TAG_PARENT_AMI
from bridge.sandbox import ACCOUNT, OTHER_ACCOUNT
from testing.bridge import external, run_bridge
from testing.faultproxy import FaultProxy
from testing.hold import hold, holdable, provisioning, wait_for
from testing.sandbox import aws_client, builds_per_definition, deregister, own_images, tags_of

EAST, WEST = "us-east-1", "eu-west-1"


def set_regions(repo, **regions: list[str]) -> None:
    data = repo.catalog()
    for name, listed in regions.items():
        data["definitions"][name]["regions"] = listed
    repo.set_catalog(data)
    repo.commit(f"regions {regions}")


def made(region: str) -> Counter[str]:
    """Images per definition in `region`, built or copied (a copy keeps its source's name)."""
    return builds_per_definition(region)


def tagged(region: str, definition: str) -> list[dict]:
    return [i for i in own_images(region) if tags_of(i).get(TAG_DEFINITION) == definition]


def build(repo, env, *names: str):
    proc = run_bridge(["build", *(names or ["--all"]), "--repo", str(repo.path), "--json"], env)
    assert proc.code == 0, proc.stderr
    return json.loads(proc.stdout)


def test_a_two_region_image_is_built_once_and_copied_with_its_tags(sandbox_env, repo, packer):
    set_regions(repo, base=[EAST, WEST])
    result = build(repo, sandbox_env, "base")["base"]
    assert made(EAST) == Counter({"base": 1}) and made(WEST) == Counter({"base": 1})
    (east,), (west,) = tagged(EAST, "base"), tagged(WEST, "base")
    assert json.loads(result["amis_json"]) == {EAST: east["ImageId"], WEST: west["ImageId"]}
    assert tags_of(west) == tags_of(east)  # fingerprint, build ID, provenance, manifest
    assert tags_of(west)["SHA"] == result["fingerprint"]
    assert west["Description"] == f"Copy of {east['ImageId']} from {EAST}"
    # The copy's snapshot is tagged too, once the copy is available.
    (snapshot,) = [m["Ebs"]["SnapshotId"] for m in west["BlockDeviceMappings"] if "Ebs" in m]
    described = aws_client("ec2", WEST).describe_snapshots(SnapshotIds=[snapshot])
    assert tags_of(described["Snapshots"][0])["SHA"] == result["fingerprint"]
    # The manifest lists both.
    manifest = run_bridge(["manifest", "base", "--repo", str(repo.path)], sandbox_env)
    assert json.loads(manifest.stdout)["amis"] == json.loads(result["amis_json"])
    # Nothing to do the second time.
    again = build(repo, sandbox_env, "base")["base"]
    assert again["built"] == "false" and again["amis_json"] == result["amis_json"]
    assert made(EAST) + made(WEST) == Counter({"base": 2})


def test_a_region_added_later_is_copied_not_built_and_children_stay_current(
    sandbox_env, repo, packer
):
    first = build(repo, sandbox_env)
    set_regions(repo, base=[EAST, WEST])
    status = run_bridge(["status", "--json", "--repo", str(repo.path)], sandbox_env)
    base = json.loads(status.stdout)["base"]
    assert base["state"] == "partial"
    assert json.loads(base["regions_json"]) == {EAST: "found", WEST: "missing"}
    table = run_bridge(["status", "--repo", str(repo.path)], sandbox_env).stdout.splitlines()
    assert table[1].split()[1] == "partial"
    assert table[1].split()[-2:] == [EAST, f"{WEST}:missing"]
    second = build(repo, sandbox_env)
    assert made(EAST) == Counter({"base": 1, "snowflake": 1})  # nothing rebuilt
    assert made(WEST) == Counter({"base": 1})  # one copy
    assert second["base"]["fingerprint"] == first["base"]["fingerprint"]  # regions: not identity
    assert second["base"]["build_id"] == first["base"]["build_id"]
    assert second["base"]["built"] == "false" and second["base"]["state"] == "found"
    assert second["snowflake"]["ami_id"] == first["snowflake"]["ami_id"]
    assert second["snowflake"]["state"] == "found"


def test_a_deregistered_copy_is_copied_again_from_the_original(sandbox_env, repo, packer):
    set_regions(repo, base=[EAST, WEST])
    first = json.loads(build(repo, sandbox_env, "base")["base"]["amis_json"])
    deregister(WEST, first[WEST])
    proc = external(sandbox_env, {"definition": "base", "repo": str(repo.path)})
    assert proc.code == 0, proc.stderr
    amis = json.loads(json.loads(proc.stdout)["amis_json"])
    assert amis[EAST] == first[EAST] and amis[WEST] != first[WEST]
    assert made(EAST) == Counter({"base": 1})  # no build
    (west,) = tagged(WEST, "base")
    assert west["ImageId"] == amis[WEST] and west["Description"].startswith("Copy of")


def test_resolving_where_the_copy_exists_works_while_another_region_lacks_it(
    sandbox_env, repo, packer
):
    set_regions(repo, base=[EAST, WEST])
    first = json.loads(build(repo, sandbox_env, "base")["base"]["amis_json"])
    deregister(EAST, first[EAST])
    proc = run_bridge(
        ["resolve", "base", "--region", WEST, "--repo", str(repo.path), "--json"], sandbox_env
    )
    assert proc.code == 0, proc.stderr
    result = json.loads(proc.stdout)["base"]
    assert result["ami_id"] == first[WEST] and result["state"] == "partial"
    assert result["found"] == "true"
    # One image, whichever region looks: the same build ID, the manifest.
    report = run_bridge(
        [
            "resolve",
            "base",
            "--region",
            EAST,
            "--on-missing",
            "report",
            "--repo",
            str(repo.path),
            "--json",
        ],
        sandbox_env,
    )
    partial = json.loads(report.stdout)["base"]
    assert partial["build_id"] == result["build_id"] and partial["ami_id"] == ""
    assert (
        result["manifest_uri"].startswith("s3://")
        and partial["manifest_uri"] == result["manifest_uri"]
    )
    # Resolved in the region that lacks it, without building: not found, says partial.
    east = run_bridge(["resolve", "base", "--region", EAST, "--repo", str(repo.path)], sandbox_env)
    assert east.code == 3 and "partial" in east.stderr, east.stderr


def test_a_child_built_in_another_region_builds_on_the_parents_copy_there(
    sandbox_env, repo, packer
):
    set_regions(repo, base=[EAST], snowflake=[WEST])
    # No region asked for: each definition in its own (the catalog's first is us-east-1).
    env = {k: v for k, v in sandbox_env.items() if k not in ("AWS_REGION", "AWS_DEFAULT_REGION")}
    results = build(repo, env)
    base_amis = json.loads(results["base"]["amis_json"])
    assert set(base_amis) == {EAST, WEST}  # the parent goes where its child is built
    snowflake = results["snowflake"]
    assert snowflake["region"] == WEST and snowflake["parent_ami_id"] == base_amis[WEST]
    (child,) = tagged(WEST, "snowflake")
    assert tags_of(child)[TAG_PARENT_AMI] == base_amis[WEST]
    assert made(EAST) == Counter({"base": 1}) and made(WEST) == Counter({"base": 1, "snowflake": 1})
    again = build(repo, env)
    assert {n: r["built"] for n, r in again.items()} == {"base": "false", "snowflake": "false"}
    # The parent asked for where only its child lists: its copy there, never another region's.
    proc = run_bridge(
        ["resolve", "base", "--region", WEST, "--repo", str(repo.path), "--json"], env
    )
    assert proc.code == 0, proc.stderr
    there = json.loads(proc.stdout)["base"]
    assert (there["region"], there["ami_id"]) == (WEST, base_amis[WEST])


def test_a_failed_copy_tags_nothing_wrongly_and_is_copied_on_the_next_run(
    sandbox_env, sandbox_server, repo, packer, tmp_path
):
    set_regions(repo, base=[EAST, WEST])

    def copy_image(method: str, path: str, headers, body: bytes) -> bool:
        return b"Action=CopyImage" in body

    with FaultProxy(sandbox_server.endpoint, rate=0.0, block=copy_image) as proxy:
        env = {
            **sandbox_env,
            "AWS_ENDPOINT_URL": proxy.endpoint,
            "AMI_BRIDGE_PACKER_EC2_ENDPOINT": sandbox_server.endpoint,
        }
        failed = run_bridge(["build", "base", "--repo", str(repo.path)], env)
    assert failed.code == 1
    assert "copying" in failed.stderr and "Traceback" not in failed.stderr, failed.stderr
    assert proxy.counters.injected["blocked"] > 1  # retried with backoff before giving up
    (east,) = tagged(EAST, "base")  # the build itself is kept, tagged
    assert own_images(WEST) == []
    result = build(repo, sandbox_env, "base")["base"]
    assert made(EAST) == Counter({"base": 1})
    assert json.loads(result["amis_json"])[EAST] == east["ImageId"]
    (west,) = tagged(WEST, "base")
    assert tags_of(west)[TAG_BUILD_ID] == tags_of(east)[TAG_BUILD_ID]


# -- sharing ---------------------------------------------------------------------------------

ORG = "arn:aws:organizations::123456789012:organization/o-a1b2c3d4e5"
OU = "arn:aws:organizations::123456789012:ou/o-a1b2c3d4e5/ou-ab12-cd34ef56"


def set_share(repo, entries: list[str] | None, **extra) -> None:
    data = repo.catalog()
    data.pop("share", None)
    if entries is not None:
        data["share"] = entries
    data.update(extra)
    repo.set_catalog(data)
    repo.commit(f"share {entries}")


def permissions(region: str, image: dict) -> tuple[list[dict], list[dict]]:
    """(launch permissions of the image, volume permissions of its snapshot)."""
    ec2 = aws_client("ec2", region)
    launch = ec2.describe_image_attribute(ImageId=image["ImageId"], Attribute="launchPermission")
    (snapshot,) = [m["Ebs"]["SnapshotId"] for m in image["BlockDeviceMappings"] if "Ebs" in m]
    volume = ec2.describe_snapshot_attribute(
        SnapshotId=snapshot, Attribute="createVolumePermission"
    )
    return launch["LaunchPermissions"], volume["CreateVolumePermissions"]


def test_sharing_reaches_every_copy_and_an_entry_removed_is_unshared(sandbox_env, repo, packer):
    set_regions(repo, base=[EAST, WEST])
    set_share(repo, ["111122223333", ORG, OU])
    first = build(repo, sandbox_env, "base")["base"]
    for region in (EAST, WEST):
        (image,) = tagged(region, "base")
        launch, volume = permissions(region, image)
        assert sorted(map(str, launch)) == sorted(
            map(
                str,
                [
                    {"UserId": "111122223333"},
                    {"OrganizationArn": ORG},
                    {"OrganizationalUnitArn": OU},
                ],
            )
        )
        assert volume == [{"UserId": "111122223333"}]  # organisations cannot get snapshots
    set_share(repo, ["444455556666"])
    second = build(repo, sandbox_env, "base")["base"]
    assert second["built"] == "false" and second["amis_json"] == first["amis_json"]
    for region in (EAST, WEST):
        (image,) = tagged(region, "base")
        assert permissions(region, image) == (
            [{"UserId": "444455556666"}],
            [{"UserId": "444455556666"}],
        )
    set_share(repo, None)
    build(repo, sandbox_env, "base")
    for region in (EAST, WEST):
        (image,) = tagged(region, "base")
        assert permissions(region, image) == ([], [])
    assert made(EAST) == Counter({"base": 1})


def test_an_image_under_the_aws_managed_key_is_not_shared_at_all(sandbox_env, repo, packer):
    set_regions(repo, base=[EAST, "us-west-2"])  # the original is shared first, if at all
    set_share(repo, ["111122223333"], encrypted=True)  # copies under EC2's default key
    proc = run_bridge(["build", "base", "--repo", str(repo.path)], sandbox_env)
    assert proc.code == 1
    (west,) = tagged("us-west-2", "base")
    (mapping,) = [m for m in west["BlockDeviceMappings"] if "Ebs" in m]
    key = mapping["Ebs"]["KmsKeyId"]  # EBS's default key, by ARN
    assert f"encrypted with {key}, an AWS-managed KMS key" in " ".join(proc.stderr.split())
    assert "Traceback" not in proc.stderr
    for region in (EAST, "us-west-2"):  # neither the unencrypted original nor the copy
        (image,) = tagged(region, "base")
        assert permissions(region, image) == ([], [])
    assert mapping["Ebs"]["Encrypted"] is True


def test_copies_are_encrypted_with_the_key_named_for_their_region(sandbox_env, repo, packer):
    key = aws_client("kms", WEST).create_key()["KeyMetadata"]["Arn"]
    set_regions(repo, base=[EAST, WEST])
    set_share(repo, ["111122223333"], kms_keys={WEST: key})
    build(repo, sandbox_env, "base")
    (west,) = tagged(WEST, "base")
    (mapping,) = [m for m in west["BlockDeviceMappings"] if "Ebs" in m]
    assert mapping["Ebs"]["Encrypted"] is True and mapping["Ebs"]["KmsKeyId"] == key
    assert permissions(WEST, west)[0] == [{"UserId": "111122223333"}]


# -- another account -------------------------------------------------------------------------


def test_a_workload_account_resolves_the_builders_shared_image_through_its_manifest(
    sandbox_env, sandbox_server, repo, packer, tmp_path
):
    set_share(repo, [OTHER_ACCOUNT])
    built = build(repo, sandbox_env)
    consumer = {
        **sandbox_env,
        **sandbox_server.env(account=OTHER_ACCOUNT),
        "AMI_BRIDGE_STATE_DIR": str(tmp_path / "consumer"),
    }
    # EC2 shows the image to the workload account, but not the builder's tags.
    ec2 = boto3.client(
        "ec2", region_name=EAST, aws_access_key_id=consumer["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=consumer["AWS_SECRET_ACCESS_KEY"],
    )  # fmt: skip
    (seen,) = ec2.describe_images(ImageIds=[built["base"]["ami_id"]])["Images"]
    assert seen["OwnerId"] == ACCOUNT and not seen.get("Tags")
    assert ec2.describe_images(Owners=["self"])["Images"] == []
    query = {
        "definitions": "base,snowflake",
        "repo": str(repo.path),
        "owners": ACCOUNT,
        "on_missing": "fail",
    }
    proc = external(consumer, query)
    assert proc.code == 0, proc.stderr
    results = {n: json.loads(v) for n, v in json.loads(proc.stdout).items()}
    for name in ("base", "snowflake"):
        assert results[name]["ami_id"] == built[name]["ami_id"], name
        assert results[name]["state"] == "found"
    assert results["snowflake"]["parent_ami_id"] == built["base"]["ami_id"]
    # With the default on_missing=build too: found, and nothing is tagged, shared or copied.
    default = external(consumer, {k: v for k, v in query.items() if k != "on_missing"})
    assert default.code == 0, default.stderr
    assert json.loads(json.loads(default.stdout)["base"])["ami_id"] == built["base"]["ami_id"]
    # A missing image is not built with the workload account's credentials.
    repo.write("snowflake/tasks/extra.sh", "#!/bin/sh\necho extra\n")
    repo.commit("a new snowflake")
    missing = external(consumer, {k: v for k, v in query.items() if k != "on_missing"})
    assert missing.code == 1
    assert f"these credentials are account {OTHER_ACCOUNT}" in " ".join(missing.stderr.split())
    # Nothing was built or tagged in the workload account.
    assert ec2.describe_images(Owners=["self"])["Images"] == []
    assert aws_client("ec2").describe_images(Owners=["self"])["Images"] != []


def test_an_image_not_shared_with_the_workload_account_is_not_found_there(
    sandbox_env, sandbox_server, repo, packer, tmp_path
):
    build(repo, sandbox_env, "base")
    consumer = {
        **sandbox_env,
        **sandbox_server.env(account=OTHER_ACCOUNT),
        "AMI_BRIDGE_STATE_DIR": str(tmp_path / "consumer"),
    }
    query = {"definition": "base", "repo": str(repo.path), "owners": ACCOUNT, "on_missing": "fail"}
    proc = external(consumer, query)
    assert proc.code == 3 and "no image carries that fingerprint" in proc.stderr, proc.stderr


def test_a_copy_made_later_is_shared_like_the_original(sandbox_env, repo, packer):
    set_share(repo, [OTHER_ACCOUNT])
    build(repo, sandbox_env, "base")
    set_regions(repo, base=[EAST, WEST])
    build(repo, sandbox_env, "base")
    (west,) = tagged(WEST, "base")
    assert permissions(WEST, west) == ([{"UserId": OTHER_ACCOUNT}], [{"UserId": OTHER_ACCOUNT}])


def test_a_re_copied_region_replaces_the_gone_copy_in_the_manifest(sandbox_env, repo, packer):
    set_regions(repo, base=[EAST, WEST])
    first = json.loads(build(repo, sandbox_env, "base")["base"]["amis_json"])
    deregister(WEST, first[WEST])
    again = json.loads(build(repo, sandbox_env, "base")["base"]["amis_json"])
    manifest = run_bridge(["manifest", "base", "--repo", str(repo.path)], sandbox_env)
    assert json.loads(manifest.stdout)["amis"] == again != first


def test_a_build_found_partial_after_waiting_is_copied_not_built_again(
    sandbox_env, sandbox_server, repo, packer, tmp_path
):
    """The first builder's copy fails; the second, which saw the image missing and waited for
    the lease, copies the built image instead of building again. The first is held in Packer
    until the second is seen waiting (events, not a race against a sleep)."""
    holdable(repo)
    set_regions(repo, base=[EAST, WEST])
    held = hold(tmp_path / "first")

    def copy_image(method: str, path: str, headers, body: bytes) -> bool:
        return b"Action=CopyImage" in body

    with FaultProxy(sandbox_server.endpoint, rate=0.0, block=copy_image) as proxy:
        first = subprocess.Popen(
            [sys.executable, "-m", "bridge", "build", "base", "--repo", str(repo.path)],
            env={
                **sandbox_env,
                "AWS_ENDPOINT_URL": proxy.endpoint,
                "AMI_BRIDGE_PACKER_EC2_ENDPOINT": sandbox_server.endpoint,
                "AMI_BRIDGE_STATE_DIR": str(tmp_path / "first"),
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_for(lambda: provisioning(tmp_path / "first") or first.poll() is not None)
        assert first.poll() is None, first.communicate()
        # The second looks while the first is in Packer: the image is missing, so it waits.
        with (tmp_path / "second.err").open("w") as told:
            argv = ["build", "base", "--repo", str(repo.path), "--json"]
            second = subprocess.Popen(
                [sys.executable, "-m", "bridge", *argv],
                env={**sandbox_env, "AMI_BRIDGE_STATE_DIR": str(tmp_path / "second")},
                stdout=subprocess.PIPE,
                stderr=told,
                text=True,
            )
        wait_for(
            lambda: (
                "is being built by" in (tmp_path / "second.err").read_text()
                or second.poll() is not None
            )
        )
        held.unlink()
        _, first_err = first.communicate(timeout=240)
        second_out, _ = second.communicate(timeout=240)
        second_err = (tmp_path / "second.err").read_text()
    assert first.returncode == 1 and "copying" in first_err, first_err
    assert second.returncode == 0, second_err
    result = json.loads(second_out)["base"]
    assert made(EAST) == Counter({"base": 1}) and made(WEST) == Counter({"base": 1})
    assert set(json.loads(result["amis_json"])) == {EAST, WEST}


def test_a_child_built_on_the_parents_copy_elsewhere_counts_from_every_region(
    sandbox_env, repo, packer
):
    """The child's image in us-east-1 is a copy of one built in ap-southeast-2 on the parent's
    copy there: looked at from us-east-1, where that copy of the parent is not looked up, it
    is current (the parent's build ID), not outdated."""
    south = "ap-southeast-2"
    set_regions(repo, base=[EAST], snowflake=[south, EAST])
    built = run_bridge(
        ["build", "snowflake", "--region", south, "--repo", str(repo.path), "--json"], sandbox_env
    )
    assert built.code == 0, built.stderr
    child = json.loads(built.stdout)["snowflake"]
    looked = run_bridge(["status", "--json", "--repo", str(repo.path)], sandbox_env)
    status = json.loads(looked.stdout)
    assert status["snowflake"]["state"] == "found", status["snowflake"]
    assert status["snowflake"]["build_id"] == child["build_id"]
    again = build(repo, sandbox_env, "snowflake")["snowflake"]
    assert again["built"] == "false"
    assert made(south) == Counter({"base": 1, "snowflake": 1})
    assert made(EAST) == Counter({"base": 1, "snowflake": 1})  # the base's build, the child's copy
