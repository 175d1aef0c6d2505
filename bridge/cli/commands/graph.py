"""`ami-bridge graph`: the chain as Graphviz DOT or Mermaid text, or drawn as SVG or PNG, with
--status its images' marks."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Mapping
from pathlib import Path

from bridge.cli.graph import DRAWN, draw, render
from bridge.cli.workspace import context, open_catalog, options, resolver, survey_each
from bridge.errors import EXIT_ERROR, EXIT_OK, QueryError

log = logging.getLogger(__name__)


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    if args.status:
        ctx = context(options(args, env), env)
        catalog = ctx.catalog
        the = resolver(ctx, env, echo=None if args.quiet else sys.stderr)
        # A broken definition is drawn as an error, not a reason to draw nothing.
        looked, errors = survey_each(the, [d.name for d in catalog.all()])
        for name, error in errors.items():
            log.error("%s: %s", name, error)
        revoked = {n: r.revoke_reason for n, r in looked.items() if r.revoked}
        expired = [n for n, r in looked.items() if r.state == "expired"]
        states: dict[str, str] | None = {n: r.state for n, r in looked.items()} | {
            n: "error" for n in errors
        }
    else:
        _, catalog = open_catalog(options(args, env), env)
        revoked, expired, states, errors = {}, [], None, {}
    # With --status each node says its state (and, drawn, is coloured by it, as in the report).
    if args.format not in DRAWN:
        text = render(catalog, args.format, revoked, expired, states=states)
        if args.output:
            Path(args.output).write_text(text + "\n")
        else:
            print(text)
        return EXIT_ERROR if errors else EXIT_OK
    picture = draw(render(catalog, "dot", revoked, expired, states=states), args.format)
    if args.output:
        Path(args.output).write_bytes(picture)
    elif args.format == "png" and sys.stdout.isatty():
        raise QueryError("A PNG is no text for a terminal: pass --output FILE (e.g. chain.png).")
    else:
        sys.stdout.buffer.write(picture)
        sys.stdout.flush()
    return EXIT_ERROR if errors else EXIT_OK
