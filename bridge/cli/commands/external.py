"""`ami-bridge external`: Terraform's external data source, one query on stdin, one result on
stdout (a catalog resolve, or what a channel holds)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING

from bridge import model
from bridge.cli import protocol
from bridge.cli.protocol import Query
from bridge.cli.workspace import context, resolver
from bridge.errors import EXIT_OK, QueryError
from bridge.settings import (
    cache_dir,
    channel_region,
    module_variable,
    query_key,
    run_policy,
)

if TYPE_CHECKING:
    from bridge.aws.clients import AwsClients
    from bridge.aws.parameters import Version


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    raw = sys.stdin.buffer.read(protocol.MAX_QUERY_BYTES + 1)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise QueryError(
            f"The query on stdin is not UTF-8 text (byte {exc.start}). Pass a JSON object of "
            'strings, e.g. {"definition": "base"}.'
        ) from None
    spell = module_variable if args.module else query_key
    query = protocol.parse_query(text, cache_dir=cache_dir(env), spell=spell)
    if query.channel is not None:
        sys.stdout.write(protocol.encode_result(_through_channel(query, env)))
        return EXIT_OK
    ctx = context(query.options, env, spell)
    resolved = resolver(ctx, env, echo=None).resolve(
        list(query.definitions), run_policy("external", query.options, env, ctx.catalog)
    )
    if query.options.require_provenance:
        from bridge.pipeline import verification

        verification.require(
            ctx, [resolved[name] for name in query.definitions], key=query.options.provenance_key
        )
    if query.many:
        values = protocol.results({name: resolved[name] for name in query.definitions})
    else:
        values = protocol.result(resolved[query.definitions[0]])
    sys.stdout.write(protocol.encode_result(values))
    return EXIT_OK


def _through_channel(query: Query, env: Mapping[str, str]) -> dict[str, str]:
    """The result of a channel query: what the channel holds in the region (no repository)."""
    from bridge.aws import parameters
    from bridge.aws.clients import AwsClients
    from bridge.lifecycle import channels

    assert query.channel is not None
    definition = query.definitions[0]
    region = channel_region(query.options.region, env)
    clients = AwsClients(model_cache=cache_dir(env) / "models")
    held = parameters.current(clients, query.channel_prefix, definition, query.channel, region)
    channels.check_not_revoked(clients, region, definition, query.channel, held)
    if query.options.require_provenance:
        _verify_held(clients, query, definition, region, held)
    return protocol.channel_result(
        definition,
        query.channel,
        parameters.parameter_name(query.channel_prefix, definition, query.channel),
        region,
        held,
    )


def _verify_held(
    clients: AwsClients, query: Query, definition: str, region: str, held: Version
) -> None:
    """`require_provenance` on a channel query: the image the channel holds verifies against
    the query's `provenance_key` (there is no catalog to name one), by its build's statement
    (its tag, where this account sees it) or the one beside its manifest."""
    from bridge.aws import registry
    from bridge.pipeline import provenance, verification

    options = query.options
    if not options.provenance_key:
        raise QueryError(
            "require_provenance on a channel query needs `provenance_key` (the KMS key the "
            "builder signs with; a channel query reads no catalog to name it). Pass it, or drop "
            "require_provenance."
        )
    image = registry.image_by_id(clients.ec2(region), region, held.ami_id)
    uri = (image.tag(model.TAG_PROVENANCE) if image else None) or ""
    if not uri:
        if not options.manifest_bucket or not held.fingerprint:
            raise QueryError(
                f"require_provenance: the channel {query.channel!r} of {definition!r} holds "
                f"{held.ami_id}, whose provenance this account cannot find: its tags are the "
                "builder's, and no `manifest_bucket` is given to read the statement beside its "
                "manifest. Pass the builder's manifest_bucket (and manifest_prefix)."
            )
        uri = provenance.statement_uri(
            options.manifest_bucket, options.manifest_prefix, definition, held.fingerprint
        )
    verification.verify(
        clients,
        verification.Trust(key=options.provenance_key, region=region),
        uri=uri,
        definition=definition,
        region=region,
        ami=held.ami_id,
        fingerprint=held.fingerprint,
    )
