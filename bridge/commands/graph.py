"""`ami-bridge graph`: the chain as Graphviz DOT or Mermaid, with --status its images' marks."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping

from bridge.errors import EXIT_OK
from bridge.graph import render
from bridge.workspace import context, open_catalog, options, resolver


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    if args.status:
        ctx = context(options(args, env), env)
        catalog = ctx.catalog
        the = resolver(ctx, env, echo=None if args.quiet else sys.stderr)
        looked = the.status([d.name for d in catalog.all()])
        revoked = {n: r.revoke_reason for n, r in looked.items() if r.revoked}
        expired = [n for n, r in looked.items() if r.state == "expired"]
    else:
        _, catalog = open_catalog(options(args, env), env)
        revoked, expired = {}, []
    print(render(catalog, args.format, revoked, expired))
    return EXIT_OK
