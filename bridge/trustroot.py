"""The catalog's provenance key through git history: when the trust root changed.

Builds are signed with the KMS key the catalog names at their commit (`provenance.key`). A commit
that names another key is a trust change: images built after it verify only against the new key,
and a key changed by whoever can commit is exactly what `verify --key` (a pinned trust root) is
for. `check` reports a change against the commit before; `verify` says when the key it trusts
from the catalog last changed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import git

# Catalog commits looked through for the last change (older changes are not reported).
HISTORY_LIMIT = 500


@dataclass(frozen=True)
class KeyChange:
    """The catalog named `before` until `commit`, and `after` from it (None: no key)."""

    commit: str
    when: str
    before: str | None
    after: str | None

    def describe(self) -> str:
        where = f"at commit {self.commit[:12]} ({self.when})" if self.commit else "(uncommitted)"
        return f"provenance.key changed from {_named(self.before)} to {_named(self.after)} {where}"


def key_at(catalog: str, commit: git.Commit) -> str | None:
    """The provenance key the catalog names at `commit` (None: no catalog, no key, or a catalog
    that is not JSON there)."""
    try:
        blob = commit.tree / catalog
        data = json.loads(blob.data_stream.read())
    except (KeyError, ValueError):
        return None
    provenance = data.get("provenance") if isinstance(data, dict) else None
    key = provenance.get("key") if isinstance(provenance, dict) else None
    return key if isinstance(key, str) else None


def last_change(repo: git.Repo, catalog: str, commit: str) -> KeyChange | None:
    """The newest commit, at or before `commit` on its first-parent line, whose catalog names
    another provenance key than the commit before it did (a switch, or signing turned off:
    turning it on trusts nobody new); None when the key never changed."""
    newer: git.Commit | None = None
    newer_key: str | None = None
    for older in repo.iter_commits(
        commit, paths=catalog, first_parent=True, max_count=HISTORY_LIMIT
    ):
        key = key_at(catalog, older)
        if newer is not None and key != newer_key and key is not None:
            return _change(newer, key, newer_key)
        newer, newer_key = older, key
    return None


def pending_change(repo: git.Repo, catalog: str, key: str | None) -> KeyChange | None:
    """The change `key` (the catalog's as checked: the working tree's) makes: against HEAD when
    the catalog has uncommitted changes (a pre-commit hook), else HEAD against its parent (CI
    checking a commit). None when it changes nothing, or there is no commit before."""
    try:
        head = repo.head.commit
    except ValueError:  # no commit yet
        return None
    committed = key_at(catalog, head)
    if key != committed:
        return KeyChange("", "uncommitted", committed, key) if committed else None
    if not head.parents or not _has(head.parents[0], catalog):
        return None  # a new catalog starts with its key: nothing was trusted before
    before = key_at(catalog, head.parents[0])
    if before == committed or before is None:
        return None
    return _change(head, before, committed)


def _has(commit: git.Commit, path: str) -> bool:
    try:
        commit.tree / path
    except KeyError:
        return False
    return True


def _change(commit: git.Commit, before: str | None, after: str | None) -> KeyChange:
    when = commit.committed_datetime.date().isoformat()
    return KeyChange(commit.hexsha, when, before, after)


def _named(key: str | None) -> str:
    return key if key else "none (unsigned)"
