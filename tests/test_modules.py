"""Each module's example, applied live against the sandbox with pytest-terraform fixtures."""

from __future__ import annotations

import hashlib
import json

import pytest
from pytest_terraform import terraform

from bridge.sandbox import BASE_IMAGE
from testing.bridge import bridge_command, run_bridge
from testing.sandbox import BUCKET, aws_client, own_images, tags_of


@pytest.fixture(autouse=True)
def module_env(sandbox_env, terraform_env, repo, packer, monkeypatch):
    """Runs before the terraform fixtures: the sandbox, providers and inputs for each example."""
    for key, value in {**sandbox_env, **terraform_env}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("TF_VAR_image_id", BASE_IMAGE)
    monkeypatch.setenv("TF_VAR_bucket", BUCKET)
    monkeypatch.setenv("TF_VAR_repo_dir", str(repo.path))
    monkeypatch.setenv("TF_VAR_bridge_command", json.dumps(bridge_command()))
    return repo


terraform("launch_template_example", scope="function")
terraform("ami_manifest_example", scope="function")
terraform("ami_chain_example", scope="function")
terraform("ami_channel_example", scope="function")
terraform("asg_example", scope="function")


def test_launch_template_example(launch_template_example):
    out = {k: v["value"] for k, v in launch_template_example.outputs.items()}
    assert out["image_id"] == BASE_IMAGE
    assert out["latest_version"] == 1
    ec2 = aws_client("ec2")
    template = ec2.describe_launch_templates(LaunchTemplateIds=[out["id"]])["LaunchTemplates"][0]
    assert template["LaunchTemplateName"].startswith("example-")
    data = ec2.describe_launch_template_versions(LaunchTemplateId=out["id"], Versions=["1"])[
        "LaunchTemplateVersions"
    ][0]["LaunchTemplateData"]
    assert data["ImageId"] == BASE_IMAGE
    assert data["MetadataOptions"]["HttpTokens"] == "required"  # IMDSv2 by default
    assert data["MetadataOptions"]["HttpPutResponseHopLimit"] == 1
    (root,) = data["BlockDeviceMappings"]
    assert root["Ebs"]["Encrypted"] is True  # an encrypted root volume by default
    assert "NetworkInterfaces" not in data  # no public IP unless asked
    specs = {s["ResourceType"]: s["Tags"] for s in data["TagSpecifications"]}
    for kind in ("instance", "volume"):
        assert {"Key": "ImageId", "Value": BASE_IMAGE} in specs[kind]


def test_ami_manifest_example(ami_manifest_example):
    out = {k: v["value"] for k, v in ami_manifest_example.outputs.items()}
    s3 = aws_client("s3")
    obj = s3.get_object(Bucket=BUCKET, Key=out["key"])
    body = obj["Body"].read()
    assert obj["ContentType"] == "application/json"
    assert obj["ServerSideEncryption"] == "AES256"
    assert out["etag"] == hashlib.md5(body).hexdigest()
    document = json.loads(body)
    assert document["deployment"] == "example"
    assert document["images"]["base"]["ami_id"] == "ami-0123456789abcdef0"


def test_ami_chain_example(ami_chain_example, module_env):
    out = {k: v["value"] for k, v in ami_chain_example.outputs.items()}
    images = {i["ImageId"] for i in own_images()}
    assert images == {out["ami_id"], out["parent_ami_id"]}
    assert out["amis"] == {"us-east-1": out["ami_id"]}
    tags = {i["ImageId"]: tags_of(i) for i in own_images()}
    assert tags[out["ami_id"]]["ami-chain:build-id"] == out["build_id"]
    assert len(out["fingerprint"]) == 40


@pytest.fixture
def promoted(module_env, sandbox_env):
    """The snowflake built and promoted to prod twice (the channel's version 2)."""
    repo = module_env
    for _ in range(2):
        for args in (["build", "snowflake"], ["promote", "snowflake", "prod", "--json"]):
            proc = run_bridge([*args, "--repo", str(repo.path)], sandbox_env)
            assert proc.code == 0, proc.stderr
        baseline = repo.path / "base" / "tasks" / "baseline.sh"
        baseline.write_text(baseline.read_text() + "echo again\n")
        repo.commit("again")
    return json.loads(proc.stdout)


def test_ami_channel_example_needs_no_repository(promoted, ami_channel_example):
    """The example gets no repo_dir: the channel's parameter is all it reads."""
    out = {k: v["value"] for k, v in ami_channel_example.outputs.items()}
    assert out["ami_id"] == promoted["regions"]["us-east-1"]["ami_id"]
    assert out["channel_version"] == 2
    assert out["build_id"] == promoted["build_id"]
    assert out["parameter_name"] == "/ami-chain/example/snowflake/prod"
    ec2 = aws_client("ec2")
    data = ec2.describe_launch_template_versions(
        LaunchTemplateId=out["launch_template_id"], Versions=["1"]
    )["LaunchTemplateVersions"][0]["LaunchTemplateData"]
    # EC2 resolves the parameter at each launch: instances follow the channel.
    assert data["ImageId"] == "resolve:ssm:/ami-chain/example/snowflake/prod"
    assert out["launch_template_image"] == data["ImageId"]


def test_asg_example_runs_the_templates_newest_version(asg_example):
    out = {k: v["value"] for k, v in asg_example.outputs.items()}
    (group,) = aws_client("autoscaling").describe_auto_scaling_groups(
        AutoScalingGroupNames=[out["name"]]
    )["AutoScalingGroups"]
    assert group["AutoScalingGroupName"].startswith("example-")
    assert group["LaunchTemplate"]["LaunchTemplateId"] == out["launch_template_id"]
    assert group["LaunchTemplate"]["Version"] == "1" == str(out["launch_template_version"])
    assert (group["MinSize"], group["MaxSize"], group["DesiredCapacity"]) == (1, 2, 1)
    tags = {t["Key"]: (t["Value"], t["PropagateAtLaunch"]) for t in group["Tags"]}
    assert tags["Environment"] == ("example", True)
    # A group made with its template starts no refresh.
    refreshes = aws_client("autoscaling").describe_instance_refreshes(
        AutoScalingGroupName=out["name"]
    )["InstanceRefreshes"]
    assert refreshes == []
