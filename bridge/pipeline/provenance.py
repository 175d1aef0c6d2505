"""Signed provenance: which commit, upstream image, parent, CI run and Packer made an AMI, in a
form anyone with the public key can check.

Every build of a catalog with `provenance.key` (a KMS asymmetric key, ECC_NIST_P256) writes an
in-toto Statement (v1) with the SLSA provenance (v1) predicate:

- subject: the AMI in each region (`arn:aws:ec2:<region>:<account>:image/<ami>`), its digest the
  fingerprint (`amiChainFingerprint`, the content the image was built from);
- buildDefinition: the catalog, definition, commit and fingerprint (externalParameters) and the
  resolved dependencies: the commit, the upstream source AMIs, the parent AMI with its
  fingerprint and the URI of its own provenance;
- runDetails: the builder (the CI run URL, or the bridge), the Packer and bridge versions, the
  build ID, start and finish, and the tests the image passed (byproducts).

It is signed as a DSSE envelope (KMS Sign, ECDSA_SHA_256 over DSSE's pre-authentication
encoding) and stored in S3 twice: as the build's own (`<definition>/<fingerprint>/<build
ID>.intoto.json`), which the image's tag points at (TAG_PROVENANCE) and which no later build
replaces, and beside the manifest (`<definition>/<fingerprint>.intoto.json`), which, like the
manifest, describes the newest build of the fingerprint (what a workload account, reading no
tags, finds). `verify` checks the signature (with KMS, or
a public key file), that the statement's subject is the image, its fingerprint, and the parent's
provenance in turn, up to the root.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from bridge.aws import manifests
from bridge.aws.clients import aws_call
from bridge.errors import QueryError
from bridge.record import BuildRecord

if TYPE_CHECKING:
    from bridge.aws.clients import AwsClients

log = logging.getLogger(__name__)

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "urn:ami-chain-bridge:packer-build:v1"
ALGORITHM: Final = "ECDSA_SHA_256"
DIGEST = "amiChainFingerprint"


class VerifyError(QueryError):
    """An image whose provenance does not hold: the reason names what failed."""


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: what is signed."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def image_arn(region: str, account: str, ami: str) -> str:
    return f"arn:aws:ec2:{region}:{account}:image/{ami}"


def statement_key(prefix: str | None, definition: str, fingerprint: str) -> str:
    """The S3 key of a build's statement, beside its manifest."""
    return manifests.manifest_key(prefix, definition, fingerprint).removesuffix(".json") + (
        ".intoto.json"
    )


def statement_uri(bucket: str, prefix: str | None, definition: str, fingerprint: str) -> str:
    return f"s3://{bucket}/{statement_key(prefix, definition, fingerprint)}"


def build_uri(
    bucket: str, prefix: str | None, definition: str, fingerprint: str, build_id: str
) -> str:
    return f"s3://{bucket}/{build_statement_key(prefix, definition, fingerprint, build_id)}"


def build_statement_key(
    prefix: str | None, definition: str, fingerprint: str, build_id: str
) -> str:
    """The S3 key of one build's own statement: another build of the fingerprint (a forced
    rebuild, a rebuild after expiry) never replaces it."""
    return statement_key(prefix, definition, fingerprint).removesuffix(".intoto.json") + (
        f"/{build_id}.intoto.json"
    )


@dataclass(frozen=True)
class Run:
    """What a statement says of the build beyond its record: where and by what it ran."""

    account: str  # the account the images belong to
    repository: str  # where the commit is (the catalog's ID, else the repository's path)
    bridge_version: str
    finished: str


def statement(b: BuildRecord, run: Run) -> dict[str, Any]:
    """The in-toto Statement with the SLSA v1 provenance predicate for one build."""
    dependencies: list[dict[str, Any]] = [
        {"uri": f"git+{run.repository}@{b.commit}", "digest": {"gitCommit": b.commit}}
    ]
    dependencies += [
        {"name": "source-ami", "uri": f"ec2:{b.region}:{ami}"} for ami in b.source_amis
    ]
    if b.parent is not None:
        dependencies.append(
            {
                "name": "parent",
                "uri": f"ec2:{b.region}:{b.parent.ami}",
                "digest": {DIGEST: b.parent.fingerprint},
                "annotations": {
                    "definition": b.parent.definition,
                    "provenance": b.parent.provenance,
                },
            }
        )
    return {
        "_type": STATEMENT_TYPE,
        "subject": [
            {"name": image_arn(region, run.account, ami), "digest": {DIGEST: b.fingerprint}}
            for region, ami in sorted(b.amis.items())
        ],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "catalog": b.catalog,
                    "definition": b.definition,
                    "commit": b.commit,
                    "fingerprint": b.fingerprint,
                },
                "resolvedDependencies": dependencies,
            },
            "runDetails": {
                "builder": {
                    "id": b.build_url or "ami-bridge",
                    "version": {"packer": b.packer_version, "ami-chain-bridge": run.bridge_version},
                },
                "metadata": {
                    "invocationId": b.build_id,
                    "startedOn": b.started,
                    "finishedOn": run.finished,
                },
                "byproducts": [
                    *({"name": f"test:{t['name']}", "annotations": dict(t)} for t in b.tests),
                    *(
                        []
                        if b.observed is None
                        else [{"name": "observed-reads", "annotations": b.observed.to_dict()}]
                    ),
                ],
            },
        },
    }


def sign(clients: AwsClients, key: str, region: str, stmt: Mapping[str, Any]) -> dict[str, Any]:
    """`stmt` as a DSSE envelope signed with the KMS key `key`."""
    payload = json.dumps(stmt, sort_keys=True, separators=(",", ":")).encode()
    kms = clients.kms(key_region(key, region))
    with aws_call(f"signing the provenance with {key}", "kms:Sign"):
        signed = kms.sign(
            KeyId=key,
            Message=pae(PAYLOAD_TYPE, payload),
            MessageType="RAW",
            SigningAlgorithm=ALGORITHM,
        )
    return {
        "payloadType": PAYLOAD_TYPE,
        "payload": base64.b64encode(payload).decode(),
        "signatures": [
            {"keyid": signed["KeyId"], "sig": base64.b64encode(signed["Signature"]).decode()}
        ],
    }


def check_key(clients: AwsClients, key: str, region: str) -> None:
    """Refuse, before anything is built, a provenance key that cannot sign: one that does not
    exist (a typo), is disabled, or is not an ECC_NIST_P256 signing key. An image built with it
    would be published unsigned."""
    from botocore.exceptions import ClientError

    kms = clients.kms(key_region(key, region))
    with aws_call(f"looking up the provenance key {key}", "kms:DescribeKey"):
        try:
            meta = kms.describe_key(KeyId=key)["KeyMetadata"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "NotFoundException":
                raise
            raise QueryError(
                f"The catalog's provenance key {key} does not exist in "
                f"{key_region(key, region)} (or this account cannot see it), so no build could "
                "be signed; nothing was built. Fix `provenance.key` (an alias, key ID or ARN of "
                "an ECC_NIST_P256 SIGN_VERIFY key), or remove `provenance`."
            ) from None
    problems = [
        what
        for what, bad in (
            (f"its state is {meta.get('KeyState')}", meta.get("KeyState") != "Enabled"),
            (f"its usage is {meta.get('KeyUsage')}", meta.get("KeyUsage") != "SIGN_VERIFY"),
            (f"its spec is {meta.get('KeySpec')}", meta.get("KeySpec") != "ECC_NIST_P256"),
        )
        if bad
    ]
    if problems:
        raise QueryError(
            f"The catalog's provenance key {key} cannot sign provenance: {', '.join(problems)} "
            "(an enabled ECC_NIST_P256 key with usage SIGN_VERIFY is needed); nothing was built. "
            "Point `provenance.key` at such a key, or remove `provenance`."
        )


def key_region(key: str, default: str) -> str:
    """A key ARN's region; an ID or alias is in `default`."""
    parts = key.split(":")
    return parts[3] if key.startswith("arn:") and len(parts) > 3 and parts[3] else default


def store(
    clients: AwsClients, bucket: str, key: str, region: str, envelope: Mapping[str, Any]
) -> str:
    """Write the envelope to S3: its s3:// URI."""
    with aws_call(f"writing the provenance to s3://{bucket}/{key}", "s3:PutObject"):
        clients.s3(region).put_object(
            Bucket=bucket,
            Key=key,
            Body=json.dumps(envelope, indent=2).encode(),
            ContentType="application/json",
        )
    return f"s3://{bucket}/{key}"


# -- verifying ------------------------------------------------------------------------------------


def record(
    clients: AwsClients,
    *,
    key: str,
    bucket: str,
    prefix: str | None,
    build: BuildRecord,
    run: Run,
) -> str:
    """Sign `build`'s statement and store it as the build's own and beside its manifest: the
    build's own s3:// URI (what its images' tag names)."""
    envelope = sign(clients, key, build.region, statement(build, run))
    own = store(
        clients,
        bucket,
        build_statement_key(prefix, build.definition, build.fingerprint, build.build_id),
        build.region,
        envelope,
    )
    store(
        clients,
        bucket,
        statement_key(prefix, build.definition, build.fingerprint),
        build.region,
        envelope,
    )
    return own
