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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from bridge.aws import manifests
from bridge.aws.clients import aws_call
from bridge.errors import AwsError, QueryError

if TYPE_CHECKING:
    from bridge.aws.clients import AwsClients
    from bridge.context import Context
    from bridge.pipeline.result import ResolvedAmi

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
class Build:
    """What a statement says about one build."""

    catalog: str
    definition: str
    fingerprint: str
    commit: str
    repository: str
    amis: Mapping[str, str]
    region: str  # where it was built
    account: str
    source_amis: Sequence[str]
    parent: Mapping[str, str] | None  # definition, fingerprint, region, ami, provenance
    builder: str
    packer_version: str
    bridge_version: str
    build_id: str
    started: str
    finished: str
    tests: Sequence[Mapping[str, Any]]


def statement(b: Build) -> dict[str, Any]:
    """The in-toto Statement with the SLSA v1 provenance predicate for one build."""
    dependencies: list[dict[str, Any]] = [
        {"uri": f"git+{b.repository}@{b.commit}", "digest": {"gitCommit": b.commit}}
    ]
    dependencies += [
        {"name": "source-ami", "uri": f"ec2:{b.region}:{ami}"} for ami in b.source_amis
    ]
    if b.parent is not None:
        dependencies.append(
            {
                "name": "parent",
                "uri": f"ec2:{b.parent['region']}:{b.parent['ami']}",
                "digest": {DIGEST: b.parent["fingerprint"]},
                "annotations": {
                    "definition": b.parent["definition"],
                    "provenance": b.parent["provenance"],
                },
            }
        )
    return {
        "_type": STATEMENT_TYPE,
        "subject": [
            {"name": image_arn(region, b.account, ami), "digest": {DIGEST: b.fingerprint}}
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
                    "id": b.builder,
                    "version": {"packer": b.packer_version, "ami-chain-bridge": b.bridge_version},
                },
                "metadata": {
                    "invocationId": b.build_id,
                    "startedOn": b.started,
                    "finishedOn": b.finished,
                },
                "byproducts": [
                    {"name": f"test:{t['name']}", "annotations": dict(t)} for t in b.tests
                ],
            },
        },
    }


def sign(clients: AwsClients, key: str, region: str, stmt: Mapping[str, Any]) -> dict[str, Any]:
    """`stmt` as a DSSE envelope signed with the KMS key `key`."""
    payload = json.dumps(stmt, sort_keys=True, separators=(",", ":")).encode()
    kms = clients.kms(_key_region(key, region))
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

    kms = clients.kms(_key_region(key, region))
    with aws_call(f"looking up the provenance key {key}", "kms:DescribeKey"):
        try:
            meta = kms.describe_key(KeyId=key)["KeyMetadata"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "NotFoundException":
                raise
            raise QueryError(
                f"The catalog's provenance key {key} does not exist in "
                f"{_key_region(key, region)} (or this account cannot see it), so no build could "
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


def _key_region(key: str, default: str) -> str:
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


@dataclass(frozen=True)
class Trust:
    """What a signature is checked against: the KMS key (with KMS), or its public key (PEM or DER
    bytes), for an account without access to the key."""

    key: str = ""
    region: str = ""
    public_key: bytes = b""


def open_envelope(clients: AwsClients, trust: Trust, envelope: Mapping[str, Any]) -> dict[str, Any]:
    """The statement an envelope carries, once its signature checks; VerifyError otherwise."""
    try:
        payload = base64.b64decode(envelope["payload"], validate=True)
        signatures = [base64.b64decode(s["sig"], validate=True) for s in envelope["signatures"]]
        kind = envelope["payloadType"]
    except (KeyError, TypeError, ValueError):
        raise VerifyError("it is not a DSSE envelope (payload, payloadType, signatures)") from None
    if kind != PAYLOAD_TYPE:
        raise VerifyError(f"its payload type is {kind!r}, not an in-toto statement")
    message = pae(kind, payload)
    if not any(_valid(clients, trust, message, sig) for sig in signatures):
        raise VerifyError(
            "its signature does not match the statement under the key "
            f"{trust.key or 'in the public key file'} (altered, or signed by another key)"
        )
    stmt: dict[str, Any] = json.loads(payload)
    return stmt


def _valid(clients: AwsClients, trust: Trust, message: bytes, signature: bytes) -> bool:
    if trust.public_key:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.serialization import (
            load_der_public_key,
            load_pem_public_key,
        )

        data = trust.public_key
        public = load_pem_public_key(data) if b"BEGIN" in data else load_der_public_key(data)
        if not isinstance(public, ec.EllipticCurvePublicKey):
            raise QueryError("The public key file does not hold an ECC public key (ECC_NIST_P256).")
        try:
            public.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return False
        return True
    from botocore.exceptions import ClientError

    kms = clients.kms(_key_region(trust.key, trust.region))
    with aws_call(f"verifying a signature with {trust.key}", "kms:Verify"):
        try:
            answer = kms.verify(
                KeyId=trust.key,
                Message=message,
                MessageType="RAW",
                Signature=signature,
                SigningAlgorithm=ALGORITHM,
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "KMSInvalidSignatureException":
                return False
            raise
    return bool(answer.get("SignatureValid"))


def check(stmt: Mapping[str, Any], *, region: str, ami: str, fingerprint: str) -> None:
    """The statement is about this AMI (in `region`) and its fingerprint: VerifyError otherwise."""
    if stmt.get("_type") != STATEMENT_TYPE or stmt.get("predicateType") != PREDICATE_TYPE:
        raise VerifyError("it is not an in-toto statement with the SLSA v1 provenance predicate")
    names = {str(s.get("name", "")) for s in stmt.get("subject", [])}
    if not any(n.startswith(f"arn:aws:ec2:{region}:") and n.endswith(f"/{ami}") for n in names):
        raise VerifyError(
            f"its subject is {', '.join(sorted(names)) or 'nothing'}, not {ami} in {region}"
        )
    stated = stmt["predicate"]["buildDefinition"]["externalParameters"].get("fingerprint")
    if stated != fingerprint:
        raise VerifyError(f"it states fingerprint {stated}, and the image carries {fingerprint}")


def parent_of(stmt: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The parent dependency a statement records, or None for a root."""
    for dep in stmt["predicate"]["buildDefinition"].get("resolvedDependencies", []):
        if dep.get("name") == "parent":
            found: Mapping[str, Any] = dep
            return found
    return None


def record(
    clients: AwsClients,
    *,
    key: str,
    bucket: str,
    prefix: str | None,
    build: Build,
) -> str:
    """Sign `build`'s statement and store it as the build's own and beside its manifest: the
    build's own s3:// URI (what its images' tag names)."""
    envelope = sign(clients, key, build.region, statement(build))
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


@dataclass(frozen=True)
class Verified:
    """One image whose provenance checked: what its statement says."""

    definition: str
    region: str
    ami: str
    fingerprint: str
    commit: str
    builder: str


def verify(
    clients: AwsClients,
    trust: Trust,
    *,
    uri: str,
    definition: str,
    region: str,
    ami: str,
    fingerprint: str,
) -> list[Verified]:
    """Check the provenance at `uri` of `ami` (in `region`, with `fingerprint`), and its
    parent's in turn up to the root: the chain, child first. VerifyError names the image whose
    provenance failed and why."""
    chain: list[Verified] = []
    while True:
        what = f"{definition} ({ami} in {region})"
        try:
            stmt = open_envelope(clients, trust, _fetch(clients, uri, region))
            check(stmt, region=region, ami=ami, fingerprint=fingerprint)
        except VerifyError as exc:
            below = f", the ancestor of {chain[0].definition} {chain[0].ami}," if chain else ""
            raise VerifyError(
                f"The provenance of {what}{below} does not verify: {exc}. An image nobody can "
                "vouch for should not be used: rebuild it (`ami-bridge build --force`) with the "
                "catalog's provenance key, or check the key you verify with."
            ) from None
        run = stmt["predicate"]["runDetails"]
        chain.append(
            Verified(
                definition,
                region,
                ami,
                fingerprint,
                stmt["predicate"]["buildDefinition"]["externalParameters"].get("commit", ""),
                run.get("builder", {}).get("id", ""),
            )
        )
        parent = parent_of(stmt)
        if parent is None:
            return chain
        _, region, ami = str(parent["uri"]).split(":", 2)
        uri = str(parent.get("annotations", {}).get("provenance", ""))
        definition = str(parent.get("annotations", {}).get("definition", "parent"))
        fingerprint = str(parent.get("digest", {}).get(DIGEST, ""))


def _fetch(clients: AwsClients, uri: str, region: str) -> dict[str, Any]:
    from botocore.exceptions import ClientError

    if not uri.startswith("s3://") or "/" not in uri[5:]:
        raise VerifyError(f"it names no provenance (got {uri!r})")
    bucket, key = uri[5:].split("/", 1)
    try:
        with aws_call(f"reading the provenance {uri}", "s3:GetObject"):
            try:
                body = clients.s3(region).get_object(Bucket=bucket, Key=key)["Body"].read()
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in {"NoSuchKey", "404"}:
                    raise VerifyError(f"its provenance {uri} does not exist") from None
                raise
    except AwsError as exc:
        raise VerifyError(f"its provenance {uri} cannot be read ({exc})") from None
    try:
        data: dict[str, Any] = json.loads(body)
    except ValueError:
        raise VerifyError(f"its provenance {uri} is not JSON") from None
    return data


def trust(ctx: Context, *, key: str | None = None, public_key: bytes = b"") -> Trust:
    """What to verify with: a public key's bytes, else `key`, else the catalog's key."""
    if public_key:
        return Trust(public_key=public_key)
    chosen = key or ctx.catalog.provenance_key
    if not chosen:
        raise QueryError(
            "Nothing to verify provenance with: the catalog names no provenance key "
            "(`provenance.key`). Set it, pass the key (`provenance_key` in a query), or pass "
            "--public-key FILE (the key's public half, from `aws kms get-public-key`)."
        )
    return Trust(key=chosen, region=ctx.settings.region)


def verify_image(
    ctx: Context,
    using: Trust,
    *,
    definition: str,
    ami: str,
    fingerprint: str,
    uri: str | None = None,
) -> list[Verified]:
    """`verify` for one image of this catalog in the settings' region; its provenance found
    beside its manifest unless `uri` (its tag) says where."""
    settings = ctx.settings
    if uri is None:
        if not settings.manifest_bucket:
            raise QueryError(
                "The provenance is stored beside the manifests, and no manifest bucket is set: "
                "set it in the catalog or pass --manifest-bucket."
            )
        uri = statement_uri(
            settings.manifest_bucket, settings.manifest_prefix, definition, fingerprint
        )
    return verify(
        ctx.clients,
        using,
        uri=uri,
        definition=definition,
        region=settings.region,
        ami=ami,
        fingerprint=fingerprint,
    )


def require(ctx: Context, results: Sequence[ResolvedAmi], *, key: str | None) -> None:
    """Every image in `results` verifies (an answer without an image has nothing to check): each
    by its build's own statement when its tags name it, else the one beside its manifest."""
    using = trust(ctx, key=key)
    for r in results:
        if r.ami_id:
            verify_image(
                ctx,
                using,
                definition=r.definition,
                ami=r.ami_id,
                fingerprint=r.fingerprint,
                uri=r.provenance or None,
            )
