"""Build leases in S3: exactly one builder per image across machines.

A lease is the object `<prefix>/leases/<definition>/<fingerprint>-<regions>.json`, created with a
conditional write (`If-None-Match: *`) so only one creator wins. Its holder renews it
(`If-Match: <ETag>`) while Packer runs and deletes it when done. A lease past its expiry (holder
killed) is taken over with a conditional write on the ETag the taker read, so of two takers only
one wins. Everyone else waits for the holder's image.

A holder stopped by Ctrl-C or SIGTERM releases its lease. One killed outright (SIGKILL, the OOM
killer) cannot; its lease records which process held it (boot, PID namespace, PID and the PID's
start time), so a taker on the same machine sees at once that the holder is gone and takes it
over without waiting for it to expire. On other machines the lease expires after `ttl`.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from bridge.aws.clients import aws_call
from bridge.errors import Cancelled, LeaseError
from bridge.locking import local_lock

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class LeaseConfig:
    """Where leases live and how long they last."""

    bucket: str
    prefix: str = ""
    ttl: float = 120.0
    wait_timeout: float = 3600.0
    poll_min: float = 1.0
    poll_max: float = 15.0


@dataclass
class Lease:
    """A lease this process holds."""

    key: str
    token: str
    etag: str
    lost: bool = False


def _process_identity(pid: int | str) -> str | None:
    """`<boot id>/<PID namespace>/<pid>/<start time>` of a process on this machine (Linux), or
    None where that cannot be read (another system; the process is gone)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip()
        namespace = os.readlink("/proc/self/ns/pid")
        stat = Path(f"/proc/{int(pid)}/stat").read_text(encoding="ascii", errors="replace")
        # Field 22, after the command name (which may hold spaces and parentheses).
        start = stat.rsplit(")", 1)[1].split()[19]
    except (OSError, ValueError, IndexError):
        return None
    return f"{boot}/{namespace}/{int(pid)}/{start}"


def _holder_gone(data: dict[str, Any]) -> bool:
    """Whether the lease's holder was a process of this machine (same boot, same PID namespace)
    that no longer runs: its PID is free or now another process's."""
    recorded = data.get("process")
    ours = _process_identity(os.getpid())
    if not isinstance(recorded, str) or ours is None:
        return False
    machine = recorded.rsplit("/", 2)[0]
    if machine != ours.rsplit("/", 2)[0]:
        return False  # another machine, container or boot: only the expiry can tell
    pid = recorded.rsplit("/", 2)[1]
    return _process_identity(pid) != recorded


def lease_key(prefix: str, definition: str, fingerprint: str) -> str:
    """The S3 key of the lease for one image: its definition and fingerprint, whatever regions
    it goes to (one build serves them all, and copies run under the same lease)."""
    name = f"leases/{definition}/{fingerprint}.json"
    head = prefix.strip("/")
    return f"{head}/{name}" if head else name


class LeaseManager:
    """Takes, renews, waits on and releases build leases."""

    def __init__(
        self, s3: S3Client, config: LeaseConfig, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.s3 = s3
        self.config = config
        self.clock = clock
        # Set to stop waiting for other builders (Ctrl-C, --fail-fast).
        self.cancelled = threading.Event()

    def _body(self, token: str, definition: str, fingerprint: str) -> bytes:
        now = self.clock()
        return json.dumps(
            {
                "owner": token,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "process": _process_identity(os.getpid()),
                "definition": definition,
                "fingerprint": fingerprint,
                "started": datetime.fromtimestamp(now, timezone.utc).isoformat(timespec="seconds"),
                "expires": now + self.config.ttl,
            },
            sort_keys=True,
        ).encode()

    def _put(self, key: str, body: bytes, **condition: str) -> str | None:
        """Conditional put; the new ETag, or None when the condition failed."""
        from botocore.exceptions import ClientError

        uri = f"s3://{self.config.bucket}/{key}"
        with aws_call(f"writing the build lease {uri}", "s3:PutObject"):
            try:
                response = self.s3.put_object(
                    Bucket=self.config.bucket,
                    Key=key,
                    Body=body,
                    ContentType="application/json",
                    **condition,  # type: ignore[arg-type]
                )
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                if code in {"PreconditionFailed", "ConditionalRequestConflict", "412", "NoSuchKey"}:
                    return None
                raise
        return str(response["ETag"])

    def read(self, key: str) -> tuple[dict[str, Any], str] | None:
        """The lease's content and ETag, or None when there is none."""
        from botocore.exceptions import ClientError

        uri = f"s3://{self.config.bucket}/{key}"
        with aws_call(f"reading the build lease {uri}", "s3:GetObject"):
            try:
                response = self.s3.get_object(Bucket=self.config.bucket, Key=key)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in {"NoSuchKey", "404"}:
                    return None
                raise
            raw = response["Body"].read()
        try:
            data = json.loads(raw)
            float(data["expires"])
        except (ValueError, KeyError, TypeError):
            # Unreadable leases are treated as expired, so a corrupt object cannot block builds.
            data = {"owner": "?", "host": "?", "pid": "?", "expires": 0, "started": "?"}
        return data, str(response["ETag"])

    def try_acquire(self, key: str, definition: str, fingerprint: str) -> Lease | None:
        """Take the lease if it is free or expired; None when someone else holds it."""
        token = uuid.uuid4().hex
        body = self._body(token, definition, fingerprint)
        etag = self._put(key, body, IfNoneMatch="*")
        if etag is not None:
            return Lease(key, token, etag)
        current = self.read(key)
        if current is None:
            return None  # released meanwhile; the caller looks again
        data, seen = current
        if data.get("owner") == token:  # our create succeeded but its response was lost
            return Lease(key, token, seen)
        gone = _holder_gone(data)
        if float(data["expires"]) > self.clock() and not gone:
            return None
        log.warning(
            "taking over the %s build lease of %s (pid %s, started %s)",
            "dead holder's" if gone else "expired",
            data.get("host"),
            data.get("pid"),
            data.get("started"),
        )
        etag = self._put(key, body, IfMatch=seen)
        return Lease(key, token, etag) if etag is not None else None

    def holder(self, key: str) -> str:
        """Who holds the lease, for messages."""
        current = self.read(key)
        if current is None:
            return "nobody"
        data = current[0]
        return f"pid {data.get('pid')} on {data.get('host')}, started {data.get('started')}"

    def renew(self, lease: Lease, definition: str, fingerprint: str) -> None:
        """Extend the lease; marks it lost when someone else took it over."""
        etag = self._put(
            lease.key, self._body(lease.token, definition, fingerprint), IfMatch=lease.etag
        )
        if etag is None:
            lease.lost = True
            log.error("the build lease %s was taken over by another process", lease.key)
        else:
            lease.etag = etag

    def confirm(self, lease: Lease) -> bool:
        """Whether the lease is still ours (read back, so missed renewals are noticed too)."""
        if not lease.lost:
            current = self.read(lease.key)
            lease.lost = current is None or current[0].get("owner") != lease.token
        return not lease.lost

    def release(self, lease: Lease) -> None:
        """Delete the lease (only if it is still ours)."""
        from botocore.exceptions import ClientError

        if lease.lost:
            return
        with aws_call(
            f"deleting the build lease s3://{self.config.bucket}/{lease.key}", "s3:DeleteObject"
        ):
            try:
                self.s3.delete_object(Bucket=self.config.bucket, Key=lease.key, IfMatch=lease.etag)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") not in {
                    "PreconditionFailed",
                    "NoSuchKey",
                    "404",
                }:
                    raise

    @contextmanager
    def renewing(self, lease: Lease, definition: str, fingerprint: str) -> Iterator[Lease]:
        """Renew the lease in the background while the block runs; release it afterwards."""
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(self.config.ttl / 3):
                try:
                    self.renew(lease, definition, fingerprint)
                except Exception as exc:  # keep renewing through transient failures
                    log.warning("renewing the build lease failed: %s", exc)
                if lease.lost:
                    return

        thread = threading.Thread(target=loop, name="lease-renewal", daemon=True)
        thread.start()
        try:
            yield lease
        finally:
            stop.set()
            thread.join()
            self.release(lease)

    def wait(
        self,
        key: str,
        definition: str,
        fingerprint: str,
        done: Callable[[], T | None],
    ) -> tuple[T | None, Lease | None]:
        """Take the lease, or wait until `done()` gives a result (the holder's image).

        Returns (None, lease) or (result, None). `done()` is asked only while someone else holds
        the lease: a caller that gets it must still check whether the previous holder finished.
        Polls with exponential backoff; a bounded wait ends with a LeaseError naming the holder.
        """
        deadline = time.monotonic() + self.config.wait_timeout
        delay = self.config.poll_min
        announced = False
        while True:
            lease = self.try_acquire(key, definition, fingerprint)
            if lease is not None:
                return None, lease
            result = done()
            if result is not None:
                return result, None
            if not announced:
                log.info("%s is being built by %s; waiting for it", definition, self.holder(key))
                announced = True
            if time.monotonic() + delay > deadline:
                raise LeaseError(
                    f"{definition} ({fingerprint[:12]}) is still being built by "
                    f"{self.holder(key)} after {self.config.wait_timeout:.0f}s (lease "
                    f"s3://{self.config.bucket}/{key}). Wait for that build, or if its process "
                    "is gone, run again once the lease expires."
                )
            if self.cancelled.wait(delay):
                raise Cancelled(f"Cancelled while waiting for the build of {definition}.")
            delay = min(delay * 2, self.config.poll_max)


def build_once(
    lock: Path,
    leases: LeaseManager | None,
    key: str,
    definition: str,
    fingerprint: str,
    *,
    wait_timeout: float,
    done: Callable[[], T | None],
    build: Callable[[Lease | None], T],
    cancelled: threading.Event | None = None,
) -> T:
    """Run `build` for one image at most once across processes and machines.

    First this machine's lock (the file `lock`), then, with `leases`, the S3 lease `key`. Whoever
    held either before may have built the image meanwhile: `done()` returns their result, and then
    `build` is not called. `build` gets the lease it runs under (None without `leases`).
    """
    with local_lock(lock, timeout=wait_timeout, cancelled=cancelled):
        if leases is None:
            found = done()
            return found if found is not None else build(None)
        found, lease = leases.wait(key, definition, fingerprint, done)
        if found is not None:
            return found
        assert lease is not None
        with leases.renewing(lease, definition, fingerprint):
            # The holder before us may have finished just before releasing.
            found = done()
            return found if found is not None else build(lease)
