"""What uses an image (references.py), seen through `ami-bridge gc` on the sandbox."""

from __future__ import annotations

import json

import pytest

from bridge.sandbox import BASE_IMAGE as BASE
from testing.bridge import run_bridge
from testing.sandbox import aws_client, fake_build, recycle_bin

EAST, WEST = "us-east-1", "eu-west-1"
GC = ["gc", "--keep", "0", "--min-age-hours", "0", "--json"]


def ec2(region):
    return aws_client("ec2", region)


def test_a_launch_template_resolving_its_image_through_ssm_keeps_that_versions_image(
    sandbox_env, repo
):
    first, second = fake_build("base", "old-first"), fake_build("base", "old-second")
    ssm = aws_client("ssm")
    for build in (first, second):
        ssm.put_parameter(Name="/app/base", Value=build["us-east-1"], Type="String", Overwrite=True)
    ec2("us-east-1").create_launch_template(
        LaunchTemplateName="pinned", LaunchTemplateData={"ImageId": "resolve:ssm:/app/base:1"}
    )
    proc = run_bridge(
        ["gc", "--repo", str(repo.path), "--keep", "0", "--min-age-hours", "0", "--json"],
        sandbox_env,
    )
    assert proc.code == 0, proc.stderr
    verdicts = {b["build_id"]: b for b in json.loads(proc.stdout)["builds"]}
    assert verdicts["old-first"]["action"] == "keep"
    assert "launch template pinned" in verdicts["old-first"]["reasons"][0]
    assert "through /app/base:1" in verdicts["old-first"]["reasons"][0]
    assert verdicts["old-second"]["action"] == "delete"


def images(region):
    return {i["ImageId"] for i in ec2(region).describe_images(Owners=["self"])["Images"]}


def mixed_group(name, template, override):
    """An Auto Scaling group in eu-west-1 launching only through its MixedInstancesPolicy:
    `template` (its latest version) and, for one instance type, `override` (version 1)."""
    aws_client("autoscaling", WEST).create_auto_scaling_group(
        AutoScalingGroupName=name,
        MinSize=0,
        MaxSize=0,
        AvailabilityZones=["eu-west-1a"],
        MixedInstancesPolicy={
            "LaunchTemplate": {
                "LaunchTemplateSpecification": {
                    "LaunchTemplateName": template,
                    "Version": "$Latest",
                },
                "Overrides": [
                    {"InstanceType": "t3.micro"},
                    {
                        "InstanceType": "m5.large",
                        "LaunchTemplateSpecification": {
                            "LaunchTemplateName": override,
                            "Version": "1",
                        },
                    },
                ],
            }
        },
    )


def test_an_auto_scaling_groups_mixed_instances_policy_keeps_the_images_it_launches(
    sandbox_env, repo
):
    """The group's launch templates (its own and an override's) are named nowhere else: gc
    keeps their images and says the group launches them."""
    recycle_bin((EAST, WEST))
    spot, large, unused = (fake_build("base", b) for b in ("old-spot", "old-large", "old-unused"))
    eu = ec2(WEST)
    eu.create_launch_template(LaunchTemplateName="spot", LaunchTemplateData={"ImageId": spot[WEST]})
    eu.create_launch_template(
        LaunchTemplateName="large", LaunchTemplateData={"ImageId": large[WEST]}
    )
    mixed_group("fleet", "spot", "large")
    proc = run_bridge([*GC, "--apply", "--repo", str(repo.path)], sandbox_env)
    assert proc.code == 0, proc.stderr
    for build in (spot, large):
        assert build[EAST] in images(EAST) and build[WEST] in images(WEST)
    assert unused[EAST] not in images(EAST) and unused[WEST] not in images(WEST)
    fates = {b["build_id"]: b for b in json.loads(proc.stdout)["builds"]}
    assert fates["old-spot"]["action"] == fates["old-large"]["action"] == "keep"
    assert (
        f"auto scaling group fleet (launch template spot version 1) ({spot[WEST]} in {WEST})"
        in (fates["old-spot"]["reasons"])
    )
    assert (
        f"auto scaling group fleet (launch template large version 1) ({large[WEST]} in {WEST})"
        in fates["old-large"]["reasons"]
    )


@pytest.mark.parametrize("where", ["policy", "override"])
def test_a_mixed_instances_policy_naming_a_template_gc_cannot_list_stops_gc(
    sandbox_env, repo, where
):
    """EC2 deletes a launch template an Auto Scaling group still names; gc cannot tell what
    that group launches, so it deletes nothing (not even a build nothing names), naming the
    group and the template."""
    recycle_bin((EAST, WEST))
    unused = fake_build("base", "old-unused")
    eu = ec2(WEST)
    for name in ("spot", "large"):
        eu.create_launch_template(LaunchTemplateName=name, LaunchTemplateData={"ImageId": BASE})
    mixed_group("fleet", "spot", "large")
    gone = "spot" if where == "policy" else "large"
    eu.delete_launch_template(LaunchTemplateName=gone)
    proc = run_bridge([*GC, "--apply", "--repo", str(repo.path)], sandbox_env)
    assert unused[EAST] in images(EAST) and unused[WEST] in images(WEST)
    assert proc.code == 1, proc.stdout
    said = " ".join(proc.stderr.split())
    assert f"The Auto Scaling group fleet in {WEST} uses the launch template" in said
    assert "deletes nothing" in said and "Traceback" not in proc.stderr
