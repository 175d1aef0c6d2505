"""Build manifests in S3: s3://<bucket>/<prefix>/<definition>/<fingerprint>.json."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bridge.aws.clients import aws_call
from bridge.errors import ManifestError
from bridge.model import Revocation
from bridge.record import BuildRecord, Observed, Parent
from bridge.validation import first_error

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

SCHEMA = "manifest.schema.json"


@dataclass(frozen=True)
class Manifest:
    """A build's record as S3 keeps it (manifest.schema.json), with its revocation."""

    definition: str
    fingerprint: str
    amis: Mapping[str, str]  # region -> AMI ID
    parent: Parent | None
    # The commit it was built from (`git_commit` in the manifest's JSON).
    commit: str
    packer_version: str
    build_time: str
    build_url: str
    revoked: Revocation | None = None
    # The catalog whose build it is (ownership.py); "" in manifests older than catalog IDs.
    catalog: str = ""
    # The tests the image passed before it was published (gates.Outcome.to_dict), in order.
    tests: tuple[Mapping[str, Any], ...] = ()
    # What the build was seen to read (record.Observed); None in manifests from before.
    observed: Observed | None = None

    @classmethod
    def of(cls, record: BuildRecord, *, build_time: str) -> Manifest:
        """The manifest of a build, published at `build_time`."""
        parent = record.parent
        return cls(
            definition=record.definition,
            fingerprint=record.fingerprint,
            amis=dict(sorted(record.amis.items())),
            # A manifest names the parent image; the rest is the build's to know.
            parent=None
            if parent is None
            else Parent(parent.definition, parent.fingerprint, parent.ami),
            commit=record.commit,
            packer_version=record.packer_version,
            build_time=build_time,
            build_url=record.build_url,
            catalog=record.catalog,
            tests=record.tests,
            observed=record.observed,
        )

    def to_dict(self) -> dict[str, Any]:
        """The manifest as JSON-ready data, in the shape of manifest.schema.json."""
        data: dict[str, Any] = {
            "schema_version": 1,
            "definition": self.definition,
            "fingerprint": self.fingerprint,
            "amis": dict(self.amis),
            "parent": None
            if self.parent is None
            else {
                "definition": self.parent.definition,
                "fingerprint": self.parent.fingerprint,
                "ami": self.parent.ami,
            },
            "git_commit": self.commit,
            "packer_version": self.packer_version,
            "build_time": self.build_time,
            "build_url": self.build_url,
        }
        if self.catalog:
            data["catalog"] = self.catalog
        if self.tests:
            data["tests"] = [dict(t) for t in self.tests]
        if self.observed is not None:
            data["observed"] = self.observed.to_dict()
        if self.revoked is not None:
            data["revoked"] = {
                "at": self.revoked.at,
                "reason": self.revoked.reason,
                "by": self.revoked.by,
            }
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Manifest:
        """A manifest from data that passed validate()."""
        parent = data["parent"]
        revoked = data.get("revoked")
        return cls(
            definition=data["definition"],
            fingerprint=data["fingerprint"],
            amis=dict(sorted(data["amis"].items())),
            parent=None if parent is None else Parent(**parent),
            commit=data["git_commit"],
            packer_version=data["packer_version"],
            build_time=data["build_time"],
            build_url=data["build_url"],
            revoked=None if revoked is None else Revocation(**revoked),
            catalog=data.get("catalog", ""),
            tests=tuple(data.get("tests", ())),
            observed=Observed.from_dict(data["observed"]) if "observed" in data else None,
        )


def manifest_key(prefix: str | None, definition: str, fingerprint: str) -> str:
    """The S3 key of a manifest."""
    head = (prefix or "").strip("/")
    return f"{head}/{definition}/{fingerprint}.json" if head else f"{definition}/{fingerprint}.json"


def manifest_uri(bucket: str, prefix: str | None, definition: str, fingerprint: str) -> str:
    """The s3:// URI of a manifest."""
    return f"s3://{bucket}/{manifest_key(prefix, definition, fingerprint)}"


def validate(data: Any, where: str) -> None:
    """Check data against manifest.schema.json; ManifestError names the first problem."""
    first = first_error(SCHEMA, data, b"")
    if first is not None:
        raise ManifestError(
            f"The manifest {where} does not match the manifest schema at {first.json_path}: "
            f"{first.message}. It was not written by this tool or was altered; delete it and "
            "rebuild the image with `ami-bridge build --force`."
        )


def publish(s3: S3Client, bucket: str, prefix: str | None, manifest: Manifest) -> str:
    """Validate and write a manifest; returns its s3:// URI."""
    data = manifest.to_dict()
    uri = manifest_uri(bucket, prefix, manifest.definition, manifest.fingerprint)
    validate(data, uri)
    body = (json.dumps(data, indent=2, sort_keys=True) + "\n").encode("utf-8")
    with aws_call(f"writing the manifest {uri}", "s3:PutObject"):
        s3.put_object(
            Bucket=bucket,
            Key=manifest_key(prefix, manifest.definition, manifest.fingerprint),
            Body=body,
            ContentType="application/json",
        )
    return uri


def check_owner(
    s3: S3Client, bucket: str, prefix: str | None, definition: str, fingerprint: str, catalog: str
) -> None:
    """A ManifestError when the manifest a build of `catalog` would write is another catalog's:
    two catalogs sharing a manifest prefix would overwrite each other's record."""
    try:
        found = fetch(s3, bucket, prefix, definition, fingerprint) if catalog else None
    except ManifestError:
        return  # no catalog's record: a build replaces it
    if found is not None and found.catalog and found.catalog != catalog:
        raise ManifestError(
            f"The manifest {manifest_uri(bucket, prefix, definition, fingerprint)} is the "
            f"record of another catalog ({found.catalog}), which has a definition {definition!r} "
            f"with the same content; this catalog ({catalog}) would overwrite it, and that "
            "catalog's workload accounts would be handed this catalog's images. Give each "
            "catalog its own manifest prefix (`manifest.prefix` in the catalog); nothing was "
            "built."
        )


def exists(
    s3: S3Client, bucket: str, prefix: str | None, definition: str, fingerprint: str
) -> bool:
    """Whether the manifest object is there (one HeadObject)."""
    from botocore.exceptions import ClientError

    uri = manifest_uri(bucket, prefix, definition, fingerprint)
    with aws_call(f"looking for the manifest {uri}", "s3:GetObject"):
        try:
            s3.head_object(Bucket=bucket, Key=manifest_key(prefix, definition, fingerprint))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"NoSuchKey", "404", "NotFound"}:
                return False
            raise
    return True


def fetch(
    s3: S3Client, bucket: str, prefix: str | None, definition: str, fingerprint: str
) -> Manifest | None:
    """Read and validate a manifest; None when there is none."""
    uri = manifest_uri(bucket, prefix, definition, fingerprint)
    from botocore.exceptions import ClientError

    with aws_call(f"reading the manifest {uri}", "s3:GetObject"):
        try:
            body = s3.get_object(Bucket=bucket, Key=manifest_key(prefix, definition, fingerprint))[
                "Body"
            ].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"NoSuchKey", "404"}:
                return None
            raise
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ManifestError(
            f"The manifest {uri} is not valid JSON. Delete it and rebuild the image with "
            "`ami-bridge build --force`."
        ) from None
    validate(data, uri)
    manifest = Manifest.from_dict(data)
    if manifest.definition != definition or manifest.fingerprint != fingerprint:
        raise ManifestError(
            f"The manifest {uri} describes {manifest.definition}@{manifest.fingerprint}, not "
            f"{definition}@{fingerprint}. Delete it and rebuild with `ami-bridge build --force`."
        )
    return manifest
