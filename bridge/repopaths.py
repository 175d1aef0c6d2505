"""Where a catalog and the paths in it are read (the working tree, or a commit's tree: git.py),
and how a path from input is kept inside the repository root and spelled as git spells it.
"""

from __future__ import annotations

import os
import posixpath
from pathlib import Path, PurePosixPath
from typing import Literal, Protocol

from bridge.errors import CatalogError

PathKind = Literal["file", "dir", "missing"]


class Files(Protocol):
    """Where a catalog and the paths in it are read: the working tree, or a commit's tree."""

    where: str  # for messages: "in /path/to/repo", "in commit 0123abcd"

    def read(self, rel: str, what: str) -> bytes | None:
        """The content of the file at `rel`, or None when there is none."""

    def kind(self, rel: str, what: str) -> PathKind:
        """What is at `rel`; a path that leaves the repository is a CatalogError."""

    def names(self, rel: str) -> list[str]:
        """The names in the directory at `rel`."""


class WorkingTree:
    """The checkout on disk; symlinks are followed, and must stay inside the repository."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.where = f"in {root}"

    def read(self, rel: str, what: str) -> bytes | None:
        path = resolve_inside(self.root, rel, what=what)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise CatalogError(
                f"Cannot read the {what} {path}: {exc.strerror}. Check that it is a readable file."
            ) from None

    def kind(self, rel: str, what: str) -> PathKind:
        real = resolve_inside(self.root, rel, what=what)
        return "dir" if real.is_dir() else "file" if real.is_file() else "missing"

    def names(self, rel: str) -> list[str]:
        return sorted(p.name for p in resolve_inside(self.root, rel, what="directory").iterdir())


def resolve_inside(repo_root: Path, rel: str, *, what: str) -> Path:
    """Turn a repo-relative path from input into a real path that stays inside the repo root.

    Symlinks are followed before the check, so a link that points out of the repository is refused.
    """
    pure = PurePosixPath(rel)
    root = Path(os.path.realpath(repo_root))
    if pure.is_absolute() or "\\" in rel or "\x00" in rel:
        raise CatalogError(
            f"The {what} path {rel!r} must be relative to the repository root ({root}) and use "
            "forward slashes."
        )
    real = Path(os.path.realpath(root / pure))
    if real != root and root not in real.parents:
        raise CatalogError(
            f"The {what} path {rel!r} leaves the repository root {root} (it resolves to {real}). "
            "Keep templates, inputs and the catalog inside the repository."
        )
    return real


def normalize(rel: str) -> str:
    """A repo-relative path in git's spelling: no './', no 'x/..', no trailing '/', '.' for root."""
    return posixpath.normpath(rel)
