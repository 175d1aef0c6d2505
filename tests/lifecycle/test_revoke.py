"""Revocation (revoke.py) against the sandbox with real Packer: a revoked base takes its
descendants with it (tags, EC2 deprecation, manifests), resolves rebuild, fail or report it, and
restore brings the images back."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta, timezone

from bridge import model
from bridge.sandbox import ACCOUNT, OTHER_ACCOUNT
from testing.bridge import external, run_bridge
from testing.sandbox import BUCKET, aws_client, builds_per_definition, own_images, tags_of

REVOCATION = set(model.REVOCATION_TAGS)


def resolve(repo, env, *flags: str) -> tuple[int, dict]:
    proc = run_bridge(["resolve", "--all", "--repo", str(repo.path), "--json", *flags], env)
    return proc.code, (json.loads(proc.stdout) if proc.stdout else {"stderr": proc.stderr})


def bridge(repo, env, *args: str):
    return run_bridge([*args, "--repo", str(repo.path)], env)


def image(ami: str) -> dict:
    (found,) = aws_client("ec2").describe_images(ImageIds=[ami])["Images"]
    return found


def snapshot_tags(ami: str) -> dict[str, str]:
    snapshot = next(m["Ebs"]["SnapshotId"] for m in image(ami)["BlockDeviceMappings"])
    (found,) = aws_client("ec2").describe_snapshots(SnapshotIds=[snapshot])["Snapshots"]
    return tags_of(found)


def manifest(name: str, fingerprint: str) -> dict:
    key = f"images/{name}/{fingerprint}.json"
    return json.loads(aws_client("s3").get_object(Bucket=BUCKET, Key=key)["Body"].read())


def test_revoking_the_base_revokes_the_snowflake_and_restore_brings_both_back(
    sandbox_env, repo, packer
):
    code, first = resolve(repo, sandbox_env, "--on-missing", "build")
    assert code == 0, first
    base, snow = first["base"], first["snowflake"]
    before = datetime.now(timezone.utc).replace(microsecond=0)

    proc = bridge(repo, sandbox_env, "revoke", "base", "--reason", "CVE-2026-1 in openssl")
    assert proc.code == 0, proc.stderr
    assert base["ami_id"] in proc.stdout and snow["ami_id"] in proc.stdout
    for result in (base, snow):
        tags = tags_of(image(result["ami_id"]))
        assert tags[model.TAG_REVOKED_BY] == base["build_id"]
        at = datetime.fromisoformat(tags[model.TAG_REVOKED_AT].replace("Z", "+00:00"))
        assert before <= at <= datetime.now(timezone.utc)
        assert {k: snapshot_tags(result["ami_id"]).get(k) for k in REVOCATION} == {
            k: tags[k] for k in REVOCATION
        }
        # EC2's deprecation: no earlier than the next minute (EC2 refuses the past).
        deprecated = datetime.fromisoformat(image(result["ami_id"])["DeprecationTime"][:19])
        assert deprecated.replace(tzinfo=timezone.utc) > at
        recorded = manifest(result["definition"], result["fingerprint"])["revoked"]
        assert recorded == {
            "at": tags[model.TAG_REVOKED_AT],
            "reason": tags[model.TAG_REVOKE_REASON],
            "by": base["build_id"],
        }
    assert tags_of(image(base["ami_id"]))[model.TAG_REVOKE_REASON] == "CVE-2026-1 in openssl"
    inherited = tags_of(image(snow["ami_id"]))[model.TAG_REVOKE_REASON]
    assert inherited == (
        f"base {base['build_id'][:12]} ({base['ami_id']}) revoked: CVE-2026-1 in openssl"
    )

    code, report = resolve(repo, sandbox_env, "--on-missing", "report")
    assert code == 3
    assert report["base"]["state"] == "revoked" and report["base"]["revoked"] == "true"
    assert report["base"]["revoke_reason"] == "CVE-2026-1 in openssl"
    assert report["base"]["found"] == "false" and report["base"]["ami_id"] == ""
    fail = bridge(repo, sandbox_env, "resolve", "base")
    assert fail.code == 3 and "revoked" in fail.stderr and "CVE-2026-1" in fail.stderr
    assert "Traceback" not in fail.stderr
    query = {"definition": "base", "repo": str(repo.path), "on_revoked": "fail"}
    refused = external(sandbox_env, query)
    assert refused.code == 3 and refused.stdout == "" and "CVE-2026-1" in refused.stderr
    status = bridge(repo, sandbox_env, "status")
    assert "REVOKED: CVE-2026-1 in openssl" in status.stdout
    graph = bridge(repo, sandbox_env, "graph", "--status")
    assert graph.code == 0, graph.stderr
    assert graph.stdout.count("color=red, style=dashed") == 2
    assert "REVOKED: CVE-2026-1 in openssl" in graph.stdout
    assert builds_per_definition() == Counter({"base": 1, "snowflake": 1})  # nothing rebuilt

    # The child is revoked through its parent: restore names the parent, and how to restore it.
    proc = bridge(repo, sandbox_env, "restore", "snowflake")
    assert proc.code == 1
    assert f"its ancestor 'base' (build {base['build_id'][:12]}" in proc.stderr
    assert f"`ami-bridge restore base --ami {base['ami_id']}`" in proc.stderr

    proc = bridge(repo, sandbox_env, "restore", "base")
    assert proc.code == 0, proc.stderr
    code, restored = resolve(repo, sandbox_env, "--on-missing", "fail")
    assert code == 0, restored
    for name in ("base", "snowflake"):
        assert restored[name]["ami_id"] == first[name]["ami_id"]
        assert restored[name]["revoked"] == "false"
        assert not REVOCATION & set(tags_of(image(first[name]["ami_id"])))
        assert not REVOCATION & set(snapshot_tags(first[name]["ami_id"]))
        assert "DeprecationTime" not in image(first[name]["ami_id"])
        assert "revoked" not in manifest(name, first[name]["fingerprint"])

    # Revoked again, the next resolve that builds rebuilds both, under new build IDs.
    assert bridge(repo, sandbox_env, "revoke", "base", "--reason", "again").code == 0
    code, second = resolve(repo, sandbox_env, "--on-missing", "build")
    assert code == 0, second
    for name in ("base", "snowflake"):
        assert second[name]["ami_id"] != first[name]["ami_id"]
        assert second[name]["build_id"] != first[name]["build_id"]
        assert second[name]["fingerprint"] == first[name]["fingerprint"]
        assert second[name]["revoked"] == "false"
        assert "revoked" not in manifest(name, first[name]["fingerprint"])
    assert second["snowflake"]["parent_ami_id"] == second["base"]["ami_id"]
    assert builds_per_definition() == Counter({"base": 2, "snowflake": 2})


def test_restoring_an_ancestor_leaves_a_descendant_revoked_for_its_own_reason(
    sandbox_env, repo, packer
):
    code, first = resolve(repo, sandbox_env, "--on-missing", "build")
    assert code == 0, first
    snow = first["snowflake"]["ami_id"]
    assert bridge(repo, sandbox_env, "revoke", "snowflake", "--reason", "docker bug").code == 0
    assert bridge(repo, sandbox_env, "revoke", "base", "--reason", "kernel bug").code == 0
    # The snowflake keeps its own, earlier revocation.
    assert tags_of(image(snow))[model.TAG_REVOKE_REASON] == "docker bug"
    restore = bridge(repo, sandbox_env, "restore", "base")
    assert restore.code == 0, restore.stderr
    assert "still revoked" in restore.stdout
    code, report = resolve(repo, sandbox_env, "--on-missing", "report")
    assert report["base"]["state"] == "found"
    assert report["snowflake"]["state"] == "revoked"
    assert report["snowflake"]["revoke_reason"] == "docker bug"
    assert bridge(repo, sandbox_env, "restore", "snowflake").code == 0
    code, report = resolve(repo, sandbox_env, "--on-missing", "fail")
    assert code == 0 and report["snowflake"]["ami_id"] == snow
    # A descendant revoked because of an ancestor is restored only through the ancestor.
    assert bridge(repo, sandbox_env, "revoke", "base", "--reason", "kernel bug").code == 0
    refused = bridge(repo, sandbox_env, "restore", "snowflake")
    assert refused.code == 1 and "restore that" in " ".join(refused.stderr.split())
    code, report = resolve(repo, sandbox_env, "--on-missing", "report")
    assert report["snowflake"]["state"] == "revoked"
    assert report["snowflake"]["revoke_reason"].endswith("revoked: kernel bug")
    assert tags_of(image(snow))[model.TAG_REVOKE_REASON].endswith("revoked: kernel bug")


def test_a_revocation_scheduled_for_later_leaves_the_image_in_use_until_brought_forward(
    sandbox_env, repo, packer
):
    """A scheduled revocation (an hour ahead: no race with a loaded machine) leaves the image in
    use and says when it goes; revoking again now brings it forward. That a scheduled one takes
    effect at its time is the planner's (tests/pipeline/test_plan.py, with the clock given)."""
    code, first = resolve(repo, sandbox_env, "--on-missing", "build")
    assert code == 0, first
    at = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(hours=1)
    stamp = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    proc = bridge(repo, sandbox_env, "revoke", "base", "--reason", "eol", "--at", stamp)
    assert proc.code == 0, proc.stderr
    code, now = resolve(repo, sandbox_env, "--on-missing", "fail")
    assert code == 0, now
    # One form of a time everywhere: the tag's, the result's, the table's.
    assert now["base"]["state"] == "found" and now["base"]["revokes_at"] == stamp
    assert tags_of(image(first["base"]["ami_id"]))[model.TAG_REVOKED_AT] == stamp
    assert now["snowflake"]["ami_id"] == first["snowflake"]["ami_id"]
    status = bridge(repo, sandbox_env, "status")
    assert f"revoked at {stamp}" in status.stdout
    proc = bridge(repo, sandbox_env, "revoke", "base", "--reason", "eol, sooner")
    assert proc.code == 0, proc.stderr
    code, later = resolve(repo, sandbox_env, "--on-missing", "report")
    assert code == 3
    assert later["base"]["state"] == later["snowflake"]["state"] == "revoked"
    assert later["base"]["revoke_reason"] == "eol, sooner"


def test_bad_input_changes_nothing(sandbox_env, repo, packer):
    code, first = resolve(repo, sandbox_env, "--on-missing", "build")
    assert code == 0, first
    cases = {
        "unknown definition": ["revoke", "nosuch", "--reason", "x"],
        "no reason": ["revoke", "base"],
        "an empty reason": ["revoke", "base", "--reason", "  "],
        "an unparsable time": ["revoke", "base", "--reason", "x", "--at", "next tuesday"],
        "a time without a zone": ["revoke", "base", "--reason", "x", "--at", "2030-01-01T00:00"],
        "an unknown AMI": ["revoke", "base", "--reason", "x", "--ami", "ami-0123456789abcdef0"],
        "a malformed AMI": ["revoke", "base", "--reason", "x", "--ami", "ami-zz"],
        "another definition's AMI": [
            "revoke", "base", "--reason", "x", "--ami", first["snowflake"]["ami_id"],
        ],
        "an unknown fingerprint": ["revoke", "base", "--reason", "x", "--fingerprint", "0" * 40],
        "restoring what is not revoked": ["restore", "base"],
    }  # fmt: skip
    for case, args in cases.items():
        proc = bridge(repo, sandbox_env, *args)
        assert proc.code == 1, (case, proc.stderr)
        assert proc.stderr.startswith("ami-bridge: error: "), (case, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1, (case, proc.stderr)
        assert "Traceback" not in proc.stderr and proc.stdout == "", case
    for found in own_images():
        assert not REVOCATION & set(tags_of(found)), found["ImageId"]
        assert "DeprecationTime" not in found
    for name in ("base", "snowflake"):
        assert "revoked" not in manifest(name, first[name]["fingerprint"])


def test_a_workload_account_sees_the_revocation_through_the_manifest(
    sandbox_env, sandbox_server, repo, packer, tmp_path
):
    data = repo.catalog()
    data["share"] = [OTHER_ACCOUNT]
    repo.set_catalog(data)
    repo.commit("share with the workload account")
    code, first = resolve(repo, sandbox_env, "--on-missing", "build")
    assert code == 0, first
    assert bridge(repo, sandbox_env, "revoke", "base", "--reason", "leaked key").code == 0
    consumer = {
        **sandbox_env,
        **sandbox_server.env(account=OTHER_ACCOUNT),
        "AMI_BRIDGE_STATE_DIR": str(tmp_path / "consumer"),
    }
    query = {
        "definitions": "base,snowflake",
        "repo": str(repo.path),
        "owners": ACCOUNT,
        "on_missing": "report",
    }
    proc = external(consumer, query)
    assert proc.code == 0, proc.stderr
    results = {n: json.loads(v) for n, v in json.loads(proc.stdout).items()}
    assert results["base"]["state"] == "revoked" and results["base"]["revoked"] == "true"
    assert results["base"]["revoke_reason"] == "leaked key"
    assert results["snowflake"]["state"] == "revoked"


def test_any_regional_copy_names_the_build_and_every_copy_is_revoked(sandbox_env, repo, packer):
    data = repo.catalog()
    data["definitions"]["base"]["regions"] = ["us-east-1", "eu-west-1"]
    data["definitions"]["snowflake"]["regions"] = ["eu-west-1"]  # built on the base's copy
    repo.set_catalog(data)
    repo.commit("base in two regions, the snowflake in eu-west-1")
    code, first = resolve(repo, sandbox_env, "--on-missing", "build", "--region", "eu-west-1")
    assert code == 0, first
    base_amis = json.loads(first["base"]["amis_json"])
    west = aws_client("ec2", "eu-west-1")
    snow = json.loads(first["snowflake"]["amis_json"])["eu-west-1"]

    proc = bridge(
        repo, sandbox_env, "revoke", "base", "--ami", base_amis["eu-west-1"], "--reason", "r"
    )
    assert proc.code == 0, proc.stderr
    for region, ami in [*base_amis.items(), ("eu-west-1", snow)]:
        (found,) = aws_client("ec2", region).describe_images(ImageIds=[ami])["Images"]
        assert tags_of(found)[model.TAG_REVOKED_BY] == first["base"]["build_id"], (region, ami)
        assert found["DeprecationTime"]
    status = bridge(repo, sandbox_env, "status", "--region", "eu-west-1")
    assert status.stdout.count("REVOKED:") == 2

    proc = bridge(
        repo, sandbox_env, "restore", "base", "--fingerprint", first["base"]["fingerprint"]
    )
    assert proc.code == 0, proc.stderr
    (found,) = west.describe_images(ImageIds=[snow])["Images"]
    assert not REVOCATION & set(tags_of(found)) and "DeprecationTime" not in found
    code, again = resolve(repo, sandbox_env, "--on-missing", "fail", "--region", "eu-west-1")
    assert code == 0, again
    assert json.loads(again["base"]["amis_json"]) == base_amis


def test_the_revocation_helpers_check_and_shape_their_values():
    from bridge.errors import QueryError
    from bridge.lifecycle.revoke import check_reason, deprecate_at, parse_time
    from bridge.model import timestamp

    now = datetime(2026, 3, 1, 12, 0, 30, 500, tzinfo=timezone.utc)
    assert parse_time(None, now) == now.replace(microsecond=0)
    assert parse_time("2026-03-02T01:00:00+01:00", now) == datetime(
        2026, 3, 2, 0, 0, tzinfo=timezone.utc
    )
    assert timestamp(parse_time("2026-03-02T00:00:00Z", now)) == "2026-03-02T00:00:00Z"
    for bad in ("tomorrow", "2026-03-02T00:00:00", ""):
        try:
            parse_time(bad, now)
            raise AssertionError(f"{bad!r} was accepted")
        except QueryError as exc:
            assert "ISO 8601" in str(exc)
    assert check_reason("  two\nlines ") == "two lines"
    for bad in (None, " ", "x" * 201):
        try:
            check_reason(bad)
            raise AssertionError(f"{bad!r} was accepted")
        except QueryError:
            pass
    # EC2 refuses a deprecation time in the past and rounds to the nearest minute: at least a
    # minute ahead of the call.
    assert deprecate_at(now - timedelta(hours=1), now) == datetime(
        2026, 3, 1, 12, 2, tzinfo=timezone.utc
    )
    later = datetime(2026, 4, 1, tzinfo=timezone.utc)
    assert deprecate_at(later, now) == later


def test_a_revocation_that_outlasts_the_minute_it_started_in_still_deprecates(
    sandbox_env, repo, packer
):
    """The minute boundary forced: the run started minutes ago (a slow machine, many images);
    each deprecation time is taken from the clock when it is sent, so EC2 never gets one in the
    past."""
    from bridge.cli import workspace
    from bridge.lifecycle.revoke import Revoker
    from bridge.settings import cache_dir, cli_flag, parse_options

    code, first = resolve(repo, sandbox_env, "--on-missing", "build")
    assert code == 0, first
    options = parse_options(
        {"repo": str(repo.path)}, spell=cli_flag, cache_dir=cache_dir(sandbox_env)
    )
    ctx = workspace.context(options, sandbox_env)
    started = datetime.now(timezone.utc) - timedelta(minutes=3)
    changes = Revoker(ctx).revoke("base", reason="slow", at=None, now=started)
    assert {c.build.definition for c in changes} == {"base", "snowflake"}
    for name in ("base", "snowflake"):
        found = image(first[name]["ami_id"])
        assert datetime.fromisoformat(found["DeprecationTime"][:19]).replace(
            tzinfo=timezone.utc
        ) > datetime.now(timezone.utc)


def test_with_on_revoke_disable_nobody_can_launch_a_revoked_image_until_it_is_restored(
    sandbox_env, repo, packer
):
    from bridge.sandbox import OTHER_ACCOUNT

    data = repo.catalog()
    data.update(on_revoke="disable", share=[OTHER_ACCOUNT])
    repo.set_catalog(data)
    repo.commit("revocations disable; shared with a workload account")
    code, first = resolve(repo, sandbox_env, "--on-missing", "build")
    assert code == 0, first
    amis = [first[name]["ami_id"] for name in ("base", "snowflake")]
    ec2 = aws_client("ec2")

    def permissions(ami: str) -> list:
        return ec2.describe_image_attribute(ImageId=ami, Attribute="launchPermission")[
            "LaunchPermissions"
        ]

    def volume_permissions(ami: str) -> list:
        (image,) = ec2.describe_images(ImageIds=[ami], IncludeDisabled=True)["Images"]
        return [
            p
            for m in image["BlockDeviceMappings"]
            if "Ebs" in m
            for p in ec2.describe_snapshot_attribute(
                SnapshotId=m["Ebs"]["SnapshotId"], Attribute="createVolumePermission"
            )["CreateVolumePermissions"]
        ]

    assert all(permissions(a) == [{"UserId": OTHER_ACCOUNT}] for a in amis)
    assert all(volume_permissions(a) == [{"UserId": OTHER_ACCOUNT}] for a in amis)
    proc = bridge(repo, sandbox_env, "revoke", "base", "--reason", "CVE-2026-2")
    assert proc.code == 0, proc.stderr
    assert ec2.describe_images(ImageIds=amis)["Images"] == []  # EC2 hides disabled images
    disabled = ec2.describe_images(ImageIds=amis, IncludeDisabled=True)["Images"]
    assert {i["State"] for i in disabled} == {"disabled"}
    assert all(permissions(a) == [] for a in amis)
    # Nor can the workload account copy their disks: the snapshots are withdrawn too.
    assert all(volume_permissions(a) == [] for a in amis)
    code, report = resolve(repo, sandbox_env, "--on-missing", "report")
    assert code == 3 and report["base"]["state"] == "revoked"
    assert report["base"]["revoke_reason"] == "CVE-2026-2"

    proc = bridge(repo, sandbox_env, "restore", "base")
    assert proc.code == 0, proc.stderr
    assert {i["State"] for i in ec2.describe_images(ImageIds=amis)["Images"]} == {"available"}
    assert all(permissions(a) == [{"UserId": OTHER_ACCOUNT}] for a in amis)  # shared again
    assert all(volume_permissions(a) == [{"UserId": OTHER_ACCOUNT}] for a in amis)
    code, restored = resolve(repo, sandbox_env, "--on-missing", "fail")
    assert code == 0, restored
    assert [restored[name]["ami_id"] for name in ("base", "snowflake")] == amis


def test_revoking_a_definition_revokes_every_build_of_its_fingerprint(sandbox_env, repo, packer):
    """Two builds of one fingerprint (a forced rebuild): the same content, so a revocation for
    what is in it holds for both, and the older never takes the revoked one's place."""
    code, first = resolve(repo, sandbox_env, "--on-missing", "build")
    assert code == 0, first
    older, child = first["base"], first["snowflake"]
    proc = bridge(repo, sandbox_env, "build", "base", "--force", "--json")
    assert proc.code == 0, proc.stderr
    newer = json.loads(proc.stdout)["base"]
    assert newer["fingerprint"] == older["fingerprint"] and newer["ami_id"] != older["ami_id"]

    proc = bridge(repo, sandbox_env, "revoke", "base", "--reason", "CVE-2026-9 in glibc")
    assert proc.code == 0, proc.stderr
    for result in (older, newer):
        tags = tags_of(image(result["ami_id"]))
        assert tags[model.TAG_REVOKED_BY] == result["build_id"]  # each by its own revocation
        assert image(result["ami_id"]).get("DeprecationTime")
    # The child built on the older build goes with it.
    assert tags_of(image(child["ami_id"]))[model.TAG_REVOKED_BY] == older["build_id"]
    looked = bridge(repo, sandbox_env, "resolve", "base", "--on-missing", "report", "--json")
    assert looked.code == 3, looked.stdout  # revoked: no older build of the same content
    assert json.loads(looked.stdout)["base"]["state"] == "revoked"
    assert manifest("base", newer["fingerprint"])["revoked"]["reason"] == "CVE-2026-9 in glibc"
    # Run again (as to complete a run cut short), ten minutes later: it completes, and moves no
    # deprecation EC2 has already (the images stay deprecated).
    from bridge.cli import workspace
    from bridge.lifecycle.revoke import Revoker
    from bridge.settings import cache_dir, cli_flag, parse_options

    deprecated = {r["ami_id"]: image(r["ami_id"])["DeprecationTime"] for r in (older, newer)}
    options = parse_options(
        {"repo": str(repo.path)}, spell=cli_flag, cache_dir=cache_dir(sandbox_env)
    )
    later = datetime.now(timezone.utc) + timedelta(minutes=10)
    Revoker(workspace.context(options, sandbox_env), clock=lambda: later).revoke(
        "base", reason="CVE-2026-9 in glibc", at=None
    )
    assert {a: image(a)["DeprecationTime"] for a in deprecated} == deprecated

    proc = bridge(repo, sandbox_env, "restore", "base")
    assert proc.code == 0, proc.stderr
    for result in (older, newer, child):
        assert not REVOCATION & set(tags_of(image(result["ami_id"]))), result["definition"]
    code, after = resolve(repo, sandbox_env, "--on-missing", "report")
    assert after["base"]["ami_id"] == newer["ami_id"] and after["base"]["state"] == "found"


def with_leaf(repo) -> None:
    """A third level: `leaf`, built on the snowflake (its template with a provisioner of its
    own)."""
    template = json.loads(repo.path.joinpath("snowflake/snowflake.json").read_text())
    template["provisioners"] = [{"type": "shell-local", "inline": ["echo leaf"]}]
    repo.write("leaf/leaf.json", json.dumps(template, indent=2))
    data = repo.catalog()
    data["definitions"]["leaf"] = {"template": "leaf/leaf.json", "parent": "snowflake"}
    repo.set_catalog(data)
    repo.commit("a grandchild of the base")


def test_revoking_the_base_revokes_a_grandchild_and_restore_brings_it_back(
    sandbox_env, repo, packer
):
    with_leaf(repo)
    code, first = resolve(repo, sandbox_env, "--on-missing", "build")
    assert code == 0, first
    base, snow, leaf = first["base"], first["snowflake"], first["leaf"]
    assert tags_of(image(leaf["ami_id"]))[model.TAG_PARENT_AMI] == snow["ami_id"]

    proc = bridge(repo, sandbox_env, "revoke", "base", "--reason", "CVE-2026-3 in zlib")
    assert proc.code == 0, proc.stderr
    tags = tags_of(image(leaf["ami_id"]))
    assert tags[model.TAG_REVOKED_BY] == base["build_id"]
    assert tags[model.TAG_REVOKE_REASON] == (
        f"base {base['build_id'][:12]} ({base['ami_id']}) revoked: CVE-2026-3 in zlib"
    )
    assert {k: snapshot_tags(leaf["ami_id"]).get(k) for k in REVOCATION} == {
        k: tags[k] for k in REVOCATION
    }
    at = datetime.fromisoformat(tags[model.TAG_REVOKED_AT].replace("Z", "+00:00"))
    deprecated = datetime.fromisoformat(image(leaf["ami_id"])["DeprecationTime"][:19])
    assert deprecated.replace(tzinfo=timezone.utc) > at
    assert manifest("leaf", leaf["fingerprint"])["revoked"]["by"] == base["build_id"]
    assert leaf["ami_id"] in proc.stdout

    # Resolving the grandchild no longer gives its image.
    code, report = resolve(repo, sandbox_env, "--on-missing", "report")
    assert code == 3
    assert report["leaf"]["state"] == "revoked" and report["leaf"]["ami_id"] == ""
    fail = bridge(repo, sandbox_env, "resolve", "leaf")
    assert fail.code == 3 and "CVE-2026-3" in fail.stderr and leaf["ami_id"] not in fail.stdout
    assert builds_per_definition() == Counter({"base": 1, "snowflake": 1, "leaf": 1})

    proc = bridge(repo, sandbox_env, "restore", "base")
    assert proc.code == 0, proc.stderr
    code, restored = resolve(repo, sandbox_env, "--on-missing", "fail")
    assert code == 0, restored
    assert restored["leaf"]["ami_id"] == leaf["ami_id"] and restored["leaf"]["revoked"] == "false"
    assert not REVOCATION & set(tags_of(image(leaf["ami_id"])))
    assert "DeprecationTime" not in image(leaf["ami_id"])
    assert "revoked" not in manifest("leaf", leaf["fingerprint"])


def test_revoking_finds_descendants_after_the_parents_home_copy_is_gone(sandbox_env, repo, packer):
    """A child records the AMI it was built on and its parent's build: when that AMI (the
    parent's home-region copy) is deregistered and put back by a copy, the child is still found
    through the build, and revoked with it."""
    from testing.sandbox import deregister

    data = repo.catalog()
    data["regions"] = ["us-east-1", "eu-west-1"]
    repo.set_catalog(data)
    repo.commit("two regions")
    code, built = resolve(repo, sandbox_env, "--on-missing", "build")
    assert code == 0, built
    base, snow = built["base"], built["snowflake"]
    deregister("us-east-1", base["ami_id"])
    repaired = bridge(repo, sandbox_env, "build", "base")  # copied back from eu-west-1
    assert repaired.code == 0, repaired.stderr
    proc = bridge(repo, sandbox_env, "revoke", "base", "--reason", "lost and found")
    assert proc.code == 0, proc.stderr
    for region, ami in json.loads(snow["amis_json"]).items():
        (found,) = aws_client("ec2", region).describe_images(ImageIds=[ami])["Images"]
        assert tags_of(found)[model.TAG_REVOKED_BY] == base["build_id"], region
