"""`ami-bridge status`: every definition's image, its regions and channels, in one table."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Mapping

from bridge.cli.commands.resolve import report
from bridge.cli.workspace import context, options, resolver, survey_each
from bridge.context import Context
from bridge.errors import EXIT_ERROR, EXIT_OK
from bridge.pipeline.result import ResolvedAmi

log = logging.getLogger(__name__)


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    ctx = context(options(args, env), env)
    the = resolver(ctx, env, echo=None if args.quiet else sys.stderr)
    # One broken definition does not hide the others: its row shows its error.
    results, errors = survey_each(the, [d.name for d in ctx.catalog.all()])
    notes = _channel_notes(ctx, results)
    for name, note in _incomplete(ctx, list(results)).items():
        notes[name] = f"{note}; {notes[name]}" if name in notes else note
    report(args, results, channels=notes, errors=errors)
    return EXIT_ERROR if errors else EXIT_OK


def _incomplete(ctx: Context, names: list[str]) -> dict[str, str]:
    """Definition -> its revoke or restore cut short, and the command that finishes it."""
    from bridge.errors import AwsError
    from bridge.lifecycle import intents

    try:
        return intents.notes(ctx, names)
    except AwsError as exc:
        log.warning("incomplete revocations are not shown: %s", exc)
        return {}


def _channel_notes(ctx: Context, results: Mapping[str, ResolvedAmi]) -> dict[str, str]:
    """Definition -> its channels, those holding a revoked (or vanished) image marked: a channel
    is rolled back only when someone asks (`ami-bridge rollback`)."""
    from bridge.aws import parameters
    from bridge.errors import AwsError

    try:
        found = parameters.held(ctx.clients, ctx.catalog.channel_prefix, ctx.settings.region)
    except AwsError as exc:
        log.warning("channels are not shown: %s", exc)
        return {}
    return {
        name: "channels: "
        + " ".join(f"{c}:REVOKED" if bad else c for c, (_, bad) in found[name].items())
        for name in results
        if name in found
    }
