"""revoke and restore cut short at any step are completed by the same command run again.

The process is "lost" at step k: through the fault proxy, every write to AWS from the k-th on
fails (botocore's retries are off, as for a process that stops), for every k up to the number of
writes the command makes; then the same command runs again without faults, and the end state is
the complete one.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timezone

import pytest

from bridge import model
from bridge.aws.clients import AwsClients
from bridge.cli import workspace
from bridge.context import Context
from bridge.errors import BridgeError, QueryError
from bridge.lifecycle import intents
from bridge.lifecycle.revoke import Revoker
from bridge.sandbox import OTHER_ACCOUNT
from bridge.settings import cli_flag, parse_options, state_dir
from testing.faultproxy import FaultProxy
from testing.sandbox import BUCKET, aws_client, tags_of
from tests.pipeline.test_resolve_loop import place

# Every kill point or many generated inputs: `make test-fast` leaves it out.
pytestmark = pytest.mark.sweep

WRITES = (b"Action=CreateTags", b"Action=DeleteTags", b"Action=EnableImageDeprecation",
          b"Action=DisableImageDeprecation", b"Action=DisableImage&", b"Action=EnableImage&",
          b"Action=ModifyImageAttribute", b"Action=ModifySnapshotAttribute")  # fmt: skip


class LostAt:
    """Block every write to AWS from the `k`-th distinct one on (retries of a write are the
    same write); `k` = 0 blocks nothing and counts them."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.writes: list[tuple[str, str, bytes]] = []
        self._lock = threading.Lock()

    def __call__(self, method: str, path: str, headers: object, body: bytes) -> bool:
        if not (method in ("PUT", "DELETE") or any(w in body for w in WRITES)):
            return False
        key = (method, path, body)
        with self._lock:
            if key not in self.writes:
                self.writes.append(key)
            return self.k > 0 and self.writes.index(key) + 1 >= self.k


def context(env, repo) -> Context:
    options = parse_options({"repo": str(repo.path)}, spell=cli_flag, cache_dir=state_dir(env))
    return workspace.context(options, env)


def chain(sandbox_server, env, repo) -> dict[str, str]:
    """A fresh sandbox with base and snowflake built at HEAD (registered, not built)."""
    sandbox_server.reset()
    aws_client("s3").create_bucket(Bucket=BUCKET)
    return {name: place(env, repo, name) for name in ("base", "snowflake")}


def cut_short(
    sandbox_server, ctx: Context, monkeypatch, k: int, run: Callable[[Revoker], object]
) -> LostAt:
    """`run` with the process lost at write `k` (0: never); its writes."""
    lost = LostAt(k)
    with FaultProxy(sandbox_server.endpoint, rate=0.0, block=lost) as proxy:
        with monkeypatch.context() as m:
            m.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
            faulty = replace(ctx, clients=AwsClients(max_attempts=1))
            if k == 0:
                run(Revoker(faulty))
            else:
                with pytest.raises(BridgeError):
                    run(Revoker(faulty))
    return lost


def image(ami: str) -> dict:
    (found,) = aws_client("ec2").describe_images(ImageIds=[ami], IncludeDisabled=True)["Images"]
    return found


@pytest.fixture(params=["deprecate", "disable"])
def on_revoke(request, repo) -> str:
    """The catalog's on_revoke, its images shared with a workload account (a disabled image
    loses its launch permissions; a restore gives them back)."""
    data = repo.catalog()
    data["on_revoke"] = request.param
    data["share"] = [OTHER_ACCOUNT]
    repo.set_catalog(data)
    repo.commit(f"on_revoke {request.param}")
    return str(request.param)


def manifest_of(name: str) -> dict:
    keys = aws_client("s3").list_objects_v2(Bucket=BUCKET, Prefix=f"images/{name}/")
    (key,) = [o["Key"] for o in keys["Contents"]]
    return json.loads(aws_client("s3").get_object(Bucket=BUCKET, Key=key)["Body"].read())


def assert_revoked(amis: dict[str, str], reason: str, on_revoke: str = "deprecate") -> None:
    by = tags_of(image(amis["base"]))[model.TAG_BUILD_ID]
    for name, ami in amis.items():
        found = image(ami)
        assert (found["State"] == "disabled") == (on_revoke == "disable"), name
        tags = tags_of(found)
        assert tags[model.TAG_REVOKED_BY] == by, name
        assert reason in tags[model.TAG_REVOKE_REASON], name
        deprecated = datetime.fromisoformat(found["DeprecationTime"].replace("Z", "+00:00"))
        assert deprecated > datetime.now(timezone.utc), name
        assert manifest_of(name)["revoked"]["by"] == by, name


def assert_restored(amis: dict[str, str], on_revoke: str = "deprecate") -> None:
    for name, ami in amis.items():
        found = image(ami)
        assert found["State"] == "available", name
        if on_revoke == "disable":  # shared again as the catalog says
            permissions = aws_client("ec2").describe_image_attribute(
                ImageId=ami, Attribute="launchPermission"
            )["LaunchPermissions"]
            assert {"UserId": OTHER_ACCOUNT} in permissions, name
        assert not set(model.REVOCATION_TAGS) & set(tags_of(found)), name
        assert "DeprecationTime" not in found, name
        assert "revoked" not in manifest_of(name), name


def revoke(r: Revoker) -> object:
    return r.revoke("base", reason="CVE-1", at=None)


def restore(r: Revoker) -> object:
    return r.restore("base")


def test_a_revoke_cut_short_at_any_write_is_completed_by_running_it_again(
    sandbox_server, sandbox_env, repo, monkeypatch, on_revoke
):
    ctx = context(sandbox_env, repo)
    chain(sandbox_server, sandbox_env, repo)
    steps = len(cut_short(sandbox_server, ctx, monkeypatch, 0, revoke).writes)
    assert steps >= 6  # tags and deprecation of two images, two manifests
    for k in range(1, steps + 1):
        amis = chain(sandbox_server, sandbox_env, repo)
        cut_short(sandbox_server, ctx, monkeypatch, k, revoke)
        fresh = context(sandbox_env, repo)
        # Once its intent is recorded (the first write), it is incomplete until the last, and
        # status says so; run again, with any reason, it completes as recorded.
        shown = intents.notes(fresh, ["base"])
        assert bool(shown) == (k > 1), (k, shown)
        if shown:
            assert "INCOMPLETE revoke of base" in shown["base"]
            assert "ami-bridge revoke base --reason CVE-1" in shown["base"]
        Revoker(fresh).revoke("base", reason="CVE-2 (a retry)", at=None)
        assert_revoked(amis, "CVE-1" if k > 1 else "CVE-2 (a retry)", on_revoke)
        assert intents.notes(fresh, ["base"]) == {}


def test_a_restore_cut_short_at_any_write_is_completed_by_running_it_again(
    sandbox_server, sandbox_env, repo, monkeypatch, on_revoke
):
    ctx = context(sandbox_env, repo)
    chain(sandbox_server, sandbox_env, repo)
    revoke(Revoker(ctx))
    steps = len(cut_short(sandbox_server, ctx, monkeypatch, 0, restore).writes)
    assert steps >= 6
    for k in range(1, steps + 1):
        amis = chain(sandbox_server, sandbox_env, repo)
        revoke(Revoker(context(sandbox_env, repo)))
        cut_short(sandbox_server, ctx, monkeypatch, k, restore)
        fresh = context(sandbox_env, repo)
        shown = intents.notes(fresh, ["base"])
        assert bool(shown) == (k > 1), (k, shown)
        if shown:
            assert "INCOMPLETE restore of base" in shown["base"]
            # Nothing else starts on top of it.
            with pytest.raises(QueryError, match="Finish it first: `ami-bridge restore base`"):
                Revoker(fresh).revoke("base", reason="CVE-3", at=None)
        Revoker(fresh).restore("base")
        assert_restored(amis, on_revoke)
        assert intents.notes(fresh, ["base"]) == {}
