"""Build locks: one build per image at a time.

This is the local lock: an exclusive flock on a file per (definition, fingerprint) in the state
directory. It protects the builds of one machine; processes on other machines are not seen.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bridge.errors import Cancelled, LeaseError

log = logging.getLogger(__name__)


@contextmanager
def local_lock(
    path: Path, *, timeout: float, poll: float = 0.2, cancelled: threading.Event | None = None
) -> Iterator[None]:
    """Hold an exclusive lock on `path` for the block; the lock file is removed afterwards.

    Waiting for another holder stops with Cancelled once `cancelled` is set."""
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout
    announced = False
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            if time.monotonic() > deadline:
                raise LeaseError(
                    f"Another build of the same image ({holder}) still holds {path} after "
                    f"{timeout:.0f}s. Wait for it to finish, or stop it and run again."
                ) from None
            if not announced:
                log.info("waiting for the build held by %s (%s)", holder, path.name)
                announced = True
            if cancelled is not None and cancelled.wait(poll):
                raise Cancelled(f"Cancelled while waiting for {path.name}.") from None
            if cancelled is None:
                time.sleep(poll)
            continue
        # The previous holder removes the file when done; a lock on a removed file is no lock.
        try:
            current = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            current = False
        if current:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
        yield
    finally:
        try:
            os.unlink(path)
        finally:
            os.close(fd)


def _holder(fd: int) -> str:
    try:
        return os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown process"
    except OSError:
        return "unknown process"
