"""Each module's example, applied live against the sandbox with pytest-terraform fixtures."""

from __future__ import annotations

import hashlib
import json

import boto3
import pytest
from pytest_terraform import terraform

from bridge.sandbox import BASE_IMAGE
from testing.bridge import bridge_command
from testing.sandbox import BUCKET, own_images, tags_of


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


def test_launch_template_example(launch_template_example):
    out = {k: v["value"] for k, v in launch_template_example.outputs.items()}
    assert out["image_id"] == BASE_IMAGE
    assert out["latest_version"] == 1
    ec2 = boto3.client("ec2")
    template = ec2.describe_launch_templates(LaunchTemplateIds=[out["id"]])["LaunchTemplates"][0]
    assert template["LaunchTemplateName"].startswith("example-")
    data = ec2.describe_launch_template_versions(LaunchTemplateId=out["id"], Versions=["1"])[
        "LaunchTemplateVersions"
    ][0]["LaunchTemplateData"]
    assert data["ImageId"] == BASE_IMAGE
    assert data["MetadataOptions"]["HttpTokens"] == "required"  # IMDSv2 by default
    specs = {s["ResourceType"]: s["Tags"] for s in data["TagSpecifications"]}
    for kind in ("instance", "volume"):
        assert {"Key": "ImageId", "Value": BASE_IMAGE} in specs[kind]


def test_ami_manifest_example(ami_manifest_example):
    out = {k: v["value"] for k, v in ami_manifest_example.outputs.items()}
    s3 = boto3.client("s3")
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
