"""`ami-bridge external`: Terraform's external data source, one query on stdin, one result on
stdout (a catalog resolve, or what a channel holds)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping

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
    from bridge.aws.clients import AwsClients
    from bridge.lifecycle import channels

    assert query.channel is not None
    definition = query.definitions[0]
    region = channel_region(query.options.region, env)
    clients = AwsClients(model_cache=cache_dir(env) / "models")
    held = channels.current(clients, query.channel_prefix, definition, query.channel, region)
    channels.check_not_revoked(clients, region, definition, query.channel, held)
    return protocol.channel_result(
        definition,
        query.channel,
        channels.parameter_name(query.channel_prefix, definition, query.channel),
        region,
        held,
    )
