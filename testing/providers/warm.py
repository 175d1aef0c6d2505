"""A warm server for the stand-in providers and the bridge: imports once, forks per start.

`python warm.py SOCKET SCRIPT...` imports each SCRIPT's modules (not its main), and what the
script's `warm_up()` imports when it has one (ami_bridge.py: the commands' modules), listens at
SOCKET, prints "ready" and forks a child for each launch.py that connects, until
its standard input ends. The child takes the launcher's standard streams, environment,
working directory, umask and argv, and runs SCRIPT as `__main__`, as a fresh `python SCRIPT`
would; its exit status goes back to the launcher. A child whose launcher goes away (Terraform
killed it) exits too.

What differs from a cold start: the provider's process is a child of this server, not of
Terraform (Terraform sees and signals the launcher), and its modules were imported before its
environment was set; the stand-ins read the environment only when Terraform calls them, and
the bridge's modules read none when imported. Python's own settings from the environment
(PYTHON*, the locale) and GitPython's (GIT_PYTHON_*, read at its import) are the server's:
testing.bridge starts a bridge cold when they differ.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import sys
import threading
import traceback
from pathlib import Path
from types import CodeType, ModuleType
from typing import Any


def main() -> None:
    sock_path, *scripts = sys.argv[1:]
    compiled = {}
    for script in scripts:
        compiled[script] = compile(Path(script).read_bytes(), script, "exec")
        _run(script, compiled[script], "warm")  # the imports; not the script's main
        warm_up = sys.modules["warm"].__dict__.get("warm_up")
        if warm_up is not None:
            warm_up()
    # Imported by the provider only when it runs: cryptography by the `tf` package's TLS set-up
    # on every start (the aws stand-in's `warm_up` imports botocore and parses its data).
    from cryptography import x509  # noqa: F401
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: F401
    from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: F401

    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(sock_path)
    server.listen(64)
    signal.signal(signal.SIGCHLD, _reap)
    print("ready", flush=True)
    while True:
        # Standard input is a pipe from whoever started the server: at its end (closed, or its
        # holder gone however it went) the server ends too, and never outlives the test session.
        readable, _, _ = select.select([server, sys.stdin], [], [])
        if sys.stdin in readable:
            return
        conn, _ = server.accept()
        pid = os.fork()
        if pid == 0:
            server.close()
            _child(conn, compiled)
        conn.close()


def _reap(signum: int, frame: Any) -> None:
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass


def _run(script: str, code: CodeType, name: str) -> None:
    module = ModuleType(name)
    module.__file__ = script
    sys.modules[name] = module
    exec(code, module.__dict__)


def _child(conn: socket.socket, compiled: dict[str, CodeType]) -> None:
    code = 1
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the provider waits for its programs
        signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a fresh interpreter
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        header, fds, _, _ = socket.recv_fds(conn, 8, 3)
        length = int.from_bytes(header, "big")
        data = b""
        while len(data) < length:
            chunk = conn.recv(length - len(data))
            if not chunk:
                os._exit(1)
            data += chunk
        request = json.loads(data)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.umask(request["umask"])
        os.environ.clear()
        os.environ.update(request["env"])
        threading.Thread(target=_exit_with_launcher, args=(conn,), daemon=True).start()
        sys.argv = [request["script"], *request["argv"]]
        try:
            _run(request["script"], compiled[request["script"]], "__main__")
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            if isinstance(exc.code, str):
                print(exc.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
    finally:
        # What differs from a cold start at the end: a flush that fails here (the reader went)
        # or a child killed by a signal reaches the launcher as exit 1, where Python would exit
        # 120 or die of the signal. No test depends on either; those that do start cold.
        try:
            sys.stdout.flush()
            sys.stderr.flush()
            conn.sendall(str(code).encode())
        finally:
            os._exit(code)


def _exit_with_launcher(conn: socket.socket) -> None:
    # The launcher sends nothing after its request: a read returns only when it has gone.
    conn.recv(1)
    os._exit(1)


if __name__ == "__main__":
    main()
