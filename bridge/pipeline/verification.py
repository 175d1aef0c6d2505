"""Verifying signed provenance (provenance.py writes it): a DSSE envelope's signature, with
KMS or a public key file; that the statement's subject is the image and its fingerprint; and the
parent's provenance in turn, up to the root. `require` answers only with images that verify.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bridge.aws.clients import aws_call
from bridge.errors import AwsError, QueryError

if TYPE_CHECKING:
    from bridge.aws.clients import AwsClients
    from bridge.context import Context
    from bridge.pipeline.result import ResolvedAmi

from bridge.pipeline.provenance import (
    ALGORITHM,
    DIGEST,
    PAYLOAD_TYPE,
    PREDICATE_TYPE,
    STATEMENT_TYPE,
    VerifyError,
    key_region,
    pae,
    statement_uri,
)


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
        try:
            public = load_pem_public_key(data) if b"BEGIN" in data else load_der_public_key(data)
        except (ValueError, TypeError):
            raise QueryError(
                "The public key file is not a public key (PEM or DER). Write it with `aws kms "
                "get-public-key --key-id KEY --query PublicKey --output text | base64 -d`."
            ) from None
        if not isinstance(public, ec.EllipticCurvePublicKey):
            raise QueryError("The public key file does not hold an ECC public key (ECC_NIST_P256).")
        try:
            public.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return False
        return True
    kms = clients.kms(key_region(trust.key, trust.region))
    try:
        answer = _kms_verify(kms, trust, message, signature)
    except AwsError as exc:
        # A workload account is often not allowed to use the builder's key: it has another way.
        raise AwsError(
            f"{exc} An account that cannot use the key verifies with its public half instead: "
            "`ami-bridge verify --public-key FILE`, FILE from `aws kms get-public-key --key-id "
            "KEY --query PublicKey --output text | base64 -d` run where the key can be read."
        ) from None
    return answer


def _kms_verify(kms: Any, trust: Trust, message: bytes, signature: bytes) -> bool:
    """KMS's verdict on one signature (False for one that does not match)."""
    from botocore.exceptions import ClientError

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
