from __future__ import annotations

import json

import pytest

from bridge.aws.lease import LeaseConfig, LeaseManager, lease_key
from bridge.errors import LeaseError
from testing.sandbox import BUCKET, aws_client

FP = "f" * 40


def manager(clock=None, **config) -> LeaseManager:
    settings = LeaseConfig(bucket=BUCKET, prefix="images", ttl=30, **config)
    return LeaseManager(aws_client("s3"), settings, **({"clock": clock} if clock else {}))


def test_key_depends_on_region_set_not_order():
    a = lease_key("images", "base", FP)
    assert a == lease_key("images/", "base", FP) == f"images/leases/base/{FP}.json"
    assert a != lease_key("images", "snowflake", FP)
    assert a.startswith("images/leases/base/" + FP)


def test_only_one_creator_wins(sandbox_env):
    key = lease_key("images", "base", FP)
    first, second = manager(), manager()
    lease = first.try_acquire(key, "base", FP)
    assert lease is not None
    assert second.try_acquire(key, "base", FP) is None
    data, etag = first.read(key)
    assert data["owner"] == lease.token and etag == lease.etag
    assert "pid" in first.holder(key)


def test_expired_lease_is_taken_over_by_exactly_one(sandbox_env):
    key = lease_key("images", "base", FP)
    dead = manager().try_acquire(key, "base", FP)
    assert dead is not None
    future = lambda: 10**10  # noqa: E731 - every lease has expired by then
    a, b = manager(clock=future), manager(clock=future)
    # Both takers read the same expired lease; the conditional write lets one win.
    stale_etag = a.read(key)[1]
    won = a._put(key, b"{}", IfMatch=stale_etag)
    lost = b._put(key, b"{}", IfMatch=stale_etag)
    assert won is not None and lost is None
    # Through the public path: a taker of a really expired lease gets it, the next one does not.
    key2 = lease_key("images", "snowflake", FP)
    assert manager().try_acquire(key2, "snowflake", FP) is not None
    taker = manager(clock=future).try_acquire(key2, "snowflake", FP)
    assert taker is not None
    assert manager(clock=lambda: 10**10 - 10).try_acquire(key2, "snowflake", FP) is None


def test_renew_and_release(sandbox_env):
    key = lease_key("images", "base", FP)
    leases = manager()
    lease = leases.try_acquire(key, "base", FP)
    before = lease.etag
    leases.renew(lease, "base", FP)
    assert not lease.lost and lease.etag != before
    leases.release(lease)
    assert leases.read(key) is None


def test_renew_after_takeover_marks_lost_and_keeps_the_new_lease(sandbox_env):
    key = lease_key("images", "base", FP)
    slow = manager()
    lease = slow.try_acquire(key, "base", FP)
    taker = manager(clock=lambda: 10**10).try_acquire(key, "base", FP)
    assert taker is not None
    slow.renew(lease, "base", FP)
    assert lease.lost
    slow.release(lease)
    assert slow.read(key)[0]["owner"] == taker.token


def test_corrupt_lease_counts_as_expired(sandbox_env):
    key = lease_key("images", "base", FP)
    aws_client("s3").put_object(Bucket=BUCKET, Key=key, Body=b"{garbage")
    assert manager().try_acquire(key, "base", FP) is not None


def test_wait_returns_holders_result_or_names_holder(sandbox_env):
    key = lease_key("images", "base", FP)
    assert manager().try_acquire(key, "base", FP) is not None
    # Time enough for three looks on a loaded machine (each is an S3 call).
    waiting = manager(wait_timeout=30, poll_min=0.1, poll_max=0.1)
    results = iter([None, None, "ami-0123456789abcdef0"])
    found, lease = waiting.wait(key, "base", FP, lambda: next(results))
    assert found == "ami-0123456789abcdef0" and lease is None
    with pytest.raises(LeaseError) as err:
        manager(wait_timeout=0.5, poll_min=0.1, poll_max=0.1).wait(key, "base", FP, lambda: None)
    assert "still being built by pid" in str(err.value)
    body = json.loads(aws_client("s3").get_object(Bucket=BUCKET, Key=key)["Body"].read())
    assert body["definition"] == "base" and body["fingerprint"] == FP


def test_confirm_notices_a_takeover_without_a_failed_renewal(sandbox_env):
    key = lease_key("images", "base", FP)
    holder = manager()
    lease = holder.try_acquire(key, "base", FP)
    assert holder.confirm(lease)
    manager(clock=lambda: 10**10).try_acquire(key, "base", FP)
    assert not holder.confirm(lease) and lease.lost


def test_a_live_lease_of_a_dead_process_on_this_machine_is_taken_over_at_once(sandbox_env):
    """A SIGKILLed holder cannot release its lease; a taker on the same machine (same boot and
    PID namespace) sees that the recorded process is gone and does not wait for the expiry."""
    import os
    import subprocess
    import sys

    from bridge.aws import lease as leases

    key = lease_key("images", "base", FP)
    held = manager().try_acquire(key, "base", FP)
    assert held is not None
    data, _ = manager().read(key)
    assert data["process"] == leases._process_identity(os.getpid())
    # A live holder in this process: not taken.
    assert manager().try_acquire(key, "base", FP) is None
    # The same lease, recorded by a process that has since exited.
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=-1)
    gone = leases._process_identity(child.pid)
    child.communicate(b"")
    assert gone is not None and leases._process_identity(child.pid) is None
    s3 = aws_client("s3")
    s3.put_object(Bucket=BUCKET, Key=key, Body=json.dumps({**data, "process": gone}).encode())
    taken = manager().try_acquire(key, "base", FP)
    assert taken is not None, "a dead holder's unexpired lease was not taken over"
    # Another machine's holder (another boot) is never judged from here: only its expiry counts.
    other = "0" * 36 + gone[36:]
    s3.put_object(Bucket=BUCKET, Key=key, Body=json.dumps({**data, "process": other}).encode())
    assert manager().try_acquire(key, "base", FP) is None
