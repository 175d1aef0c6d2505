"""This machine's build lock (locking.py), held by real processes."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from bridge.errors import LeaseError
from bridge.locking import local_lock

HOLDER = """
import sys, time
from pathlib import Path
from bridge.locking import local_lock
lock, ready, release = map(Path, sys.argv[1:4])
with local_lock(lock, timeout=5):
    ready.write_text("held")
    while not release.exists():
        time.sleep(0.05)
"""


def hold(tmp_path: Path) -> tuple[subprocess.Popen[bytes], Path, Path]:
    lock, ready, release = tmp_path / "locks" / "base-f.lock", tmp_path / "ready", tmp_path / "go"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(lock), str(ready), str(release)])
    deadline = time.monotonic() + 30
    while not ready.exists():
        assert proc.poll() is None, "the holder process died"
        assert time.monotonic() < deadline, "the holder never took the lock"
        time.sleep(0.05)
    return proc, lock, release


def test_a_second_process_waits_then_names_the_holder(tmp_path):
    proc, lock, release = hold(tmp_path)
    try:
        with pytest.raises(LeaseError) as err:
            with local_lock(lock, timeout=0.5, poll=0.05):
                pytest.fail("took a lock another process holds")
        assert f"pid {proc.pid}" in str(err.value)
    finally:
        release.touch()
        proc.wait(timeout=30)


def test_the_lock_passes_on_when_its_holder_finishes(tmp_path):
    proc, lock, release = hold(tmp_path)
    entered = []
    release.touch()
    with local_lock(lock, timeout=30, poll=0.05):
        entered.append(True)
        assert lock.read_text().startswith("pid ")
    assert proc.wait(timeout=30) == 0
    assert entered and not lock.exists()


def test_a_killed_holder_leaves_no_lock_behind(tmp_path):
    proc, lock, _ = hold(tmp_path)
    proc.kill()
    proc.wait(timeout=30)
    with local_lock(lock, timeout=5, poll=0.05):
        pass  # the kernel dropped the dead holder's flock


def test_the_lock_file_is_removed_even_when_the_block_fails(tmp_path):
    lock = tmp_path / "locks" / "x.lock"
    with pytest.raises(RuntimeError):
        with local_lock(lock, timeout=1):
            raise RuntimeError("build failed")
    assert not lock.exists()
