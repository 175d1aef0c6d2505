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
from bridge.errors import BridgeError
from bridge.lifecycle.revoke import Revoker
from bridge.settings import cli_flag, parse_options, state_dir
from testing.faultproxy import FaultProxy
from testing.sandbox import BUCKET, aws_client, tags_of
from tests.pipeline.test_resolve_loop import place

WRITES = (b"Action=CreateTags", b"Action=DeleteTags", b"Action=EnableImageDeprecation",
          b"Action=DisableImageDeprecation")  # fmt: skip


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
    (found,) = aws_client("ec2").describe_images(ImageIds=[ami])["Images"]
    return found


def manifest_of(name: str) -> dict:
    keys = aws_client("s3").list_objects_v2(Bucket=BUCKET, Prefix=f"images/{name}/")
    (key,) = [o["Key"] for o in keys["Contents"]]
    return json.loads(aws_client("s3").get_object(Bucket=BUCKET, Key=key)["Body"].read())


def assert_revoked(amis: dict[str, str], reason: str) -> None:
    by = tags_of(image(amis["base"]))[model.TAG_BUILD_ID]
    for name, ami in amis.items():
        found = image(ami)
        tags = tags_of(found)
        assert tags[model.TAG_REVOKED_BY] == by, name
        assert reason in tags[model.TAG_REVOKE_REASON], name
        deprecated = datetime.fromisoformat(found["DeprecationTime"].replace("Z", "+00:00"))
        assert deprecated > datetime.now(timezone.utc), name
        assert manifest_of(name)["revoked"]["by"] == by, name


def assert_restored(amis: dict[str, str]) -> None:
    for name, ami in amis.items():
        found = image(ami)
        assert not set(model.REVOCATION_TAGS) & set(tags_of(found)), name
        assert "DeprecationTime" not in found, name
        assert "revoked" not in manifest_of(name), name


def revoke(r: Revoker) -> object:
    return r.revoke("base", reason="CVE-1", at=None)


def restore(r: Revoker) -> object:
    return r.restore("base")


def test_a_revoke_cut_short_at_any_write_is_completed_by_running_it_again(
    sandbox_server, sandbox_env, repo, monkeypatch
):
    ctx = context(sandbox_env, repo)
    chain(sandbox_server, sandbox_env, repo)
    steps = len(cut_short(sandbox_server, ctx, monkeypatch, 0, revoke).writes)
    assert steps >= 6  # tags and deprecation of two images, two manifests
    for k in range(1, steps + 1):
        amis = chain(sandbox_server, sandbox_env, repo)
        cut_short(sandbox_server, ctx, monkeypatch, k, revoke)
        Revoker(context(sandbox_env, repo)).revoke("base", reason="CVE-1", at=None)
        assert_revoked(amis, "CVE-1")


def test_a_restore_cut_short_at_any_write_is_completed_by_running_it_again(
    sandbox_server, sandbox_env, repo, monkeypatch
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
        Revoker(context(sandbox_env, repo)).restore("base")
        assert_restored(amis)
