"""AWS faults: throttling, 5xx and dropped connections are retried; permanent errors are not."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from bridge import model
from bridge.aws.clients import AwsClients, aws_call
from testing.bridge import external, external_many
from testing.faultproxy import FaultProxy
from testing.sandbox import builds_per_definition, manifest_keys, own_images, tags_of


@pytest.fixture
def faulty(sandbox_env, sandbox_server):
    with FaultProxy(sandbox_server.endpoint, rate=0.3, lost_responses=True) as proxy:
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


@pytest.mark.sweep
def test_the_proxys_faults_never_fall_on_a_calls_last_attempt(sandbox_server, sandbox_env):
    """Transient faults: even at a rate of 1, each call gets through on its last attempt, so a
    test's outcome does not depend on how concurrent processes' requests interleave."""
    import boto3
    from botocore.config import Config

    with FaultProxy(sandbox_server.endpoint, rate=1.0) as proxy:
        retries = Config(retries={"mode": "standard", "max_attempts": 3})
        ec2 = boto3.client("ec2", endpoint_url=proxy.endpoint, config=retries)
        for _ in range(5):
            ec2.describe_images(Owners=["self"])
    # Two faults a call at least (a dropped connection may be sent again at the same attempt).
    assert sum(proxy.counters.injected.values()) >= 10
    assert proxy.counters.forwarded == 5


def test_sixteen_processes_build_once_through_faults_and_lost_responses(
    faulty, repo, packer, tmp_path
):
    """Exactly once under contention and faults: separate state directories (only the S3 lease
    coordinates), 30% of the bridge's AWS calls failing, half of those after AWS applied them."""
    proxy, env = faulty
    procs = external_many(
        lambda i: {**env, "AMI_BRIDGE_STATE_DIR": str(tmp_path / f"p{i}")},
        {"definition": "snowflake", "repo": str(repo.path)},
        16,
    )
    assert [p.code for p in procs] == [0] * 16, [p.stderr for p in procs if p.code]
    # All agree on the image. Whether each says it was built during its resolve depends on
    # when its first look got through the faults: before the build finished (built) or after
    # (found).
    parsed = [json.loads(p.stdout) for p in procs]
    assert {(r["state"], r["built"]) for r in parsed} <= {("built", "true"), ("found", "false")}
    results = {
        json.dumps({k: v for k, v in r.items() if k not in ("state", "built")}) for r in parsed
    }
    assert len(results) == 1, _differences(results)
    assert ("built", "true") in {(r["state"], r["built"]) for r in parsed}
    result = json.loads(results.pop())
    assert builds_per_definition() == Counter({"base": 1, "snowflake": 1})
    tagged = {tags_of(i)[model.TAG_DEFINITION]: i["ImageId"] for i in own_images()}
    assert tagged == {"base": result["parent_ami_id"], "snowflake": result["ami_id"]}
    assert [k for k in manifest_keys() if "/leases/" in k] == []
    lost = {k: v for k, v in proxy.counters.injected.items() if k.startswith("lost-")}
    assert lost and len(proxy.counters.injected) > len(lost)
    print(f"fault proxy: forwarded {proxy.counters.forwarded}, injected {proxy.counters.injected}")


def _differences(results: set[str]) -> dict[str, set[str]]:
    """The keys whose values differ between results, with each value seen."""
    parsed = [json.loads(r) for r in results]
    keys = set().union(*parsed)
    return {
        k: {str(p.get(k)) for p in parsed} for k in keys if len({str(p.get(k)) for p in parsed}) > 1
    }
