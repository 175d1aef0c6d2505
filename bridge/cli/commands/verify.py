"""`ami-bridge verify`: check an image's signed provenance, and its ancestors' (verification.py)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path

from bridge import model, trustroot
from bridge.aws import registry
from bridge.cli.workspace import context, options, resolver
from bridge.context import Context
from bridge.errors import EXIT_OK, QueryError
from bridge.pipeline import verification


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    ctx = context(options(args, env), env)
    settings = ctx.settings
    trust = _trust(ctx, args.public_key, args.key)
    region = settings.region
    if args.target.startswith("ami-"):
        image = registry.image_by_id(ctx.clients.ec2(region), region, args.target)
        if image is None or not image.tag(model.TAG_DEFINITION):
            raise QueryError(
                f"{args.target} is not an image of this catalog's in {region} whose tags this "
                "account can read. Name its definition instead (`ami-bridge verify DEF`), "
                "which finds the provenance through the manifest bucket, or set --region."
            )
        definition = str(image.tag(model.TAG_DEFINITION))
        ami, fingerprint = image.ami_id, image.tag(settings.tag_key) or ""
        uri = image.tag(model.TAG_PROVENANCE)
    else:
        d = ctx.catalog.get(args.target)
        the = resolver(ctx, env, echo=None if args.quiet else sys.stderr)
        result = the.status([d.name])[d.name]
        if not result.ami_id:
            raise QueryError(
                f"{d.name!r} has no usable image in {region} at commit {result.commit[:12]} (it "
                f"is {result.state}), so there is nothing to verify."
            )
        definition, ami, fingerprint = d.name, result.ami_id, result.fingerprint
        # Its build's own statement when its tags name it (an owner), else beside its manifest.
        uri = result.provenance or None
    chain = verification.verify_image(
        ctx, trust, definition=definition, ami=ami, fingerprint=fingerprint, uri=uri
    )
    change = None
    if not (args.public_key or args.key) and ctx.catalog.provenance_key:
        # Trusting the catalog: say when it last changed whom to trust.
        change = trustroot.last_change(
            ctx.repo, ctx.catalog.path, settings.commit or ctx.repo.head.commit.hexsha
        )
    if args.json:
        json.dump(
            {
                "trusted": _named(ctx, trust, args),
                "trust_change": change.describe() if change else None,
                "chain": [v.__dict__ for v in chain],
            },
            sys.stdout,
            indent=2,
        )
        sys.stdout.write("\n")
        return EXIT_OK
    print(f"trusting {_named(ctx, trust, args)}")
    if change is not None:
        print(
            f"trust change: {change.describe()}; pin the key you trust with --key or "
            "--public-key to refuse images signed after a change you did not make"
        )
    for v in chain:
        print(
            f"verified {v.definition} {v.ami} in {v.region}: fingerprint {v.fingerprint[:12]}, "
            f"commit {v.commit[:12]}, built by {v.builder}"
        )
    return EXIT_OK


def _named(ctx: Context, trust: verification.Trust, args: argparse.Namespace) -> str:
    """The trust root a verification used, and where it came from."""
    if trust.public_key:
        return f"the public key in {args.public_key}"
    if args.key:
        pinned = f"the KMS key {trust.key} (--key)"
        catalog = ctx.catalog.provenance_key
        if catalog and catalog != trust.key:
            pinned += f"; the catalog names {catalog}, a different key"
        return pinned
    return f"the KMS key {trust.key} (the catalog's provenance.key at this commit)"


def _trust(ctx: Context, public_key: str | None, key: str | None) -> verification.Trust:
    if not public_key:
        return verification.trust(ctx, key=key)
    # A file on this machine, as the user names it (from the working directory): not an input
    # of the repository's.
    path = Path(public_key).expanduser()
    try:
        return verification.trust(ctx, public_key=path.read_bytes())
    except OSError as exc:
        raise QueryError(f"Cannot read the public key {public_key}: {exc.strerror}.") from None
