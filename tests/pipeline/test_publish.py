"""The publish step (publish.py): tags on the image and its snapshots, then the manifest."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bridge import model
from bridge.aws import registry
from bridge.aws.clients import AwsClients
from bridge.aws.manifests import fetch
from bridge.catalog import Definition
from bridge.errors import BuildError
from bridge.pipeline.publish import image_tags, publish
from bridge.record import BuildRecord, Parent
from testing.sandbox import BUCKET, aws_client, make_image, tags_of

FP = "a" * 40
CHILD = Definition(
    "app", "app/app.json", "json", "app", (), parent="base", tags={"Team": "platform"}
)
RECORD = BuildRecord(
    catalog="",
    definition="app",
    fingerprint=FP,
    build_id="d" * 40,
    commit="c" * 40,
    region="us-east-1",
    amis={},
    parent=Parent("base", "b" * 40, "ami-0123456789abcdef0"),
    packer_version="1.6.6",
    build_url="https://ci.example/1",
    built_at="2026-12-05T10:00:00.123456Z",
)


def root_record(**fields) -> BuildRecord:
    """A root's record with no build URL, start time or AMIs yet."""
    return BuildRecord(
        catalog="", definition="base", fingerprint=FP, build_id="b" * 40, commit="c" * 40,
        region="us-east-1", amis={}, parent=None, packer_version="1.6.6", **fields,
    )  # fmt: skip


def test_image_tags_carry_fingerprint_and_provenance():
    assert image_tags(CHILD, RECORD, tag_key="ImageSHA") == {
        "Team": "platform",
        "ImageSHA": FP,
        model.TAG_DEFINITION: "app",
        model.TAG_BUILD_ID: "d" * 40,
        model.TAG_BUILT_AT: "2026-12-05T10:00:00.123456Z",
        model.TAG_COMMIT: "c" * 40,
        model.TAG_PACKER_VERSION: "1.6.6",
        model.TAG_BUILD_URL: "https://ci.example/1",
        model.TAG_PARENT_AMI: "ami-0123456789abcdef0",
        model.TAG_PARENT_FINGERPRINT: "b" * 40,
    }


def test_a_root_without_a_build_url_gets_no_parent_or_url_tags():
    root = Definition("base", "base/base.json", "json", "base", ())
    tags = image_tags(root, root_record(), tag_key="SHA")
    assert set(tags) == {
        "SHA",
        model.TAG_DEFINITION,
        model.TAG_COMMIT,
        model.TAG_PACKER_VERSION,
        model.TAG_BUILD_ID,
    }


def test_a_catalog_tag_cannot_fake_the_fingerprint():
    sneaky = Definition("base", "b/b.json", "json", "b", (), tags={"SHA": "f" * 40})
    assert image_tags(sneaky, root_record(), tag_key="SHA")["SHA"] == FP


def test_publish_tags_every_region_and_writes_the_manifest(sandbox_env):
    east, west = aws_client("ec2"), aws_client("ec2", "eu-west-1")
    amis = {"us-east-1": make_image(east, "app"), "eu-west-1": make_image(west, "app")}
    published = publish(
        AwsClients(),
        CHILD,
        replace(RECORD, amis=amis),
        tag_key="SHA",
        owners=("self",),
        bucket=BUCKET,
        prefix="images",
    )
    assert published.manifest_uri == f"s3://{BUCKET}/images/app/{FP}.json"
    for region, client in (("us-east-1", east), ("eu-west-1", west)):
        image = client.describe_images(ImageIds=[amis[region]])["Images"][0]
        assert tags_of(image)["SHA"] == FP
        snapshot_ids = [m["Ebs"]["SnapshotId"] for m in image["BlockDeviceMappings"]]
        for snap in client.describe_snapshots(SnapshotIds=snapshot_ids)["Snapshots"]:
            assert tags_of(snap)[model.TAG_PARENT_AMI] == "ami-0123456789abcdef0"
    manifest = fetch(aws_client("s3"), BUCKET, "images", "app", FP)
    assert manifest is not None
    assert dict(manifest.amis) == amis and manifest.parent == RECORD.parent


def test_an_image_the_owners_would_not_find_is_refused_before_tagging(sandbox_env):
    ami = make_image(aws_client("ec2"), "app")
    with pytest.raises(BuildError, match=r"belongs to account 123456789012.*left untagged"):
        publish(
            AwsClients(),
            CHILD,
            replace(RECORD, amis={"us-east-1": ami}),
            tag_key="SHA",
            owners=("111111111111",),
            bucket=BUCKET,
            prefix="images",
        )
    (image,) = aws_client("ec2").describe_images(ImageIds=[ami])["Images"]
    assert "SHA" not in tags_of(image)
    assert "Contents" not in aws_client("s3").list_objects_v2(Bucket=BUCKET)


def test_publish_without_a_bucket_writes_no_manifest(sandbox_env):
    ami = make_image(aws_client("ec2"), "app")
    published = publish(
        AwsClients(),
        CHILD,
        replace(RECORD, amis={"us-east-1": ami}),
        tag_key="SHA",
        owners=("self",),
        bucket=None,
        prefix=None,
    )
    assert published.manifest_uri == ""
    assert "Contents" not in aws_client("s3").list_objects_v2(Bucket=BUCKET)


def test_restore_leaves_a_manifest_that_describes_other_images_alone(sandbox_env):
    from bridge.aws.manifests import Manifest
    from bridge.aws.manifests import publish as write_manifest
    from bridge.pipeline.publish import restore_manifest

    ec2 = aws_client("ec2")
    ours, theirs = make_image(ec2, "ours"), make_image(ec2, "theirs")
    other = Manifest(
        definition="app", fingerprint=FP, amis={"us-east-1": theirs}, parent=None,
        commit="c" * 40, packer_version="1.6.6", build_time="2026-01-01T00:00:00Z",
        build_url="",
    )  # fmt: skip
    write_manifest(aws_client("s3"), BUCKET, "images", other)
    clients = AwsClients()
    image = registry.describe_image(clients.ec2("us-east-1"), "us-east-1", ours)
    uri = restore_manifest(
        clients, CHILD, FP, {"us-east-1": image}, parent=None, bucket=BUCKET, prefix="images"
    )
    assert uri == ""
    described = ec2.describe_images(ImageIds=[ours])["Images"][0]
    assert model.TAG_MANIFEST not in tags_of(described)
