"""Which catalog an image belongs to.

Several catalogs (repositories) may build into one account, with the same definition names and
even the same content. Each image carries its catalog's ID (`ami-chain:catalog`), and every
lookup, gc and revoke counts only images of its own catalog: one catalog never uses, changes or
deletes another's. The ID is the catalog's `id`, else derived from where it lives: the
repository's `origin` URL (normalised, so SSH and HTTPS clones agree) and the catalog's path,
else, for a repository without a remote, its first commit and the catalog's path.

The first commit is found without a git process on the common path: a commit's root commits never
change, so they are cached by its SHA, and a new HEAD is read back (through the repository's one
`git cat-file --batch`) to commits already cached. Only a history the cache does not reach within
a few commits costs one `git rev-list` (which walks the whole history).

An image without the tag was built before catalogs were told apart: a lookup still counts it
(as any catalog's), a build run that uses it tags it as its own, and gc leaves it alone.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from bridge import model
from bridge.errors import CatalogError
from bridge.model import Image

if TYPE_CHECKING:
    import git

    from bridge.catalog import Catalog

_SCP_LIKE = re.compile(r"^(?:[^@/]+@)?([^:/]+):(.+)$")  # git@github.com:owner/repo.git
_URL = re.compile(r"^[a-z][a-z0-9+.-]*://(?:[^@/]+@)?([^/:]+)(?::\d+)?/(.+)$")


# How many commits a new HEAD is read back to find cached ones before one `git rev-list` instead.
_WALK_LIMIT = 64
_SHA = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")


def catalog_id(repo: git.Repo, catalog: Catalog, cache: Path | None = None) -> str:
    """`catalog`'s ID: its `id`, else its repository's and path (see the module). `cache`: the
    directory first commits are cached in (None: none)."""
    if catalog.id:
        return catalog.id
    url = origin(repo)
    if url:
        return f"{url}:{catalog.path}"
    if _is_shallow(repo):
        raise CatalogError(
            f"The catalog {catalog.path} has no `id`, and its repository has no `origin` remote "
            "and is a shallow clone, so the bridge cannot tell its images from another "
            "catalog's in the same account. Set `id` in the catalog (a name unique in the "
            "account, e.g. the repository's name), or clone with its history."
        )
    return f"{_first_commit(repo, cache)[:12]}:{catalog.path}"


def _is_shallow(repo: git.Repo) -> bool:
    """`git rev-parse --is-shallow-repository`, in-process: git marks a shallow clone by a
    `shallow` file in its (common) git directory."""
    return os.path.exists(os.path.join(repo.common_dir, "shallow"))


def _first_commit(repo: git.Repo, cache: Path | None) -> str:
    """The first of HEAD's root commits in SHA order, as `git rev-list --max-parents=0 HEAD`
    sorted gives it (see the module for the cache)."""
    import git as gitpython  # imported where needed, as the rest of this module needs no git

    try:
        head: str = gitpython.SymbolicReference.dereference_recursive(repo, "HEAD")
    except ValueError:  # no commit yet: git says so
        head = ""
    if cache is None or not head:
        return _rev_list_first(repo)
    first = _cached(cache, head) or _walk(repo, cache, head) or _rev_list_first(repo)
    _store(cache, head, first)
    return first


def _rev_list_first(repo: git.Repo) -> str:
    """HEAD's first root commit from `git rev-list` (one process; it walks the whole history)."""
    roots: list[str] = sorted(repo.git.rev_list("--max-parents=0", "HEAD").split())
    return roots[0]


def _walk(repo: git.Repo, cache: Path, head: str) -> str | None:
    """HEAD's first root read back through its parents to cached commits (or roots): the least
    of theirs; None when that takes more than _WALK_LIMIT commits."""
    import git as gitpython

    firsts: list[str] = []
    seen: set[str] = set()
    todo = [head]
    while todo:
        sha = todo.pop()
        if sha in seen:
            continue
        seen.add(sha)
        known = _cached(cache, sha) if sha != head else None
        if known is not None:
            firsts.append(known)
            continue
        if len(seen) > _WALK_LIMIT:
            return None
        parents = [p.hexsha for p in gitpython.Commit(repo, bytes.fromhex(sha)).parents]
        if not parents:
            firsts.append(sha)
        todo.extend(parents)
    return min(firsts)


def _cached(cache: Path, commit: str) -> str | None:
    """The first root commit cached for `commit`, or None."""
    try:
        text = (cache / commit).read_text().strip()
    except OSError:
        return None
    return text if _SHA.fullmatch(text) else None


def _store(cache: Path, commit: str, first: str) -> None:
    """Cache `first` as `commit`'s first root commit (atomically; a cache that cannot be written
    costs time, never correctness)."""
    if (cache / commit).exists():
        return
    try:
        cache.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cache, prefix=f".{commit}.")
        with os.fdopen(fd, "w") as f:
            f.write(first + "\n")
        os.replace(tmp, cache / commit)
    except OSError:
        pass


def origin(repo: git.Repo) -> str:
    """The `origin` remote's URL as host/path (no scheme, user, port or .git), or ""."""
    # Read in-process (no git subprocess): this runs as every command starts.
    url = str(repo.config_reader().get_value('remote "origin"', "url", default="")).strip()
    if not url:
        return ""
    match = _URL.match(url) or _SCP_LIKE.match(url)
    if match is None:
        return url.rstrip("/").removesuffix(".git")
    host, path = match.groups()
    return f"{host.lower()}/{path.strip('/').removesuffix('.git')}"


def foreign(image: Image, catalog: str) -> bool:
    """The image is another catalog's (tagged with another ID)."""
    tagged = image.tag(model.TAG_CATALOG)
    return bool(catalog) and tagged is not None and tagged != catalog


def own(image: Image, catalog: str) -> bool:
    """The image is tagged as this catalog's."""
    return bool(catalog) and image.tag(model.TAG_CATALOG) == catalog


# The channels' SSM path: /ami-chain/<catalog ID>/<definition>/<channel> by default.
CHANNEL_ROOT = "ami-chain"


def default_channel_prefix(catalog_id: str | None) -> str:
    """Where a catalog's channels live unless `channels.prefix` says: under its ID, so that two
    catalogs in one account never share a parameter (`ami-chain` for a catalog without one). An
    ID's characters that an SSM name cannot hold (`:@+=`) become `-`."""
    if not catalog_id:
        return CHANNEL_ROOT
    return f"{CHANNEL_ROOT}/{re.sub(r'[^A-Za-z0-9_./-]', '-', catalog_id).strip('/')}"
