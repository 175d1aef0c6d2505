"""A test command's processes (gates.py): a session of its own, ended with everything it
started when it runs too long, when the run is cancelled, or when the bridge itself dies."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable


def stop_group(proc: subprocess.Popen[str]) -> None:
    """Kill every process of a test's session (it leads its own process group)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:  # all gone already
        pass
    proc.wait()


class Stopped(Exception):
    """The run was cancelled while a test ran."""


def communicate(proc: subprocess.Popen[str], timeout: float, cancelled: threading.Event) -> str:
    """The test's output once it exits; TimeoutExpired past `timeout`, Stopped as soon as
    `cancelled` is set (looked at twice a second: a Ctrl-C must not wait out a long test)."""
    deadline = time.monotonic() + timeout
    while True:
        if cancelled.is_set():
            raise Stopped
        left = deadline - time.monotonic()
        if left <= 0:
            raise subprocess.TimeoutExpired(proc.args, timeout)
        try:
            return proc.communicate(timeout=min(left, 0.5))[0]
        except subprocess.TimeoutExpired:
            continue


def die_with_parent() -> None:
    """In a test's process, before it runs the test: ask Linux to send it SIGKILL when the bridge
    dies (PR_SET_PDEATHSIG). Elsewhere, or if the call fails, a SIGKILLed bridge may leave the
    test running; Ctrl-C and SIGTERM stop it on every system."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _prctl() -> Callable[..., int] | None:
    # Looked up once, in the bridge: a forked child must not load libraries.
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
        return prctl
    except (OSError, AttributeError):
        return None


_PR_SET_PDEATHSIG = 1
_PRCTL = _prctl()
