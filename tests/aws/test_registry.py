from __future__ import annotations

import pytest

from bridge.aws.clients import AwsClients
from bridge.aws.registry import describe_image, find_images, tag_image
from bridge.errors import AwsError
from testing.sandbox import aws_client, make_image


def counted_client():
    clients = AwsClients()
    ec2 = clients.ec2("us-east-1")
    calls: list[str] = []
    ec2.meta.events.register("before-call.ec2.*", lambda model, **kw: calls.append(model.name))
    return ec2, calls


def test_one_call_per_200_fingerprints(sandbox_env):
    raw = aws_client("ec2")
    wanted = [f"{i:040x}" for i in range(450)]
    ami = make_image(raw, "one", wanted[321])
    ec2, calls = counted_client()
    found = find_images(ec2, "us-east-1", wanted, tag_key="SHA", owners=["self"])
    assert calls == ["DescribeImages"] * 3
    assert [i.ami_id for i in found[wanted[321]]] == [ami]
    assert set(found) == {wanted[321]}


def test_several_matches_newest_first(sandbox_env):
    raw = aws_client("ec2")
    first = make_image(raw, "first", "f" * 40)
    second = make_image(raw, "second", "f" * 40)
    ec2, _ = counted_client()
    images = find_images(ec2, "us-east-1", ["f" * 40], tag_key="SHA", owners=["self"])["f" * 40]
    assert {i.ami_id for i in images} == {first, second}
    assert images[0].creation_date >= images[1].creation_date


def test_other_tag_key(sandbox_env):
    raw = aws_client("ec2")
    ami = make_image(raw, "keyed", None)
    raw.create_tags(Resources=[ami], Tags=[{"Key": "ImageFingerprint", "Value": "1" * 40}])
    ec2, _ = counted_client()
    assert find_images(ec2, "us-east-1", ["1" * 40], tag_key="SHA", owners=["self"]) == {}
    found = find_images(ec2, "us-east-1", ["1" * 40], tag_key="ImageFingerprint", owners=["self"])
    assert found["1" * 40][0].ami_id == ami


def test_tag_image_tags_snapshots_too(sandbox_env):
    raw = aws_client("ec2")
    ami = make_image(raw, "tagged", None)
    ec2, _ = counted_client()
    image = describe_image(ec2, "us-east-1", ami)
    tag_image(ec2, image, {"k": "v" * 300})
    snap = raw.describe_snapshots(SnapshotIds=list(image.snapshot_ids))["Snapshots"][0]
    assert {t["Key"]: t["Value"] for t in snap["Tags"]}["k"] == "v" * 255


def test_unknown_image_is_an_aws_error(sandbox_env):
    ec2, _ = counted_client()
    with pytest.raises(AwsError, match="ami-0000000000000000f"):
        describe_image(ec2, "us-east-1", "ami-0000000000000000f")


def _stub_image(state: str) -> dict:
    return {
        "ImageId": "ami-0123456789abcdef0",
        "State": state,
        "OwnerId": "123456789012",
        "CreationDate": "2026-01-01T00:00:00.000Z",
        "Tags": [{"Key": "SHA", "Value": "a" * 40}],
    }


def test_pending_image_is_waited_for():
    """EC2's image_available waiter, against stubbed EC2 answers (the sandbox has no pending state)."""
    from botocore.stub import Stubber

    from bridge.aws.registry import wait_available

    ec2 = AwsClients().ec2("us-east-1")
    with Stubber(ec2) as stub:
        stub.add_response("describe_images", {"Images": [_stub_image("pending")]})
        stub.add_response("describe_images", {"Images": [_stub_image("available")]})
        stub.add_response("describe_images", {"Images": [_stub_image("available")]})
        image = wait_available(ec2, "us-east-1", "ami-0123456789abcdef0", timeout=5, delay=0)
    assert image.state == "available"


def test_image_that_fails_while_waited_for_is_an_error():
    from botocore.stub import Stubber

    from bridge.aws.registry import wait_available

    ec2 = AwsClients().ec2("us-east-1")
    with Stubber(ec2) as stub:
        stub.add_response("describe_images", {"Images": [_stub_image("failed")]})
        with pytest.raises(AwsError, match="did not become available"):
            wait_available(ec2, "us-east-1", "ami-0123456789abcdef0", timeout=5, delay=0)
