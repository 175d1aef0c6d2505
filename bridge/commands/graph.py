"""`ami-bridge graph`: the chain as Graphviz DOT or Mermaid text, or drawn as SVG or PNG, with
--status its images' marks."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path

from bridge.errors import EXIT_OK, QueryError
from bridge.graph import DRAWN, draw, render
from bridge.workspace import context, open_catalog, options, resolver


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    if args.status:
        ctx = context(options(args, env), env)
        catalog = ctx.catalog
        the = resolver(ctx, env, echo=None if args.quiet else sys.stderr)
        looked = the.status([d.name for d in catalog.all()])
        revoked = {n: r.revoke_reason for n, r in looked.items() if r.revoked}
        expired = [n for n, r in looked.items() if r.state == "expired"]
        states: dict[str, str] | None = {n: r.state for n, r in looked.items()}
    else:
        _, catalog = open_catalog(options(args, env), env)
        revoked, expired, states = {}, [], None
    if args.format not in DRAWN:
        if args.output:
            Path(args.output).write_text(render(catalog, args.format, revoked, expired) + "\n")
        else:
            print(render(catalog, args.format, revoked, expired))
        return EXIT_OK
    # Drawn, each node says its state and is coloured by it, as in the report.
    picture = draw(render(catalog, "dot", revoked, expired, states=states), args.format)
    if args.output:
        Path(args.output).write_bytes(picture)
    elif args.format == "png" and sys.stdout.isatty():
        raise QueryError("A PNG is no text for a terminal: pass --output FILE (e.g. chain.png).")
    else:
        sys.stdout.buffer.write(picture)
        sys.stdout.flush()
    return EXIT_OK
