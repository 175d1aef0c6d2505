"""`ami-bridge report --html DIR`: the catalog at a glance, as one self-contained HTML file."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path

from bridge import report
from bridge.errors import EXIT_OK
from bridge.workspace import context, options, resolver


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    ctx = context(options(args, env), env)
    the = resolver(ctx, env, echo=None if args.quiet else sys.stderr)
    # The survey `status` reads: one pass, no call per definition.
    results = the.status([d.name for d in ctx.catalog.all()])
    path = report.write(Path(args.html), ctx.catalog, results, region=ctx.settings.region)
    print(path)
    return EXIT_OK
