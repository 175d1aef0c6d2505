"""`ami-bridge unarchive`: bring an archived build's snapshots back, so it resolves again."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping

from bridge.cli import render
from bridge.cli.workspace import context, options
from bridge.errors import EXIT_OK
from bridge.lifecycle import archive
from bridge.pipeline.survey import Surveyor, everywhere


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    # An archived build may be in any region of the catalog, whichever the environment names.
    ctx = context(options(args, env), env, anywhere=True)
    d = ctx.catalog.get(args.definition)
    fingerprint = args.fingerprint or (
        "" if args.ami else Surveyor(ctx).fingerprints([d.name])[d.name]
    )
    builds = archive.archived_builds(
        ctx, d, everywhere(ctx.catalog, ctx.settings), fingerprint=fingerprint, ami=args.ami
    )
    rows: list[tuple[str, ...]] = [("DEFINITION", "BUILD", "AMIS", "STATE")]
    for build in builds:
        done = archive.unarchive(ctx.clients, build)
        said = "restored" if done == "restored" else "restoring: run again to finish (hours)"
        rows.append(render.change_row(build, said))
    render.table(rows, sys.stdout)
    return EXIT_OK
