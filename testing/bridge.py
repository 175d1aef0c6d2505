"""The real `ami-bridge` program, run as Terraform or a person would."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Proc:
    """A finished `ami-bridge` process."""

    code: int
    stdout: str
    stderr: str


def run_bridge(
    args: Sequence[str], env: Mapping[str, str], stdin: str | bytes = "", cwd: Path | None = None
) -> Proc:
    """Run `python -m bridge ARGS` with `env`, feeding `stdin`."""
    proc = subprocess.run(
        [sys.executable, "-m", "bridge", *args],
        input=stdin.encode() if isinstance(stdin, str) else stdin,
        capture_output=True,
        env=dict(env),
        cwd=cwd,
        timeout=300,
        check=False,
    )
    return Proc(proc.returncode, proc.stdout.decode(), proc.stderr.decode())


# Python leaves SIGINT ignored when it starts with it ignored, as everything a shell without
# job control starts in the background does (`make test-stress &` in a script); a program that
# is to take a Ctrl-C is started by this one, which puts SIGINT back to its default first.
_WITH_CTRL_C = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
)


def start_interruptible(args: Sequence[str], env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    """Start `python -m bridge ARGS` in a session of its own, as a terminal would, so that
    `os.kill(proc.pid, SIGINT)` is a Ctrl-C however the test suite itself was started."""
    return subprocess.Popen(
        [sys.executable, "-c", _WITH_CTRL_C, "-m", "bridge", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(env),
        start_new_session=True,
    )


def external(env: Mapping[str, str], query: Mapping[str, str] | str) -> Proc:
    """`ami-bridge external` with `query` on stdin, as Terraform's data source runs it."""
    text = query if isinstance(query, str) else json.dumps(query)
    return run_bridge(["external"], env, stdin=text)


def external_many(
    env_for: Callable[[int], Mapping[str, str]], query: Mapping[str, str], count: int
) -> list[Proc]:
    """`count` concurrent `ami-bridge external` processes; process i runs with `env_for(i)`."""
    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(lambda i: external(env_for(i), query), range(count)))


def bridge_command() -> list[str]:
    """The installed `ami-bridge` entry point, as a Terraform `bridge_command` argv."""
    return [str(Path(sys.executable).parent / "ami-bridge")]
