"""The real `ami-bridge` program, run as Terraform or a person would.

While a test session runs a warm server for it (`warm_starts`), each start is forked from that
server, which has imported the bridge once (testing/providers/warm.py, ami_bridge.py): the same
code, argv, environment, working directory and standard streams, without paying for the imports
each time (about 0.2 CPU-s a start). A start whose Python settings from the environment (PYTHON*,
the locale, GIT_PYTHON_*) differ from the server's starts cold, as does everything when no
server runs. Forked starts share the server's hash seed and the order its modules were
imported in; the starts that stay cold (tests/test_warm_bridge.py, the Ctrl-C tests, the
installed wheel, the CI recipes) and `AMI_BRIDGE_COLD_STARTS=1` take the real path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from testing.providers import mirror

PROGRAM = Path(__file__).resolve().parent / "providers" / "ami_bridge.py"

# The socket of this process's warm server, and the Python settings it started with.
_warm: tuple[Path, dict[str, str]] | None = None


@dataclass
class Proc:
    """A finished `ami-bridge` process."""

    code: int
    stdout: str
    stderr: str


def run_bridge(
    args: Sequence[str], env: Mapping[str, str], stdin: str | bytes = "", cwd: Path | None = None
) -> Proc:
    """Run `python -m bridge ARGS` with `env`, feeding `stdin` (forked warm when it can be:
    `program`)."""
    proc = subprocess.run(
        [*program(env), *args],
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
    """The bridge as a Terraform `bridge_command` argv: forked from the warm server while one
    runs, or else the installed `ami-bridge` entry point. Terraform runs it with the test's
    environment (this process's, plus Terraform's own variables), so the choice is made on
    this process's."""
    if _warm is not None:
        return program(os.environ)
    return [str(Path(sys.executable).parent / "ami-bridge")]


def _python_settings(env: Mapping[str, str]) -> dict[str, str]:
    """The variables read when Python starts or a library is imported (GitPython reads its
    own then), which a forked start takes from the server instead of from `env`."""
    return {
        key: value
        for key, value in env.items()
        if key.startswith(("PYTHON", "LC_", "GIT_PYTHON_")) or key in ("LANG", "LANGUAGE")
    }


def program(env: Mapping[str, str]) -> list[str]:
    """The argv that starts the bridge with `env`: warm when it can be, else `python -m bridge`."""
    if _warm is not None and _python_settings(env) == _warm[1]:
        return mirror.launcher(_warm[0], PROGRAM)
    return [sys.executable, "-m", "bridge"]


@contextmanager
def warm_starts(directory: Path) -> Iterator[subprocess.Popen[str]]:
    """Fork each start of the bridge in this process from a warm server while this runs."""
    global _warm
    before = _warm
    sock = directory / "bridge.sock"
    with mirror.warm_server(sock, [PROGRAM]) as server:
        _warm = (sock, _python_settings(os.environ))
        try:
            yield server
        finally:
            _warm = before
