"""`ami-bridge resolve`: the AMIs of definitions (building them only with --on-missing build)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping

from bridge.cli import render
from bridge.cli.workspace import context, names, options, resolver
from bridge.errors import EXIT_MISSING, EXIT_OK
from bridge.pipeline.result import ResolvedAmi
from bridge.settings import run_policy


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    opts = options(args, env)
    ctx = context(opts, env)
    wanted = names(args, ctx.catalog)
    results = resolver(
        ctx, env, echo=None if args.quiet else sys.stderr, verbose=args.verbose
    ).resolve(
        wanted,
        run_policy(
            "resolve", opts, env, ctx.catalog, jobs_flag=args.jobs, fail_fast=args.fail_fast
        ),
    )
    return report(args, {n: r for n, r in results.items() if n in wanted})


def report(
    args: argparse.Namespace,
    results: Mapping[str, ResolvedAmi],
    *,
    channels: Mapping[str, str] | None = None,
    errors: Mapping[str, str] | None = None,
) -> int:
    """Print `results` as --json says; exit status 3 unless every one has an image."""
    render.report(results, sys.stdout, as_json=args.json, channels=channels, errors=errors)
    return EXIT_OK if all(r.found for r in results.values()) else EXIT_MISSING
