"""`ami-bridge build`: build the missing images of definitions, parents first (--dry-run: what
each needs)."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Mapping

from bridge.cli.commands.resolve import report
from bridge.cli.workspace import context, names, options, resolver
from bridge.errors import EXIT_OK, QueryError
from bridge.settings import run_policy

_LOCAL_EXEC = re.compile(r"ami-bridge build ([a-z][a-z0-9_-]{0,62})")


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    opts = options(args, env)
    if args.local_exec is not None:
        args.definitions = [*args.definitions, _local_exec_definition(args.local_exec)]
    ctx = context(opts, env)
    the = resolver(ctx, env, echo=None if args.quiet else sys.stderr, verbose=args.verbose)
    wanted = names(args, ctx.catalog)
    if args.dry_run:
        report(args, the.status(wanted, expect_fingerprint=opts.expect_fingerprint))
        return EXIT_OK
    policy = run_policy(
        "build",
        opts,
        env,
        ctx.catalog,
        jobs_flag=args.jobs,
        force=wanted if args.force else (),
        fail_fast=args.fail_fast,
    )
    results = the.resolve(wanted, policy)
    # The named definitions, and the ancestors this run built for them.
    return report(args, {n: r for n, r in results.items() if n in wanted or r.built})


def _local_exec_definition(text: str) -> str:
    """The definition in the command text Terraform's local-exec passes (and shows on failure):
    exactly `ami-bridge build DEF`, read here, never run by a shell."""
    match = _LOCAL_EXEC.fullmatch(text)
    if match is None:
        raise QueryError(
            f"--local-exec takes the text `ami-bridge build DEF` (the ami_chain module's "
            f"local-exec command), not {text[:80]!r}. Name definitions as arguments instead."
        )
    return match.group(1)
