"""`ami-bridge gc` against the sandbox: what it deletes, what it keeps, and why."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass

import pytest

from bridge import model
from bridge.aws.lease import LeaseConfig, LeaseManager, lease_key
from testing.bridge import run_bridge
from testing.faultproxy import FaultProxy
from testing.hold import wait_for
from testing.sandbox import (
    BUCKET,
    aws_client,
    deregister,
    fake_build,
    make_image,
    manifest_keys,
    recycle_bin,
    tags_of,
)

REGIONS = ("us-east-1", "eu-west-1")


def ec2(region):
    return aws_client("ec2", region)


def state():
    """Every image (region, AMI) and snapshot (region, ID) this account owns."""
    images, snapshots = set(), set()
    for region in REGIONS:
        images |= {
            (region, i["ImageId"]) for i in ec2(region).describe_images(Owners=["self"])["Images"]
        }
        snapshots |= {
            (region, s["SnapshotId"])
            for s in ec2(region).describe_snapshots(OwnerIds=["self"])["Snapshots"]
        }
    return images, snapshots


def snapshots_of(amis):
    found = set()
    for region, ami in amis.items():
        for i in ec2(region).describe_images(ImageIds=[ami])["Images"]:
            found |= {
                (region, m["Ebs"]["SnapshotId"]) for m in i["BlockDeviceMappings"] if "Ebs" in m
            }
    return found


@dataclass
class World:
    repo: object
    protected: dict  # why -> region -> AMI
    doomed: dict
    foreign: str  # an image without the bridge's tags


def two_region_world(repo, env) -> World:
    """A real build of base and snowflake at HEAD in two regions, and older builds: each kind of
    use protecting one, and three nobody uses (a base, and a snowflake built on another). The
    Recycle Bin keeps images and snapshots in both regions."""
    recycle_bin(REGIONS)
    data = repo.catalog()
    data["regions"] = list(REGIONS)
    repo.set_catalog(data)
    repo.commit("two regions")
    built = run_bridge(["build", "--all", "--repo", str(repo.path), "--json"], env)
    assert built.code == 0, built.stderr
    result = json.loads(built.stdout)
    current = {name: json.loads(r["amis_json"]) for name, r in result.items()}

    in_template = fake_build("base", "old-template")
    in_instance = fake_build("snowflake", "old-instance", parent=fake_build("base", "old-parent"))
    in_channel = fake_build("base", "old-channel")
    in_asg = fake_build("base", "old-asg")
    in_parameter = fake_build("base", "old-parameter")
    doomed_base = fake_build("base", "old-unused")
    doomed_child = fake_build("snowflake", "old-unused-child", parent=doomed_base)
    doomed_other = fake_build("snowflake", "old-unused-2", parent=current["base"])

    # A launch template in eu-west-1 whose OLD version (not the default) has the image.
    eu = ec2("eu-west-1")
    eu.create_launch_template(
        LaunchTemplateName="web", LaunchTemplateData={"ImageId": in_template["eu-west-1"]}
    )
    eu.create_launch_template_version(
        LaunchTemplateName="web", LaunchTemplateData={"ImageId": current["snowflake"]["eu-west-1"]}
    )
    eu.modify_launch_template(LaunchTemplateName="web", DefaultVersion="2")
    # A stopped instance of the old snowflake in us-east-1 (its base build is then kept too).
    instance = ec2("us-east-1").run_instances(
        ImageId=in_instance["us-east-1"], MinCount=1, MaxCount=1
    )
    ec2("us-east-1").stop_instances(InstanceIds=[instance["Instances"][0]["InstanceId"]])
    # A channel whose previous version is the old image.
    ssm = aws_client("ssm", "us-east-1")
    name = "/ami-chain/example/base/prod"
    for ami in (in_channel["us-east-1"], current["base"]["us-east-1"]):
        ssm.put_parameter(
            Name=name, Value=ami, Type="String", DataType="aws:ec2:image", Overwrite=True
        )
    # An Auto Scaling group's launch configuration in eu-west-1.
    autoscaling = aws_client("autoscaling", "eu-west-1")
    autoscaling.create_launch_configuration(
        LaunchConfigurationName="old", ImageId=in_asg["eu-west-1"], InstanceType="t3.micro"
    )
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName="workers",
        LaunchConfigurationName="old",
        MinSize=0,
        MaxSize=0,
        AvailabilityZones=["eu-west-1a"],
    )
    # An application's own parameter, outside the channels: only EC2's DescribeImageReferences
    # knows it.
    aws_client("ssm", "eu-west-1").put_parameter(
        Name="/app/ami", Value=in_parameter["eu-west-1"], Type="String", DataType="aws:ec2:image"
    )
    # An Auto Scaling group launching the template's old version, named by number.
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName="web",
        LaunchTemplate={"LaunchTemplateName": "web", "Version": "1"},
        MinSize=0,
        MaxSize=0,
        AvailabilityZones=["eu-west-1a"],
    )
    foreign = make_image(ec2("us-east-1"), "not-ours")
    return World(
        repo,
        protected={
            "current base": current["base"],
            "current snowflake": current["snowflake"],
            "launch template version": in_template,
            "instance": in_instance,
            "channel history": in_channel,
            "auto scaling group": in_asg,
            "parameter": in_parameter,
        },
        doomed={
            "unused base": doomed_base,
            "its child": doomed_child,
            "another child": doomed_other,
        },
        foreign=foreign,
    )


def gc_run(world, env, *flags):
    return run_bridge(
        ["gc", "--repo", str(world.repo.path), "--keep", "0", "--min-age-hours", "0", *flags], env
    )


def test_gc_deletes_only_what_nothing_protects_in_both_regions(sandbox_env, repo, packer):
    world = two_region_world(repo, sandbox_env)
    parent = _parent_of(world.protected["instance"])
    images_before, snapshots_before = state()
    doomed_snapshots = set().union(*(snapshots_of(a) for a in world.doomed.values()))
    assert len(doomed_snapshots) == 6  # three builds, two regions, one snapshot each

    proc = gc_run(world, sandbox_env, "--apply", "--json")
    assert proc.code == 0, proc.stderr
    report = json.loads(proc.stdout)
    images, snapshots = state()
    for why, amis in {**world.protected, "parent of a kept child": parent}.items():
        assert {(r, a) for r, a in amis.items()} <= images, f"{why} was deleted"
    for why, amis in world.doomed.items():
        assert not {(r, a) for r, a in amis.items()} & images, f"{why} was kept"
    assert ("us-east-1", world.foreign) in images
    assert images == images_before - {
        (r, a) for amis in world.doomed.values() for r, a in amis.items()
    }
    assert snapshots == snapshots_before - doomed_snapshots
    by_build = {b["build_id"]: b for b in report["builds"]}
    assert {b for b, r in by_build.items() if r["action"] == "deleted"} == {
        "old-unused",
        "old-unused-child",
        "old-unused-2",
    }
    # Each protection's own reason, so that each scanner is seen to count (the ASG's reason
    # names the template too).
    assert any(
        r.startswith("launch template web (") and " version 1 (" in r
        for r in by_build["old-template"]["reasons"]
    )
    assert any(
        r.startswith("auto scaling group web (launch template web version 1)")
        for r in by_build["old-template"]["reasons"]
    )
    assert any("instance i-" in r and "stopped" in r for r in by_build["old-instance"]["reasons"])
    assert any(
        "channel /ami-chain/example/base/prod version 1" in r
        for r in by_build["old-channel"]["reasons"]
    )
    assert any("auto scaling group workers" in r for r in by_build["old-asg"]["reasons"])
    assert any(
        "ssm:Parameter" in r and "parameter/app/ami" in r
        for r in by_build["old-parameter"]["reasons"]
    )
    for name in ("base", "snowflake"):
        (build,) = [
            b for b in report["builds"] if b["images"] == world.protected[f"current {name}"]
        ]
        assert f"the current image of {name} at " in build["reasons"][0]
    assert by_build["old-parent"]["reasons"] == [
        "the parent of the kept snowflake build old-instance"
    ]
    assert [k for k in manifest_keys() if "/leases/" in k] == []

    again = gc_run(world, sandbox_env, "--apply", "--json")
    assert again.code == 0, again.stderr
    assert [b for b in json.loads(again.stdout)["builds"] if b["action"] != "keep"] == []
    assert state() == (images, snapshots)


def _parent_of(amis):
    parent = {}
    for region, ami in amis.items():
        tags = tags_of(ec2(region).describe_images(ImageIds=[ami])["Images"][0])
        parent[region] = tags[model.TAG_PARENT_AMI]
    return parent


def test_the_dry_run_changes_nothing_and_says_what_it_would_do(sandbox_env, repo, packer):
    world = two_region_world(repo, sandbox_env)
    before = state()
    proc = gc_run(world, sandbox_env)
    assert proc.code == 0, proc.stderr
    assert state() == before
    lines = proc.stdout.splitlines()
    assert lines[0].split() == [
        "IMAGE",
        "DEFINITION",
        "FINGERPRINT",
        "BUILD",
        "AGE",
        "REGIONS",
        "VERDICT",
    ]
    doomed = [line for line in lines if " delete: " in line]
    assert len(doomed) == 3
    assert all({"us-east-1", "eu-west-1"} <= set(line.split()) for line in doomed)
    assert any("keep: the current image of base at" in line for line in lines)
    assert json.loads(gc_run(world, sandbox_env, "--json").stdout)["applied"] is False
    assert state() == before


@pytest.mark.parametrize(
    "operation",
    ["DescribeLaunchTemplateVersions", "DescribeImageReferences", "GetParameterHistory"],
)
def test_a_reference_check_that_fails_stops_gc_before_any_deletion(
    sandbox_env, sandbox_server, repo, packer, operation
):
    world = two_region_world(repo, sandbox_env)
    before = state()

    def block(method, path, headers, body):
        # EC2 names the action in the form body, SSM (JSON) in a header.
        target = {k.lower(): v for k, v in headers.items()}.get("x-amz-target", "")
        return f"Action={operation}".encode() in body or target.endswith(f".{operation}")

    with FaultProxy(sandbox_server.endpoint, rate=0.0, block=block) as proxy:
        env = {**sandbox_env, "AWS_ENDPOINT_URL": proxy.endpoint}
        proc = gc_run(world, env, "--apply")
        assert proxy.counters.injected.get("blocked", 0) > 0
    assert proc.code == 1
    assert operation in proc.stderr and "cannot tell which images are in use" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert state() == before


def test_random_faults_never_delete_a_protected_image(sandbox_env, sandbox_server, repo, packer):
    world = two_region_world(repo, sandbox_env)
    parent = _parent_of(world.protected["instance"])
    protected = {(r, a) for amis in [*world.protected.values(), parent] for r, a in amis.items()}
    doomed = {(r, a) for amis in world.doomed.values() for r, a in amis.items()}
    doomed_snapshots = set().union(*(snapshots_of(a) for a in world.doomed.values()))
    with FaultProxy(sandbox_server.endpoint, rate=0.3, lost_responses=True, seed=11) as proxy:
        env = {**sandbox_env, "AWS_ENDPOINT_URL": proxy.endpoint}
        codes = []
        for _ in range(6):
            proc = gc_run(world, env, "--apply")
            codes.append(proc.code)
            assert proc.code in (0, 1), proc.stderr
            assert protected <= state()[0], f"a protected image was deleted: {proc.stderr}"
            if proc.code == 0:
                break
        assert sum(proxy.counters.injected.values()) > 0
        print(f"gc exit statuses {codes}; fault proxy injected {proxy.counters.injected}")
    assert codes[-1] == 0, codes
    images, snapshots = state()
    assert protected <= images and not doomed & images
    assert not doomed_snapshots & snapshots


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--definition", "nope"], "Unknown definition 'nope'"),
        (["--keep=-1"], "--keep is '-1'"),
        (["--older-than", "soon"], "--older-than is 'soon'"),
    ],
)
def test_bad_input_exits_1_with_one_paragraph(sandbox_env, repo, flags, says):
    proc = run_bridge(["gc", "--repo", str(repo.path), *flags], sandbox_env)
    assert proc.code == 1
    assert says in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert proc.stdout == ""


def test_gc_deletes_under_the_build_lease_and_looks_again_under_it(
    sandbox_env, repo, packer, tmp_path
):
    """gc waits for the lease of a build it is to delete (a build of that fingerprint is
    running); a launch template made meanwhile keeps it."""
    world = two_region_world(repo, sandbox_env)
    target = world.doomed["unused base"]
    others = {
        (r, a) for k, amis in world.doomed.items() if k != "unused base" for r, a in amis.items()
    }
    fp = tags_of(ec2("us-east-1").describe_images(ImageIds=[target["us-east-1"]])["Images"][0])[
        "SHA"
    ]
    leases = LeaseManager(aws_client("s3"), LeaseConfig(bucket=BUCKET, prefix="images", ttl=600))
    lease = leases.try_acquire(lease_key("images", "base", fp), "base", fp)
    assert lease is not None
    argv = [
        "gc",
        "--repo",
        str(repo.path),
        "--keep",
        "0",
        "--min-age-hours",
        "0",
        "--apply",
        "--json",
    ]
    told = tmp_path / "gc.err"
    with told.open("w") as err_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bridge", *argv],
            env=sandbox_env,
            stdout=subprocess.PIPE,
            stderr=err_file,
            text=True,
        )
    try:
        # gc says it waits for the build's lease: then, and only then, the build is still there.
        wait_for(lambda: "is being built by" in told.read_text() or proc.poll() is not None)
        assert proc.poll() is None, told.read_text()
        assert not others & state()[0]  # the builds nobody holds went first
        assert {(r, a) for r, a in target.items()} <= state()[0]
        ec2("us-east-1").create_launch_template(
            LaunchTemplateName="late", LaunchTemplateData={"ImageId": target["us-east-1"]}
        )
    finally:
        leases.release(lease)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, told.read_text()
    assert {(r, a) for r, a in target.items()} <= state()[0]
    verdict = {b["build_id"]: b for b in json.loads(out)["builds"]}["old-unused"]
    assert verdict["action"] == "keep"
    assert any("launch template late" in r for r in verdict["reasons"])


def test_snapshots_a_cut_short_gc_left_are_deleted_by_the_next(sandbox_env, repo):
    us = ec2("us-east-1")
    left, kept = make_image(us, "deregistered"), make_image(us, "still-registered")
    snapshots = {ami: snapshots_of({"us-east-1": ami}).pop()[1] for ami in (left, kept)}
    for ami, snapshot in snapshots.items():
        us.create_tags(Resources=[snapshot], Tags=[{"Key": model.TAG_GC, "Value": ami}])
    deregister("us-east-1", left)
    recycle_bin()
    dry = run_bridge(["gc", "--repo", str(repo.path)], sandbox_env)
    assert dry.code == 0, dry.stderr
    assert f"leftover snapshots in us-east-1 (deleted by --apply): {snapshots[left]}" in dry.stdout
    proc = run_bridge(["gc", "--repo", str(repo.path), "--apply"], sandbox_env)
    assert proc.code == 0, proc.stderr
    remaining = {s["SnapshotId"] for s in us.describe_snapshots(OwnerIds=["self"])["Snapshots"]}
    assert snapshots[left] not in remaining and snapshots[kept] in remaining


def test_gc_leaves_an_image_without_a_catalog_id_alone(sandbox_env, repo):
    """An image built before catalogs had IDs is no provable part of this catalog: never a
    candidate, never deleted, even with nothing keeping it; a tagged build beside it, just as
    old and unused, is deleted."""
    recycle_bin(REGIONS)
    untagged = fake_build("base", "before-ids")
    for region, ami in untagged.items():
        ec2(region).delete_tags(Resources=[ami], Tags=[{"Key": model.TAG_CATALOG}])
    tagged = fake_build("base", "old-unused")
    argv = ["gc", "--repo", str(repo.path), "--keep", "0", "--min-age-hours", "0", "--apply"]
    proc = run_bridge([*argv, "--json"], sandbox_env)
    assert proc.code == 0, proc.stderr
    images, _ = state()
    assert {(r, a) for r, a in untagged.items()} <= images
    assert not {(r, a) for r, a in tagged.items()} & images
    listed = {ami for b in json.loads(proc.stdout)["builds"] for ami in b["images"].values()}
    assert not listed & set(untagged.values())
    assert "carry no catalog ID" in proc.stderr and "gc leaves them alone" in proc.stderr
    for region, ami in untagged.items():
        (image,) = ec2(region).describe_images(ImageIds=[ami])["Images"]
        assert model.TAG_CATALOG not in tags_of(image)  # not claimed by gc either
