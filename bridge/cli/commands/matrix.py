"""`ami-bridge matrix`: the builds a run needs, as CI matrix waves (matrix.py)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping

from bridge.cli.workspace import context, names, options, resolver
from bridge.errors import EXIT_OK, QueryError
from bridge.pipeline import matrix


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    if args.wave is not None and args.wave < 0:
        raise QueryError(f"--wave is {args.wave}; it takes a wave number, 0 or more.")
    opts = options(args, env)
    ctx = context(opts, env)
    the = resolver(ctx, env, echo=None if args.quiet else sys.stderr)
    wanted = names(args, ctx.catalog)
    batches = matrix.waves(ctx.catalog, the.status(wanted))
    # One line: what a CI step writes to its outputs (GITHUB_OUTPUT takes name=value lines).
    json.dump(matrix.encoded(batches, args.format, args.wave), sys.stdout, separators=(",", ":"))
    sys.stdout.write("\n")
    return EXIT_OK
