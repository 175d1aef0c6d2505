"""Exactly once: an image's builds, copies and deletion run under this machine's lock, then its
S3 lease, so each happens once however many processes and machines ask for it."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from bridge.aws.clients import AwsClients
from bridge.aws.lease import Lease, LeaseConfig, LeaseManager, build_once, lease_key
from bridge.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")


class Guard:
    """The lock and lease of each image of one catalog."""

    def __init__(
        self,
        settings: Settings,
        clients: AwsClients,
        *,
        cancelled: threading.Event | None = None,
    ) -> None:
        self._settings = settings
        self._clients = clients
        self._cancelled = cancelled or threading.Event()
        self._leases: LeaseManager | None = None
        self._warned_no_lease = False
        self._shared = threading.Lock()

    def once(
        self,
        definition: str,
        fingerprint: str,
        make: Callable[[Lease | None], T],
        *,
        done: Callable[[], T | None] = lambda: None,
    ) -> T:
        """`make` (build, copy or delete) the image of `definition` with `fingerprint` under its
        lock and lease, unless `done` finds that another process made it meanwhile."""
        return build_once(
            self.lock_path(definition, fingerprint),
            self.leases(),
            lease_key(self._settings.lease_prefix, definition, fingerprint),
            definition,
            fingerprint,
            wait_timeout=self._settings.wait_timeout,
            cancelled=self._cancelled,
            done=done,
            build=make,
        )

    def confirm(self, lease: Lease | None) -> bool:
        """Whether `lease` is still this process's (always, without leases)."""
        return lease is None or self._leases is None or self._leases.confirm(lease)

    def lock_path(self, definition: str, fingerprint: str) -> Path:
        """This machine's lock file of one image's builds, copies and deletion."""
        return self._settings.lock_dir / f"{definition}-{fingerprint}.lock"

    def leases(self) -> LeaseManager | None:
        """The S3 build leases; None (with one warning) when no lease bucket is configured."""
        if self._settings.lease_bucket is None:
            if not self._warned_no_lease:
                log.warning(
                    "no lease bucket is configured: duplicate builds are prevented on this "
                    "machine only (set a manifest or lease bucket in the catalog to protect "
                    "every machine)"
                )
                self._warned_no_lease = True
            return None
        with self._shared:
            if self._leases is None:
                self._leases = LeaseManager(
                    self._clients.s3(self._settings.region),
                    LeaseConfig(
                        bucket=self._settings.lease_bucket,
                        prefix=self._settings.lease_prefix,
                        ttl=self._settings.lease_ttl,
                        wait_timeout=self._settings.wait_timeout,
                    ),
                )
                self._leases.cancelled = self._cancelled
            return self._leases
