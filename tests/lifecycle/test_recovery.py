"""gc deletes only what EC2's Recycle Bin keeps restorable, unless told to delete for good
(recovery.py), and what it deleted comes back under its own ID."""

from __future__ import annotations

import json

import pytest

from bridge import model
from testing.bridge import run_bridge
from testing.sandbox import aws_client, fake_build, manifest_keys, recycle_bin, tags_of

EAST, WEST = "us-east-1", "eu-west-1"
GC = ["gc", "--min-age-hours", "0", "--keep", "0"]


def images(region: str) -> set[str]:
    ec2 = aws_client("ec2", region)
    return {i["ImageId"] for i in ec2.describe_images(Owners=["self"])["Images"]}


def binned(region: str) -> set[str]:
    ec2 = aws_client("ec2", region)
    return {i["ImageId"] for i in ec2.list_images_in_recycle_bin()["Images"]}


def two_builds(repo, env) -> tuple[str, str, str]:
    """The base built, then a commit and the base built again: the first AMI, its commit, and
    the new AMI."""

    def build() -> str:
        proc = run_bridge(["build", "base", "--repo", str(repo.path), "--json"], env)
        assert proc.code == 0, proc.stderr
        return str(json.loads(proc.stdout)["base"]["ami_id"])

    old = build()
    old_commit = repo.git("rev-parse", "HEAD").strip()
    baseline = repo.path / "base" / "tasks" / "baseline.sh"
    baseline.write_text(baseline.read_text() + "echo patched\n")
    repo.commit("patched")
    return old, old_commit, build()


def test_without_a_rule_gc_refuses_to_delete_and_says_what_it_would_lose(sandbox_env, repo):
    old = fake_build("base", "old")
    dry = run_bridge([*GC, "--repo", str(repo.path)], sandbox_env)
    assert dry.code == 0, dry.stderr
    assert f"not recoverable: no EC2_IMAGE rule covers {old[WEST]} in {WEST}" in dry.stdout
    before = images(EAST), images(WEST)

    refused = run_bridge([*GC, "--repo", str(repo.path), "--apply"], sandbox_env)
    assert refused.code == 1
    (error,) = [line for line in refused.stderr.splitlines() if "error:" in line]
    assert "Traceback" not in refused.stderr
    assert "no Recycle Bin retention rule covers" in error
    assert "base build old" in refused.stderr and "--unrecoverable" in refused.stderr
    assert (images(EAST), images(WEST)) == before  # nothing deleted, nothing half-done
    assert [k for k in manifest_keys() if "/leases/" in k] == []


@pytest.mark.parametrize("how", ["flag", "catalog"])
def test_deleting_for_good_takes_an_explicit_choice(sandbox_env, repo, how):
    old = fake_build("base", "old")
    flags = ["--unrecoverable"] if how == "flag" else []
    if how == "catalog":
        data = repo.catalog()
        data["require_recycle_bin"] = False
        repo.set_catalog(data)
        repo.commit("deletions need no Recycle Bin")
    proc = run_bridge([*GC, "--repo", str(repo.path), "--apply", *flags], sandbox_env)
    assert proc.code == 0, proc.stderr
    assert old[EAST] not in images(EAST) and old[WEST] not in images(WEST)
    assert not binned(EAST) and not binned(WEST)


def test_a_rule_that_keeps_images_but_not_their_snapshots_is_not_enough(sandbox_env, repo):
    """A restored image without its snapshots cannot launch: both must be kept."""
    old = fake_build("base", "old")
    for region in (EAST, WEST):
        aws_client("rbin", region).create_rule(
            ResourceType="EC2_IMAGE",
            RetentionPeriod={"RetentionPeriodValue": 7, "RetentionPeriodUnit": "DAYS"},
        )
        aws_client("rbin", region).create_rule(
            ResourceType="EBS_SNAPSHOT",
            RetentionPeriod={"RetentionPeriodValue": 7, "RetentionPeriodUnit": "DAYS"},
            ResourceTags=[{"ResourceTagKey": "backup", "ResourceTagValue": "yes"}],
        )
    refused = run_bridge([*GC, "--repo", str(repo.path), "--apply"], sandbox_env)
    assert refused.code == 1
    assert "no EBS_SNAPSHOT rule covers snap-" in refused.stderr
    assert old[EAST] in images(EAST) and old[WEST] in images(WEST)


def test_what_gc_deleted_under_a_rule_is_restored_and_resolves_again(sandbox_env, repo, packer):
    """Region-level rules for images and snapshots: gc's deletion goes to the Recycle Bin, the
    snapshots and then the image come back under their IDs, with their tags, and the old
    commit resolves to its image again without a build."""
    recycle_bin((EAST,), days=3)
    old, old_commit, _ = two_builds(repo, sandbox_env)

    proc = run_bridge([*GC, "--repo", str(repo.path), "--apply", "--json"], sandbox_env)
    assert proc.code == 0, proc.stderr
    (row,) = [b for b in json.loads(proc.stdout)["builds"] if old in b["images"].values()]
    assert row["action"] == "deleted"
    assert row["recovery"] == "the Recycle Bin keeps it 3 days"
    assert old not in images(EAST) and old in binned(EAST)

    ec2 = aws_client("ec2", EAST)
    with pytest.raises(ec2.exceptions.ClientError, match="IncorrectState"):
        ec2.restore_image_from_recycle_bin(ImageId=old)  # its snapshots first
    for snapshot in ec2.list_snapshots_in_recycle_bin()["Snapshots"]:
        ec2.restore_snapshot_from_recycle_bin(SnapshotId=snapshot["SnapshotId"])
    ec2.restore_image_from_recycle_bin(ImageId=old)
    (restored,) = ec2.describe_images(ImageIds=[old])["Images"]
    assert tags_of(restored)[model.TAG_DEFINITION] == "base"

    repo.git("checkout", "-q", old_commit)
    again = run_bridge(["resolve", "base", "--repo", str(repo.path), "--json"], sandbox_env)
    assert again.code == 0, again.stderr
    assert json.loads(again.stdout)["base"]["ami_id"] == old
    # It came back unprotected (gc lifted the protection to delete it); the next run that may
    # write, finding it in use again, protects it.
    assert restored["DeregistrationProtection"] == "disabled"
    used = run_bridge(["build", "base", "--repo", str(repo.path), "--json"], sandbox_env)
    assert used.code == 0, used.stderr
    assert json.loads(used.stdout)["base"]["ami_id"] == old  # found, not rebuilt
    (protected,) = ec2.describe_images(ImageIds=[old])["Images"]
    assert protected["DeregistrationProtection"].startswith("enabled")


def test_a_rollback_build_is_archived_and_resolves_again_only_once_unarchived(
    sandbox_env, repo, packer
):
    """archive_after_days: the build kept only for rollback has its snapshots archived (the
    current one never); at its commit it is reported archived, not handed out (nobody could
    launch it), until `unarchive` restores it."""
    data = repo.catalog()
    data["archive_after_days"] = 0
    repo.set_catalog(data)
    repo.commit("archive rollback builds")
    old, old_commit, new = two_builds(repo, sandbox_env)

    gc = run_bridge(
        ["gc", "--min-age-hours", "0", "--repo", str(repo.path), "--apply", "--json"], sandbox_env
    )
    assert gc.code == 0, gc.stderr
    fates = {
        ami: b["action"] for b in json.loads(gc.stdout)["builds"] for ami in b["images"].values()
    }
    assert fates[old] == "archived" and fates[new] == "keep"
    ec2 = aws_client("ec2", EAST)

    def tier(ami: str) -> str:
        (found,) = ec2.describe_images(ImageIds=[ami])["Images"]
        snapshot = found["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]
        (status,) = ec2.describe_snapshot_tier_status(
            Filters=[{"Name": "snapshot-id", "Values": [snapshot]}]
        )["SnapshotTierStatuses"]
        return status["StorageTier"]

    assert (tier(old), tier(new)) == ("archive", "standard")
    with pytest.raises(ec2.exceptions.ClientError, match="IncorrectState"):
        ec2.run_instances(ImageId=old, MinCount=1, MaxCount=1)

    repo.git("checkout", "-q", old_commit)
    refused = run_bridge(["resolve", "base", "--repo", str(repo.path)], sandbox_env)
    assert refused.code != 0 and old not in refused.stdout
    assert "ami-bridge unarchive base" in refused.stderr
    unarchived = run_bridge(["unarchive", "base", "--repo", str(repo.path)], sandbox_env)
    assert unarchived.code == 0, unarchived.stderr
    assert "restored" in unarchived.stdout and tier(old) == "standard"
    again = run_bridge(["resolve", "base", "--repo", str(repo.path), "--json"], sandbox_env)
    assert again.code == 0, again.stderr
    assert json.loads(again.stdout)["base"]["ami_id"] == old
    ec2.run_instances(ImageId=old, MinCount=1, MaxCount=1)


def snapshots_of(region: str, ami: str) -> list[str]:
    (image,) = aws_client("ec2", region).describe_images(ImageIds=[ami])["Images"]
    return [m["Ebs"]["SnapshotId"] for m in image["BlockDeviceMappings"] if "Ebs" in m]


@pytest.mark.parametrize(
    ("kind", "value"),
    [("EC2_IMAGE", "base"), ("EBS_SNAPSHOT", "base"), ("EC2_IMAGE", "snowflake")],
)
def test_a_region_level_rule_does_not_cover_what_it_excludes(sandbox_env, repo, kind, value):
    """A region-level rule that excludes the bridge's images (or their snapshots) by a tag they
    carry keeps none of them: gc --apply refuses, naming the gap, and deletes nothing. Excluding
    another value of the tag leaves them covered: deleted into the bin."""
    old = fake_build("base", "old")
    for region, ami in old.items():  # the bridge tags a build's snapshots as its image
        aws_client("ec2", region).create_tags(
            Resources=snapshots_of(region, ami),
            Tags=[{"Key": model.TAG_DEFINITION, "Value": "base"}],
        )
    excluded = [{"ResourceTagKey": model.TAG_DEFINITION, "ResourceTagValue": value}]
    for region in (EAST, WEST):
        for resource in ("EC2_IMAGE", "EBS_SNAPSHOT"):
            aws_client("rbin", region).create_rule(
                ResourceType=resource,
                RetentionPeriod={"RetentionPeriodValue": 7, "RetentionPeriodUnit": "DAYS"},
                **({"ExcludeResourceTags": excluded} if resource == kind else {}),
            )
    dry = run_bridge([*GC, "--repo", str(repo.path), "--json"], sandbox_env)
    assert dry.code == 0, dry.stderr
    (row,) = [b for b in json.loads(dry.stdout)["builds"] if b["build_id"] == "old"]
    applied = run_bridge([*GC, "--repo", str(repo.path), "--apply"], sandbox_env)
    if value != "base":
        assert row["recovery"] == "the Recycle Bin keeps it 7 days"
        assert applied.code == 0, applied.stderr
        assert old[EAST] in binned(EAST) and old[WEST] in binned(WEST)
        return
    # Nothing deleted (the bin would not have kept it: gone for good), and gc says why.
    assert old[EAST] in images(EAST) and old[WEST] in images(WEST)
    assert not binned(EAST) and not binned(WEST)
    assert applied.code == 1
    assert "no Recycle Bin retention rule covers" in applied.stderr
    assert f"no {kind} rule covers" in applied.stderr and "Traceback" not in applied.stderr
    assert row["recovery"].startswith(f"not recoverable: no {kind} rule covers ")


def test_unarchive_by_one_regions_ami_restores_the_build_in_every_region(sandbox_env, repo, packer):
    """`unarchive DEF --ami AMI` names one regional copy; the build is restored everywhere it
    was archived, not only in that copy's region."""
    data = repo.catalog()
    data["archive_after_days"] = 0
    data["regions"] = [EAST, WEST]
    repo.set_catalog(data)
    repo.commit("archive rollback builds, in two regions")
    old, _, _ = two_builds(repo, sandbox_env)
    gc = run_bridge(
        ["gc", "--min-age-hours", "0", "--repo", str(repo.path), "--apply", "--json"], sandbox_env
    )
    assert gc.code == 0, gc.stderr
    (row,) = [b for b in json.loads(gc.stdout)["builds"] if old in b["images"].values()]
    assert row["action"] == "archived" and set(row["images"]) == {EAST, WEST}

    def tiers() -> dict[str, str]:
        found = {}
        for region, ami in row["images"].items():
            ec2 = aws_client("ec2", region)
            (snapshot,) = snapshots_of(region, ami)
            (status,) = ec2.describe_snapshot_tier_status(
                Filters=[{"Name": "snapshot-id", "Values": [snapshot]}]
            )["SnapshotTierStatuses"]
            found[region] = status["StorageTier"]
        return found

    assert tiers() == {EAST: "archive", WEST: "archive"}
    proc = run_bridge(
        ["unarchive", "base", "--ami", row["images"][EAST], "--repo", str(repo.path)], sandbox_env
    )
    assert proc.code == 0, proc.stderr
    assert tiers() == {EAST: "standard", WEST: "standard"}
