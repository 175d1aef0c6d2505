"""Lifecycle writes that resume: a revoke or restore records what it is about to do first, and
marks it done last.

The record is `<manifest prefix>/intents/<definition>.json` in the manifest bucket (beside the
manifests, where workload accounts and every machine look), written before the first change to
EC2 or a manifest and deleted after the last. While it is there the operation is incomplete:
`status` says so with the command that finishes it, and running that command again (with any
reason) completes what was recorded instead of starting something else. Without a manifest
bucket nothing is recorded, and a run cut short is completed by running the same command again
with the same reason, as before.
"""

from __future__ import annotations

import json
import logging
import shlex
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Literal

from bridge.aws import manifests
from bridge.aws.clients import aws_call
from bridge.errors import QueryError

if TYPE_CHECKING:
    from bridge.context import Context

log = logging.getLogger(__name__)

Operation = Literal["revoke", "restore"]


@dataclass(frozen=True)
class Intent:
    """An operation on one definition's builds, started and not yet done."""

    operation: Operation
    definition: str
    started: str
    # A revocation's, as it is recorded on every image (revoke only).
    reason: str = ""
    at: str = ""

    def command(self) -> str:
        """The command that finishes it."""
        argv = ["ami-bridge", self.operation, self.definition]
        if self.operation == "revoke":
            argv += ["--reason", self.reason]
        return shlex.join(argv)

    def describe(self) -> str:
        what = f"{self.operation} of {self.definition} started {self.started}"
        return f"{what} ({self.reason})" if self.reason else what


def key(prefix: str | None, definition: str) -> str:
    """`<prefix>/intents/<definition>.json`: laid out as a manifest's key is."""
    return manifests.manifest_key(prefix, "intents", definition)


def pending(ctx: Context, definition: str) -> Intent | None:
    """The incomplete operation on `definition`, if one is recorded."""
    from botocore.exceptions import ClientError

    bucket = ctx.settings.manifest_bucket
    if not bucket:
        return None
    where = key(ctx.settings.manifest_prefix, definition)
    s3 = ctx.clients.s3(ctx.settings.region)
    with aws_call(f"reading s3://{bucket}/{where}", "s3:GetObject"):
        try:
            raw = s3.get_object(Bucket=bucket, Key=where)["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"NoSuchKey", "404"}:
                return None
            raise
    try:
        data = json.loads(raw)
        return Intent(**data)
    except (ValueError, TypeError, KeyError):
        log.warning("s3://%s/%s is not an intent record; ignored", bucket, where)
        return None


def begin(ctx: Context, intent: Intent) -> None:
    """Record `intent` before its first write."""
    bucket = ctx.settings.manifest_bucket
    if not bucket:
        return
    where = key(ctx.settings.manifest_prefix, intent.definition)
    body = json.dumps(asdict(intent), sort_keys=True)
    with aws_call(f"recording the {intent.operation} in s3://{bucket}/{where}", "s3:PutObject"):
        ctx.clients.s3(ctx.settings.region).put_object(
            Bucket=bucket, Key=where, Body=body.encode(), ContentType="application/json"
        )


def done(ctx: Context, definition: str) -> None:
    """Mark the operation on `definition` done, after its last write."""
    bucket = ctx.settings.manifest_bucket
    if not bucket:
        return
    where = key(ctx.settings.manifest_prefix, definition)
    with aws_call(f"marking s3://{bucket}/{where} done", "s3:DeleteObject"):
        ctx.clients.s3(ctx.settings.region).delete_object(Bucket=bucket, Key=where)


def refuse_other(found: Intent | None, operation: Operation) -> None:
    """Another operation on the definition is incomplete: finish it first."""
    if found is not None and found.operation != operation:
        raise QueryError(
            f"The {found.describe()} is incomplete (cut short), so the {operation} was not "
            f"started. Finish it first: `{found.command()}`, then run this again."
        )


def notes(ctx: Context, definitions: Sequence[str]) -> dict[str, str]:
    """Definition -> what `status` says of its incomplete operation."""
    found = {}
    for name in definitions:
        intent = pending(ctx, name)
        if intent is not None:
            found[name] = f"INCOMPLETE {intent.describe()}: finish it with `{intent.command()}`"
    return found
