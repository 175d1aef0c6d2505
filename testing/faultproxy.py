"""A fault-injecting HTTP proxy on loopback, in front of the sandbox.

At a configurable rate it answers a request itself instead of forwarding it: EC2 throttling
(RequestLimitExceeded, 503), S3 SlowDown (503), 500 InternalError, 503 ServiceUnavailable, or a
dropped connection; such a request has no effect. With `lost_responses`, half of the faults
happen after forwarding instead: AWS applied the request, and its response is replaced by a 500
or the connection is dropped, as when a response is lost on the way back. A retry then meets its
own effect (an object it created, a tag it set). These faults are transient: none falls on a
call's last attempt (botocore's `amz-sdk-request: attempt=N; max=M` header says which it is), so
every call outlasts them within its retry budget, however the requests of concurrent processes
interleave (at 30%, eight faults in a row would otherwise end one call in about 15,000, and a
test of many processes makes thousands). `block` picks requests that always fail (503,
before forwarding), e.g. one process's lease renewals. `hold` is called with each request
before it is forwarded, on the request's own thread: a test makes requests wait there (for
each other, to see that they are in flight at once, or for a while, as a slow network would).
`rewrite` is given each forwarded request and its response body, and returns the body to send
back: a test makes the sandbox answer as AWS may (e.g. images created in the same second).
"""

from __future__ import annotations

import http.client
import random
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

EC2_ERROR = (
    '<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>{code}</Code>'
    "<Message>injected fault</Message></Error></Errors><RequestID>fault</RequestID></Response>"
)
S3_ERROR = (
    '<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
    "<Message>injected fault</Message><RequestId>fault</RequestId></Error>"
)
FAULTS = [
    ("throttle", 503, "RequestLimitExceeded", "SlowDown"),
    ("internal", 500, "InternalError", "InternalError"),
    ("unavailable", 503, "Unavailable", "ServiceUnavailable"),
    ("drop", 0, "", ""),
]
# What `block` may answer with instead of a 503: a refusal no retry changes (an IAM policy
# without the action), as EC2 and S3 send it.
DENIED = ("denied", 403, "UnauthorizedOperation", "AccessDenied")


Rewrite = Callable[[str, str, Mapping[str, str], bytes, bytes], bytes]
_CREATION_DATE = re.compile(rb"<creationDate>[^<]*</creationDate>")


def creation_dates(stamp: Callable[[], str], counted: list[int] | None = None) -> Rewrite:
    """A `rewrite` giving each image in a DescribeImages answer the CreationDate `stamp()`
    returns (called once per image), as EC2 answers, in whole seconds; `counted` gets how many
    images each answer had."""

    def rewrite(method: str, path: str, headers: Mapping[str, str], body: bytes, data: bytes):
        if b"Action=DescribeImages" not in body:
            return data
        text, count = _CREATION_DATE.subn(
            lambda _: f"<creationDate>{stamp()}</creationDate>".encode(), data
        )
        if counted is not None:
            counted.append(count)
        return text

    return rewrite


def _last_attempt(header: str) -> bool:
    """Whether botocore's `amz-sdk-request` header (`ttl=...; attempt=N; max=M`) marks the
    call's last attempt."""
    fields = dict(part.strip().partition("=")[::2] for part in header.split(";") if "=" in part)
    return "attempt" in fields and fields["attempt"] == fields.get("max")


@dataclass
class Counters:
    forwarded: int = 0
    injected: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str) -> None:
        with self.lock:
            if kind == "forwarded":
                self.forwarded += 1
            else:
                self.injected[kind] = self.injected.get(kind, 0) + 1


class FaultProxy:
    def __init__(
        self,
        upstream: str,
        rate: float,
        seed: int = 7,
        *,
        lost_responses: bool = False,
        block: Callable[[str, str, Mapping[str, str], bytes], bool] | None = None,
        blocked: tuple[str, int, str, str] = FAULTS[2],
        hold: Callable[[str, str, Mapping[str, str], bytes], None] | None = None,
        rewrite: Rewrite | None = None,
    ) -> None:
        """`block(method, path, headers, body)` true: the request fails with a 503 every time
        (or with `blocked`, e.g. DENIED);
        `hold(method, path, headers, body)` runs before a request is forwarded;
        `rewrite(method, path, headers, body, response)` is the response body sent back."""
        self.upstream = urlsplit(upstream)
        self.block = block
        self.blocked = blocked
        self.hold = hold
        self.rewrite = rewrite
        self.rate = rate
        self.lost_responses = lost_responses
        self.random = random.Random(seed)
        self.counters = Counters()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with proxy.counters.lock:
                    roll = proxy.random.random()
                    fault = proxy.random.choice(FAULTS)
                    after = proxy.lost_responses and proxy.random.random() < 0.5
                if proxy.block is not None and proxy.block(
                    self.command, self.path, dict(self.headers.items()), body
                ):
                    proxy.counters.add("blocked")
                    self._fault(proxy.blocked, body)
                    return
                if _last_attempt(self.headers.get("amz-sdk-request", "")):
                    roll = 1.0  # transient faults: the retry budget outlasts them
                if roll < proxy.rate and not after:
                    proxy.counters.add(fault[0])
                    self._fault(fault, body)
                    return
                if proxy.hold is not None:
                    proxy.hold(self.command, self.path, dict(self.headers.items()), body)
                proxy.counters.add("forwarded")
                conn = http.client.HTTPConnection(
                    proxy.upstream.hostname, proxy.upstream.port, timeout=60
                )
                headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                conn.request(self.command, self.path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
                conn.close()
                if proxy.rewrite is not None:
                    data = proxy.rewrite(
                        self.command, self.path, dict(self.headers.items()), body, data
                    )
                if roll < proxy.rate:  # applied upstream; the response is lost
                    lost = fault if fault[0] in ("drop", "internal") else FAULTS[1]
                    proxy.counters.add(f"lost-{lost[0]}")
                    self._fault(lost, body)
                    return
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def _fault(self, fault: tuple[str, int, str, str], body: bytes) -> None:
                if fault[0] == "drop":
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                is_s3 = b"Action=" not in body  # EC2 speaks form-encoded Query API
                text = (S3_ERROR if is_s3 else EC2_ERROR).format(
                    code=fault[3] if is_s3 else fault[2]
                )
                payload = text.encode()
                self.send_response(fault[1])
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def __enter__(self) -> FaultProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
