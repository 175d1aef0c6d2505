"""`ami-bridge report --html DIR`: the catalog at a glance, as one self-contained HTML file."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Mapping
from pathlib import Path

from bridge.aws import parameters
from bridge.cli import report
from bridge.cli.workspace import context, options, resolver, survey_each
from bridge.errors import EXIT_ERROR, EXIT_OK, AwsError, QueryError

log = logging.getLogger(__name__)


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    ctx = context(options(args, env), env)
    the = resolver(ctx, env, echo=None if args.quiet else sys.stderr)
    # The survey `status` reads: one pass, no call per definition (and, as in `status`, a
    # broken definition shown with its error instead of hiding the others).
    results, errors = survey_each(the, [d.name for d in ctx.catalog.all()])
    region = ctx.settings.region
    try:  # the channels `status` shows: one listing, and each held image looked at once
        held = parameters.held(ctx.clients, ctx.catalog.channel_prefix, region)
        # Their history: one GetParameterHistory per channel (none per definition without one).
        history = {
            d: {
                c: parameters.history(ctx.clients, ctx.catalog.channel_prefix, d, c, region)
                for c in chans
            }
            for d, chans in held.items()
        }
    except (AwsError, QueryError) as exc:
        log.warning("channels are not shown: %s", exc)
        held, history = {}, {}
    path = report.write(
        Path(args.html),
        ctx.catalog,
        results,
        region=region,
        channels=held,
        history=history,
        errors=errors,
    )
    print(path)
    for name, error in errors.items():
        log.error("%s: %s", name, error)
    return EXIT_ERROR if errors else EXIT_OK
