"""Fingerprinting a test repository's definitions, and editing its JSON templates."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from bridge.catalog import load_catalog
from bridge.fingerprint import Snapshot, fingerprint_all
from bridge.git import open_repo
from testing.git import GitRepo


def fingerprints(
    repo: GitRepo, names: Sequence[str] = ("base", "snowflake"), **kwargs: Any
) -> tuple[dict[str, str], Snapshot]:
    """The fingerprint values of `names` and their ancestors by name, and their snapshot;
    `kwargs` go to fingerprint_all (`commit`, `allow_dirty`, ...)."""
    catalog = load_catalog(repo.path)
    snap = fingerprint_all(open_repo(repo.path), catalog.closure(names), **kwargs)
    return {n: f.value for n, f in snap.fingerprints.items()}, snap


def rewrite_template(repo: GitRepo, rel: str, change: Callable[[Any], None]) -> None:
    """Apply `change` to the JSON template at `rel` and write it back (not committed)."""
    template = json.loads(repo.path.joinpath(rel).read_text())
    change(template)
    repo.write(rel, json.dumps(template, indent=2))
