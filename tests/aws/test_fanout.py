"""Regions in parallel (fanout.py): what the bridge asks of every region is asked of all of them
at once, as the requests themselves show; and a child is built while its parent's copies to
other regions are still being made."""

from __future__ import annotations

import json
import threading

from testing.bridge import run_bridge
from testing.faultproxy import FaultProxy

EAST, WEST = "us-east-1", "eu-west-1"


def region_of(headers) -> str:
    scope = headers.get("Authorization", "").split("Credential=", 1)[-1].split("/")
    return scope[2] if len(scope) > 2 else ""


class Rendezvous:
    """The first `parties` requests `wanted` picks wait at the proxy until all of them are in
    flight; one that waits in vain (the others come only after it) is recorded as alone."""

    def __init__(self, parties: int, wanted) -> None:
        self.barrier = threading.Barrier(parties, timeout=60)
        self.wanted, self.left = wanted, parties
        self.met: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, method, path, headers, body) -> None:
        if not self.wanted(body) and not self.wanted(headers.get("X-Amz-Target", "").encode()):
            return
        with self.lock:
            if self.left == 0:
                return
            self.left -= 1
        try:
            self.barrier.wait()
            self.met.append(region_of(headers))
        except threading.BrokenBarrierError:
            self.met.append("alone")


def built_in_two_regions(repo, env) -> None:
    data = repo.catalog()
    data["definitions"]["base"]["regions"] = [EAST, WEST]
    repo.set_catalog(data)
    repo.commit("two regions")
    built = run_bridge(["build", "base", "--repo", str(repo.path)], env)
    assert built.code == 0, built.stderr


def through(hold, sandbox_server, env, repo, *args: str):
    """`ami-bridge ARGS --repo REPO`, every AWS call through a proxy that runs `hold` on it
    (Packer talks to the sandbox directly)."""
    with FaultProxy(sandbox_server.endpoint, rate=0.0, hold=hold) as proxy:
        return run_bridge(
            [*args, "--repo", str(repo.path)],
            {
                **env,
                "AWS_ENDPOINT_URL": proxy.endpoint,
                "AMI_BRIDGE_PACKER_EC2_ENDPOINT": sandbox_server.endpoint,
            },
        )


def test_a_lookup_asks_every_region_at_once(sandbox_env, sandbox_server, repo, packer):
    built_in_two_regions(repo, sandbox_env)

    lookups = Rendezvous(2, lambda body: b"Action=DescribeImages" in body and b"tag%3ASHA" in body)
    proc = through(lookups, sandbox_server, sandbox_env, repo, "resolve", "base", "--json")
    assert proc.code == 0, proc.stderr
    assert json.loads(proc.stdout)["base"]["state"] == "found"
    assert sorted(lookups.met) == [WEST, EAST]  # both in flight at once: neither alone


def test_gc_scans_every_region_at_once(sandbox_env, sandbox_server, repo):
    """gc's scan of two regions (their launch templates first): both at once."""
    data = repo.catalog()
    data["regions"] = [EAST, WEST]
    repo.set_catalog(data)
    repo.commit("two regions")
    scans = Rendezvous(2, lambda body: b"Action=DescribeLaunchTemplates" in body)
    proc = through(scans, sandbox_server, sandbox_env, repo, "gc", "--json")
    assert proc.code == 0, proc.stderr
    assert sorted(scans.met) == [WEST, EAST]


def test_a_build_copies_to_every_other_region_at_once(sandbox_env, sandbox_server, repo, packer):
    data = repo.catalog()
    data["definitions"]["base"]["regions"] = [EAST, WEST, "ap-southeast-2"]
    repo.set_catalog(data)
    repo.commit("three regions")
    copies = Rendezvous(2, lambda body: b"Action=CopyImage" in body)
    proc = through(copies, sandbox_server, sandbox_env, repo, "build", "base", "--json")
    assert proc.code == 0, proc.stderr
    assert set(json.loads(json.loads(proc.stdout)["base"]["amis_json"])) == {
        EAST,
        WEST,
        "ap-southeast-2",
    }
    assert sorted(copies.met) == ["ap-southeast-2", WEST]


def test_a_promotion_writes_every_regions_channel_at_once(
    sandbox_env, sandbox_server, repo, packer
):
    built_in_two_regions(repo, sandbox_env)
    writes = Rendezvous(2, lambda text: text == b"AmazonSSM.PutParameter")
    proc = through(writes, sandbox_server, sandbox_env, repo, "promote", "base", "prod")
    assert proc.code == 0, proc.stderr
    assert sorted(writes.met) == [WEST, EAST]


def test_a_revocation_writes_every_region_at_once(sandbox_env, sandbox_server, repo, packer):
    built_in_two_regions(repo, sandbox_env)
    writes = Rendezvous(2, lambda body: b"Action=EnableImageDeprecation" in body)
    proc = through(writes, sandbox_server, sandbox_env, repo, "revoke", "base", "--reason", "CVE-1")
    assert proc.code == 0, proc.stderr
    assert sorted(writes.met) == [WEST, EAST]


def test_a_restore_writes_every_region_at_once(sandbox_env, sandbox_server, repo, packer):
    built_in_two_regions(repo, sandbox_env)
    revoked = run_bridge(
        ["revoke", "base", "--reason", "CVE-1", "--repo", str(repo.path)], sandbox_env
    )
    assert revoked.code == 0, revoked.stderr
    lifts = Rendezvous(2, lambda body: b"Action=DisableImageDeprecation" in body)
    untags = Rendezvous(2, lambda body: b"Action=DeleteTags" in body)

    def hold(method, path, headers, body) -> None:
        lifts(method, path, headers, body)
        untags(method, path, headers, body)

    proc = through(hold, sandbox_server, sandbox_env, repo, "restore", "base")
    assert proc.code == 0, proc.stderr
    assert sorted(lifts.met) == [WEST, EAST]
    assert sorted(untags.met) == [WEST, EAST]


def test_a_child_is_built_while_its_parents_copies_are_made(
    sandbox_env, sandbox_server, repo, packer
):
    """The base's copy to eu-west-1 is held at the proxy until the snowflake (built in
    us-east-1, on the base there) is tagged: a child that waited for its parent's copies would
    never be."""
    data = repo.catalog()
    data["definitions"]["base"]["regions"] = [EAST, WEST]
    repo.set_catalog(data)
    repo.commit("the base in two regions")
    child_tagged = threading.Event()
    copies: list[bool] = []

    def hold(method, path, headers, body) -> None:
        if b"Action=CreateTags" in body and b"snowflake" in body:
            child_tagged.set()
        if b"Action=CopyImage" in body:
            copies.append(child_tagged.wait(timeout=60))

    proc = through(hold, sandbox_server, sandbox_env, repo, "build", "snowflake", "--json")
    assert proc.code == 0, proc.stderr
    built = json.loads(proc.stdout)
    assert set(json.loads(built["base"]["amis_json"])) == {EAST, WEST}
    assert built["snowflake"]["state"] == "built"
    assert copies == [True]  # the base's one copy went on only once the snowflake was tagged
