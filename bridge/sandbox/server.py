"""The sandbox server: moto in server mode, with the sandbox's patches, in a process of its own
(`start`, `running`), or in the foreground (`serve`, which `ami-bridge sandbox` runs)."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Any, TextIO

from bridge.errors import BridgeError
from bridge.sandbox import ec2, recycle_bin
from bridge.sandbox.accounts import ACCESS_KEY, ACCOUNT, SECRET_KEY, access_key


def environment(endpoint: str, region: str = "us-east-1", account: str = ACCOUNT) -> dict[str, str]:
    """Environment variables that point AWS SDKs, the bridge and Packer at the sandbox at
    `endpoint`, as `account` (ACCOUNT, or OTHER_ACCOUNT for a second one)."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY if account == ACCOUNT else access_key(account),
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def _serialized_writes(app: Any) -> Any:
    lock = threading.Lock()

    def wrapped(environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
            return app(environ, start_response)
        with lock:
            return list(app(environ, start_response))

    return wrapped


def serve(host: str, port: int, *, announce: TextIO) -> None:
    """Serve the sandbox until SIGTERM/SIGINT; prints `endpoint <url>` once it listens."""
    images = resources.files("bridge").joinpath("sandbox_images.json")
    with resources.as_file(images) as path:
        os.environ.setdefault("MOTO_AMIS_PATH", str(path))
        try:
            from moto.moto_server.werkzeug_app import (
                DomainDispatcherApplication,
                MotoRequestHandler,
                create_backend_app,
            )
            from werkzeug.serving import make_server
        except ImportError:
            raise BridgeError(
                "The sandbox needs moto's server mode, which is not installed. Install it with "
                "`pip install 'ami-chain-bridge[sandbox]'` (or run `make setup`)."
            ) from None
        ec2.patch()
        recycle_bin.patch()
        app = _serialized_writes(
            recycle_bin.middleware(DomainDispatcherApplication(create_backend_app))
        )
        try:
            server = make_server(host, port, app, threaded=True, request_handler=MotoRequestHandler)
        except OSError as exc:
            raise BridgeError(
                f"The sandbox cannot listen on {host}:{port}: {exc.strerror}. Pick another port "
                "(--port 0 picks a free one)."
            ) from None

        def stop(signum: int, frame: Any) -> None:
            threading.Thread(target=server.shutdown, daemon=True).start()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        endpoint = f"http://{host}:{server.server_port}"
        print(f"endpoint {endpoint}", file=announce, flush=True)
        # For a person at a terminal: the line that points a shell at it (stdout stays the one
        # line `start` reads).
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in environment(endpoint).items())
        print(
            f"ami-bridge: the sandbox listens on {endpoint} (Ctrl-C stops it; what it holds "
            f"goes with it). Point a shell at it, as its account {ACCOUNT}, with:\n"
            f"  export {exports}",
            file=sys.stderr,
            flush=True,
        )
        server.serve_forever()


@dataclass
class Sandbox:
    """A running sandbox server process."""

    endpoint: str
    process: subprocess.Popen[str]

    def env(self, region: str = "us-east-1", account: str = ACCOUNT) -> dict[str, str]:
        """Environment variables that point AWS SDKs, the bridge and Packer at the sandbox, as
        `account` (ACCOUNT, or OTHER_ACCOUNT for a second one)."""
        return environment(self.endpoint, region, account)

    def reset(self) -> None:
        """Forget every resource (moto's reset API)."""
        # The endpoint is always the http:// loopback URL this module started.
        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")  # noqa: S310
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            response.read()

    def stop(self) -> None:
        """Stop the server process."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start(host: str = "127.0.0.1", port: int = 0, *, log: TextIO | None = None) -> Sandbox:
    """Start a sandbox server process on a free loopback port and wait until it answers."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bridge", "sandbox", "--host", host, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=log if log is not None else subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if not line.startswith("endpoint "):
        process.kill()
        process.wait()
        raise BridgeError(
            f"The sandbox did not start (it said {line!r}). Run `ami-bridge sandbox` to see why; "
            "`make setup` installs what it needs."
        )
    return Sandbox(endpoint=line.split(" ", 1)[1], process=process)


@contextmanager
def running(**kwargs: Any) -> Iterator[Sandbox]:
    """A sandbox for the duration of a with-block."""
    box = start(**kwargs)
    try:
        yield box
    finally:
        box.stop()
