"""AWS faults: throttling, 5xx and dropped connections are retried; permanent errors are not."""

from __future__ import annotations

import json

import pytest

from bridge.aws import AwsClients, aws_call
from testing.bridge import external
from testing.faultproxy import FaultProxy
from testing.sandbox import own_images


@pytest.fixture
def faulty(sandbox_env, sandbox_server):
    with FaultProxy(sandbox_server.endpoint, rate=0.3) as proxy:
        # The bridge's own AWS calls go through the proxy; Packer keeps its own retry policy and
        # talks to the sandbox directly.
        env = {
            **sandbox_env,
            "AWS_ENDPOINT_URL": proxy.endpoint,
            "AMI_BRIDGE_PACKER_EC2_ENDPOINT": sandbox_server.endpoint,
        }
        yield proxy, env


def test_builds_and_resolves_succeed_through_30_percent_faults(faulty, repo, packer):
    proxy, env = faulty
    query = {"definition": "snowflake", "repo": str(repo.path)}
    built = external(env, query)
    assert built.code == 0, built.stderr
    first = json.loads(built.stdout)
    assert first["built"] == "true"
    for _ in range(5):
        again = external(env, query)
        assert again.code == 0, again.stderr
        assert json.loads(again.stdout)["ami_id"] == first["ami_id"]
    assert len(own_images()) == 2  # retries never built twice
    injected = sum(proxy.counters.injected.values())
    assert injected > 0 and proxy.counters.forwarded > 0
    print(f"fault proxy: forwarded {proxy.counters.forwarded}, injected {proxy.counters.injected}")


def test_faults_are_retried_by_the_shared_retry_policy(faulty, monkeypatch):
    proxy, _ = faulty
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
    ec2 = AwsClients().ec2("us-east-1")
    sent: list[str] = []
    ec2.meta.events.register("before-send.ec2.*", lambda **kw: sent.append("x"))
    for _ in range(20):
        with aws_call("listing images", "ec2:DescribeImages"):
            ec2.describe_images(Owners=["self"])
    assert len(sent) > 20  # some attempts failed and were retried
    assert len(sent) == 20 + sum(proxy.counters.injected.values())
