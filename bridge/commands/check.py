"""`ami-bridge check`: the catalog is valid and every definition can be fingerprinted, from git
alone (a Packer repository's pre-commit hook)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping

from bridge import render
from bridge.errors import EXIT_OK
from bridge.fingerprint import fingerprint_all
from bridge.sources import SourcePick
from bridge.workspace import open_catalog, options


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Uncommitted content counts, as it is what is checked in; a tracked source filter is
    checked, not resolved."""
    repo, catalog = open_catalog(options(args, env), env)
    snapshot = fingerprint_all(
        repo,
        catalog.all(),
        allow_dirty=True,
        catalog_path=catalog.path,
        environment=env,
        pick_sources=lambda d, filters: [SourcePick(f, "-", "", "") for f in filters],
    )
    rows = [("DEFINITION", "TEMPLATE", "INPUTS", "UPSTREAM")]
    for d in catalog.all():
        fp = snapshot.fingerprints[d.name]
        upstream = ", ".join(s.filter.origin for s in fp.sources) or (
            f"parent {d.parent}" if d.parent else "fixed"
        )
        rows.append((d.name, d.template, str(len(fp.inputs)), upstream))
    render.table(rows, sys.stdout)
    return EXIT_OK
