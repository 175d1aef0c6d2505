from __future__ import annotations

import pytest

from bridge.aws.manifests import Manifest, fetch, manifest_key, manifest_uri, publish
from bridge.errors import ManifestError
from bridge.record import Parent
from testing.sandbox import BUCKET, aws_client

FP = "a" * 40


def sample(parent: Parent | None = None) -> Manifest:
    return Manifest(
        definition="snowflake",
        fingerprint=FP,
        amis={"us-east-1": "ami-0123456789abcdef0"},
        parent=parent,
        commit="b" * 40,
        packer_version="1.6.6",
        build_time="2026-11-27T10:00:00+00:00",
        build_url="",
    )


def test_keys_and_uris():
    assert manifest_key("images/", "base", FP) == f"images/base/{FP}.json"
    assert manifest_key(None, "base", FP) == f"base/{FP}.json"
    assert manifest_uri("b", "p", "base", FP) == f"s3://b/p/base/{FP}.json"


def test_publish_and_fetch_round_trip(sandbox_env):
    s3 = aws_client("s3")
    manifest = sample(Parent("base", "c" * 40, "ami-0fedcba9876543210"))
    uri = publish(s3, BUCKET, "images", manifest)
    assert uri == f"s3://{BUCKET}/images/snowflake/{FP}.json"
    head = s3.head_object(Bucket=BUCKET, Key=f"images/snowflake/{FP}.json")
    assert head["ContentType"] == "application/json"
    assert fetch(s3, BUCKET, "images", "snowflake", FP) == manifest
    assert fetch(s3, BUCKET, "images", "snowflake", "d" * 40) is None


def test_invalid_manifest_is_not_written(sandbox_env):
    s3 = aws_client("s3")
    bad = Manifest(**{**sample().__dict__, "amis": {"us-east-1": "not-an-ami"}})
    with pytest.raises(ManifestError, match=r"\$.amis"):
        publish(s3, BUCKET, "images", bad)
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b'{"schema_version": 1}', "does not match the manifest schema"),
    ],
)
def test_tampered_manifest_is_refused(sandbox_env, body, message):
    s3 = aws_client("s3")
    s3.put_object(Bucket=BUCKET, Key=f"images/snowflake/{FP}.json", Body=body)
    with pytest.raises(ManifestError, match=message):
        fetch(s3, BUCKET, "images", "snowflake", FP)


def test_manifest_for_another_image_is_refused(sandbox_env):
    s3 = aws_client("s3")
    publish(s3, BUCKET, "images", sample())
    body = s3.get_object(Bucket=BUCKET, Key=f"images/snowflake/{FP}.json")["Body"].read()
    s3.put_object(Bucket=BUCKET, Key=f"images/snowflake/{'e' * 40}.json", Body=body)
    with pytest.raises(ManifestError, match="describes snowflake@"):
        fetch(s3, BUCKET, "images", "snowflake", "e" * 40)
