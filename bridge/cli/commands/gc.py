"""`ami-bridge gc`: delete the bridge's old images that nothing uses (a dry run unless --apply)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from datetime import datetime, timezone

from bridge.cli import render
from bridge.cli.workspace import context, options, resolver
from bridge.errors import EXIT_OK
from bridge.lifecycle import gc
from bridge.lifecycle.retention import policy


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    # gc looks in every region of the catalog, whichever region the environment names.
    ctx = context(options(args, env), env, anywhere=True)
    retention = policy(
        keep=args.keep,
        older_than=args.older_than,
        min_age_hours=args.min_age_hours,
        keep_channel_versions=args.keep_channel_versions,
        launched_within=args.launched_within,
        retire_days=args.retire_days,
        archive_after=args.archive_after,
        archive_after_days=ctx.catalog.archive_after_days,
        definitions=args.definition or (),
    )
    the = resolver(ctx, env, echo=None if args.quiet else sys.stderr)
    now = datetime.now(timezone.utc)
    report = gc.run(
        ctx,
        retention,
        current=lambda: the.status([d.name for d in ctx.catalog.all()]),
        guard=the.guard,
        delete=args.apply,
        unrecoverable=args.unrecoverable,
    )
    if args.json:
        json.dump(report.to_dict(now), sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
        return EXIT_OK
    render.gc_table(report.rows(now), sys.stdout)
    for region, snapshots in sorted(report.leftovers.items()):
        print(f"leftover snapshots in {region} (deleted by --apply): {' '.join(snapshots)}")
    return EXIT_OK
