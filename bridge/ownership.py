"""Which catalog an image belongs to.

Several catalogs (repositories) may build into one account, with the same definition names and
even the same content. Each image carries its catalog's ID (`ami-chain:catalog`), and every
lookup, gc and revoke counts only images of its own catalog: one catalog never uses, changes or
deletes another's. The ID is the catalog's `id`, else derived from where it lives: the
repository's `origin` URL (normalised, so SSH and HTTPS clones agree) and the catalog's path,
else, for a repository without a remote, its first commit and the catalog's path.

An image without the tag was built before catalogs were told apart: a lookup still counts it
(as any catalog's), a build run that uses it tags it as its own, and gc leaves it alone.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from bridge import model
from bridge.errors import CatalogError
from bridge.model import Image

if TYPE_CHECKING:
    import git

    from bridge.catalog import Catalog

_SCP_LIKE = re.compile(r"^(?:[^@/]+@)?([^:/]+):(.+)$")  # git@github.com:owner/repo.git
_URL = re.compile(r"^[a-z][a-z0-9+.-]*://(?:[^@/]+@)?([^/:]+)(?::\d+)?/(.+)$")


def catalog_id(repo: git.Repo, catalog: Catalog) -> str:
    """`catalog`'s ID: its `id`, else its repository's and path (see the module)."""
    if catalog.id:
        return catalog.id
    url = _origin(repo)
    if url:
        return f"{url}:{catalog.path}"
    if repo.git.rev_parse("--is-shallow-repository").strip() == "true":
        raise CatalogError(
            f"The catalog {catalog.path} has no `id`, and its repository has no `origin` remote "
            "and is a shallow clone, so the bridge cannot tell its images from another "
            "catalog's in the same account. Set `id` in the catalog (a name unique in the "
            "account, e.g. the repository's name), or clone with its history."
        )
    roots = sorted(repo.git.rev_list("--max-parents=0", "HEAD").split())
    return f"{roots[0][:12]}:{catalog.path}"


def _origin(repo: git.Repo) -> str:
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
