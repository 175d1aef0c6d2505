"""`ami-bridge check`: the catalog is valid and every definition can be fingerprinted, from git
alone (a Packer repository's pre-commit hook)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Iterator, Mapping

from bridge import trustroot
from bridge.cli import render
from bridge.cli.workspace import open_catalog, options
from bridge.errors import EXIT_OK
from bridge.fingerprint import InputEntry, fingerprint_all
from bridge.git import GITLINK_MODE, TREE_MODE, TreeIndex
from bridge.pipeline import gates
from bridge.pipeline.checkout import check_filters
from bridge.sources import SourcePick


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
    # What a build would refuse when it exports its tree: inputs behind a checkout filter.
    files = TreeIndex(repo, snapshot.tree)
    check_filters(
        repo,
        sorted({f for fp in snapshot.fingerprints.values() for f in _files(files, fp.inputs)}),
    )
    # What a build would refuse before Packer: a test whose program is not there.
    for d in catalog.all():
        gates.check_programs(d, lambda path: files.lookup(path) is not None)
    rows = [("DEFINITION", "TEMPLATE", "INPUTS", "UPSTREAM")]
    for d in catalog.all():
        fp = snapshot.fingerprints[d.name]
        upstream = ", ".join(s.filter.origin for s in fp.sources) or (
            f"parent {d.parent}" if d.parent else "fixed"
        )
        rows.append((d.name, d.template, str(len(fp.inputs)), upstream))
    render.table(rows, sys.stdout)
    change = trustroot.pending_change(repo, catalog.path, catalog.provenance_key)
    if change is not None:
        print(
            f"ami-bridge: trust change: {change.describe()}. Images built from here on are "
            f"signed with {change.after or 'no key'}; whoever verifies with the old key (`verify "
            "--key`, `--public-key`, a pinned provenance_key in Terraform) will refuse them "
            "until they trust the new one. Make sure this change is meant.",
            file=sys.stderr,
        )
    return EXIT_OK


def _files(tree: TreeIndex, inputs: Iterable[InputEntry]) -> Iterator[str]:
    """The files of `inputs` (a tree input's, at any depth; submodules are their own)."""
    pending: list[tuple[str, str]] = [(e.path, e.kind) for e in inputs]
    while pending:
        path, kind = pending.pop()
        if kind == "blob":
            yield path
        elif kind == "tree":
            prefix = "" if path == "." else path + "/"
            for name, (mode, _) in tree.listing(path).items():
                if mode != GITLINK_MODE:  # a submodule's files are its own repository's
                    pending.append((prefix + name, "tree" if mode == TREE_MODE else "blob"))
