"""AWS clients and the translation of AWS failures (aws.py)."""

from __future__ import annotations

import pytest
from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
)

from bridge.aws.clients import MAX_ATTEMPTS, RETRY_MODE, AwsClients, aws_call
from bridge.errors import AwsError
from testing.faultproxy import FaultProxy


def test_clients_are_made_once_with_the_shared_retry_policy(sandbox_env):
    clients = AwsClients()
    ec2 = clients.ec2("us-east-1")
    assert clients.ec2("us-east-1") is ec2
    assert clients.ec2("eu-west-1") is not ec2
    assert ec2.meta.config.retries == {"mode": RETRY_MODE, "total_max_attempts": MAX_ATTEMPTS}
    assert clients.s3().meta.config.retries["mode"] == "standard"


def test_an_unknown_region_is_an_aws_error(sandbox_env):
    with pytest.raises(AwsError, match="region name"):
        AwsClients().ec2("not a region!")


def test_validation_errors_are_not_retried_and_say_what(sandbox_env):
    ec2 = AwsClients().ec2("us-east-1")
    calls: list[str] = []
    ec2.meta.events.register("before-send.ec2.*", lambda **kw: calls.append("sent"))
    with pytest.raises(AwsError) as err:
        with aws_call("describing an image", "ec2:DescribeImages"):
            ec2.describe_images(ImageIds=["not-an-ami"])
    assert len(calls) == 1
    assert "not retried" in str(err.value) and "not-an-ami" in str(err.value)


def client_error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "said AWS."}}, "CreateTags")


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (client_error("UnauthorizedOperation"), "lacks ec2:CreateTags (UnauthorizedOperation"),
        (client_error("AccessDenied"), "Grant ec2:CreateTags"),
        (client_error("ExpiredToken"), "Refresh the credentials"),
        (client_error("AuthFailure"), "rejected the credentials while tagging ami-1"),
        (client_error("InvalidAMIID.Malformed"), "AWS refused tagging ami-1"),
        (NoCredentialsError(), "No AWS credentials were found for tagging ami-1"),
        (NoRegionError(), "Pass `region` or set AWS_REGION"),
        (EndpointConnectionError(endpoint_url="http://nowhere"), "AWS_ENDPOINT_URL"),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Exception) else None,
)
def test_failures_become_one_paragraph_that_says_what_to_do(raised, expected):
    with pytest.raises(AwsError) as err:
        with aws_call("tagging ami-1", "ec2:CreateTags"):
            raise raised
    message = str(err.value)
    assert expected in message
    assert "\n" not in message


def test_other_exceptions_pass_through():
    with pytest.raises(KeyError):
        with aws_call("tagging ami-1", "ec2:CreateTags"):
            raise KeyError("not an AWS failure")


def test_token_bucket_lets_a_burst_through_then_paces_at_the_rate():
    from bridge.aws.clients import TokenBucket

    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    bucket = TokenBucket(3, 0.5, clock=lambda: now[0], sleep=sleep)
    for _ in range(5):
        bucket.take()
    assert slept == [2.0, 2.0]  # 3 at once, then one every 2 s


def test_create_tags_takes_a_token_from_its_regions_bucket(monkeypatch):
    from botocore.stub import Stubber

    from bridge.aws import clients as aws

    taken: list[float] = []
    monkeypatch.setattr(aws.TokenBucket, "take", lambda self: taken.append(self.rate))
    ec2 = aws.AwsClients().ec2("us-east-1")
    with Stubber(ec2) as stub:
        stub.add_response("create_tags", {})
        stub.add_response("describe_images", {"Images": []})
        ec2.create_tags(Resources=["ami-0123456789abcdef0"], Tags=[{"Key": "k", "Value": "v"}])
        ec2.describe_images(Owners=["self"])
    assert taken == [aws.RATE_LIMITS["ec2"]["CreateTags"][1]]  # DescribeImages took none


def test_sharing_and_channel_writes_take_tokens_from_their_regions_buckets(monkeypatch):
    from botocore.stub import Stubber

    from bridge.aws import clients as aws

    taken: list[float] = []
    monkeypatch.setattr(aws.TokenBucket, "take", lambda self: taken.append(self.rate))
    clients = aws.AwsClients()
    ec2, ssm = clients.ec2("eu-west-1"), clients.ssm("eu-west-1")
    with Stubber(ec2) as stub_ec2, Stubber(ssm) as stub_ssm:
        stub_ec2.add_response("modify_image_attribute", {})
        stub_ssm.add_response("put_parameter", {"Version": 1})
        stub_ssm.add_response("get_parameter_history", {"Parameters": []})
        ec2.modify_image_attribute(
            ImageId="ami-0123456789abcdef0",
            LaunchPermission={"Add": [{"UserId": "111122223333"}]},
        )
        ssm.put_parameter(Name="/ami-chain/base/prod", Value="ami-0123456789abcdef0")
        ssm.get_parameter_history(Name="/ami-chain/base/prod")
    assert taken == [  # reads took none
        aws.RATE_LIMITS["ec2"]["ModifyImageAttribute"][1],
        aws.RATE_LIMITS["ssm"]["PutParameter"][1],
    ]


def test_a_call_retried_to_no_avail_says_it_was_retried(sandbox_server, sandbox_env, monkeypatch):
    """Unavailable every time: botocore's backoff retries, and the message says so (never "not
    retried")."""
    with FaultProxy(sandbox_server.endpoint, rate=0.0, block=lambda *_: True) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
        ec2 = AwsClients(max_attempts=3).ec2("us-east-1")
        with pytest.raises(AwsError) as err:
            with aws_call("looking up images in us-east-1", "ec2:DescribeImages"):
                ec2.describe_images(Owners=["self"])
    text = str(err.value)
    assert "after 2 retries" in text and "Unavailable" in text
    assert "not retried" not in text
