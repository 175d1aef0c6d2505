"""A build stopped during its image's tests cleans up after itself, with real Packer against the
sandbox: SIGTERM (a cancelled CI job) stops the test and everything it started, rejects the
untested image and releases the lease; SIGKILL, which nothing can catch, still ends the test's
process, and the next build on the machine takes the dead holder's lease at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from testing.bridge import run_bridge
from testing.hold import wait_for
from testing.sandbox import BUCKET, aws_client, own_images

# A test that, when HANG is set, records its PID and its background child's, then waits forever.
HANG = """#!/bin/sh
[ -n "$HANG" ] || exit 0
sleep 600 &
echo "$$ $!" > "$MARKER.tmp"
mv "$MARKER.tmp" "$MARKER"
wait
"""


def running(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie waiting for its parent counts as ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def hanging_build(repo, sandbox_env, marker: Path) -> subprocess.Popen[str]:
    repo.write("tests/hang.sh", HANG).chmod(0o755)
    data = repo.catalog()
    data["definitions"]["base"]["tests"] = [{"name": "hangs", "command": ["tests/hang.sh"]}]
    repo.set_catalog(data)
    repo.commit("base has a test")
    return subprocess.Popen(
        [sys.executable, "-m", "bridge", "build", "base", "--repo", str(repo.path)],
        env={**sandbox_env, "HANG": "1", "MARKER": str(marker)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def leases() -> list[str]:
    listed = aws_client("s3").list_objects_v2(Bucket=BUCKET)
    return [o["Key"] for o in listed.get("Contents", []) if "/leases/" in f"/{o['Key']}"]


def stop_all(pids: list[int]) -> None:
    for pid in pids:
        if running(pid):
            os.kill(pid, signal.SIGKILL)


def test_sigterm_during_the_tests_stops_them_rejects_the_image_and_releases_the_lease(
    sandbox_env, repo, packer, tmp_path
):
    marker = tmp_path / "testing"
    builder = hanging_build(repo, sandbox_env, marker)
    pids: list[int] = []
    try:
        wait_for(marker.exists, timeout=300)
        pids = [int(p) for p in marker.read_text().split()]
        assert leases(), "the build holds its lease while the test runs"
        builder.send_signal(signal.SIGTERM)
        _, stderr = builder.communicate(timeout=300)
    finally:
        builder.kill()
        stop_all(pids)
    assert builder.returncode == 143, stderr
    assert "stopped by SIGTERM" in stderr and "Interrupted while testing" in stderr, stderr
    assert "Traceback" not in stderr
    # The test and what it started in the background are gone, with the bridge.
    assert not any(running(pid) for pid in pids)
    assert leases() == []
    assert own_images() == []  # the untested candidate was deregistered


def test_sigkill_during_the_tests_ends_the_test_and_the_next_build_takes_the_lease_at_once(
    sandbox_env, repo, packer, tmp_path
):
    marker = tmp_path / "testing"
    builder = hanging_build(repo, sandbox_env, marker)
    pids: list[int] = []
    try:
        wait_for(marker.exists, timeout=300)
        pids = [int(p) for p in marker.read_text().split()]
        builder.kill()
        builder.wait()
        # The kernel ends the test's own process with the bridge (its background child has no
        # such tie: only a catchable stop reaches the whole group).
        wait_for(lambda: not running(pids[0]), timeout=60)
    finally:
        builder.kill()
        stop_all(pids)
    assert leases(), "a SIGKILLed bridge cannot release its lease"
    # The lease's TTL is 300 s: a second build on this machine does not wait it out.
    again = run_bridge(["build", "base", "--repo", str(repo.path), "--json"], sandbox_env)
    assert again.code == 0, again.stderr
    assert "dead holder's build lease" in again.stderr and "waiting for it" not in again.stderr
    assert json.loads(again.stdout)["base"]["state"] == "built"
    assert leases() == []
