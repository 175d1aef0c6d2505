"""The seed pipeline's Packer manifests (seed.py)."""

from __future__ import annotations

import json
import time

from bridge.aws.clients import AwsClients
from bridge.pipeline.seed import build_artifacts, built_images
from testing.sandbox import aws_client, make_image

OURS = {"fingerprint": "a" * 40, "tag_key": "SHA"}


def write_manifest(directory, name, artifact_id):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"manifest-{name}.json").write_text(
        json.dumps({"builds": [{"artifact_id": artifact_id, "packer_run_uuid": "r"}],
                    "last_run_uuid": "r"})
    )  # fmt: skip


def test_built_images_are_described_in_every_region(sandbox_env, tmp_path):
    ami = make_image(aws_client("ec2"), "base")
    write_manifest(tmp_path, "base", f"us-east-1:{ami}")
    images = built_images(AwsClients(), tmp_path, "base", ["us-east-1"], **OURS)
    assert images is not None
    assert images["us-east-1"].ami_id == ami and images["us-east-1"].state == "available"


def test_no_manifest_a_missing_region_or_a_vanished_image_gives_none(sandbox_env, tmp_path):
    clients = AwsClients()
    assert built_images(clients, tmp_path, "base", ["us-east-1"], **OURS) is None
    ami = make_image(aws_client("ec2"), "base")
    write_manifest(tmp_path, "base", f"us-east-1:{ami}")
    assert built_images(clients, tmp_path, "base", ["us-east-1", "eu-west-1"], **OURS) is None
    write_manifest(tmp_path, "base", "us-east-1:ami-0000000000000dead")
    assert built_images(clients, tmp_path, "base", ["us-east-1"], **OURS) is None


def test_an_image_whose_tags_name_another_image_is_not_trusted(sandbox_env, tmp_path):
    ec2 = aws_client("ec2")
    placeholder = make_image(ec2, "seed", "!!sha!!")  # the seed's own tag: no contradiction
    other_fp = make_image(ec2, "old", "b" * 40)  # built from other content
    ec2.create_tags(
        Resources=[placeholder], Tags=[{"Key": "ami-chain:definition", "Value": "base"}]
    )
    other_name = make_image(ec2, "other", None)
    ec2.create_tags(Resources=[other_name], Tags=[{"Key": "ami-chain:definition", "Value": "web"}])
    clients = AwsClients()
    for ami, trusted in ((placeholder, True), (other_fp, False), (other_name, False)):
        write_manifest(tmp_path, "base", f"us-east-1:{ami}")
        images = built_images(clients, tmp_path, "base", ["us-east-1"], **OURS)
        assert (images is not None) == trusted, ami


def test_build_artifacts_only_from_a_manifest_written_since(tmp_path):
    assert build_artifacts(tmp_path, "base", written_since=0) == {}
    write_manifest(
        tmp_path, "base", "us-east-1:ami-0123456789abcdef0,eu-west-1:ami-0fedcba9876543210"
    )
    assert build_artifacts(tmp_path, "base", written_since=time.time() + 60) == {}
    assert build_artifacts(tmp_path, "base", written_since=time.time() - 60) == {
        "us-east-1": "ami-0123456789abcdef0",
        "eu-west-1": "ami-0fedcba9876543210",
    }
