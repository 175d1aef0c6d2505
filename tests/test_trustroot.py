"""The catalog's provenance key through git history (trustroot.py), on a real repository."""

from __future__ import annotations

import git

from bridge import trustroot

CATALOG = "ami-chain.json"


def keyed(repo, key: str | None, message: str) -> None:
    data = repo.catalog()
    data.pop("provenance", None)
    if key:
        data["provenance"] = {"key": key}
    repo.set_catalog(data)
    repo.commit(message)


def head(repo) -> str:
    return repo.git("rev-parse", "HEAD").strip()


def test_a_catalog_that_never_named_a_key_has_no_change(repo):
    g = git.Repo(repo.path)
    assert trustroot.last_change(g, CATALOG, head(repo)) is None
    assert trustroot.pending_change(g, CATALOG, None) is None


def test_the_last_change_is_found_behind_unrelated_commits(repo):
    keyed(repo, "alias/a", "sign with a")
    signed = head(repo)
    keyed(repo, "alias/b", "sign with b")
    switched = head(repo)
    repo.write("README.md", "unrelated\n")
    repo.commit("unrelated")
    g = git.Repo(repo.path)
    change = trustroot.last_change(g, CATALOG, head(repo))
    assert change is not None
    assert (change.commit, change.before, change.after) == (switched, "alias/a", "alias/b")
    # Turning signing on trusts nobody new: not a change.
    assert trustroot.last_change(g, CATALOG, signed) is None
    # Turning it off is.
    keyed(repo, None, "unsigned")
    off = trustroot.last_change(g, CATALOG, head(repo))
    assert off is not None and (off.before, off.after) == ("alias/b", None)
    assert "to none (unsigned)" in off.describe()
    # Checked at a commit that does not touch the key: nothing pending.
    repo.write("README.md", "unrelated again\n")
    repo.commit("unrelated again")
    assert trustroot.pending_change(g, CATALOG, None) is None
    # An uncommitted edit of the key is pending against HEAD.
    keyed(repo, "alias/b", "signed again")
    repo.write("README.md", "unrelated, once more\n")
    repo.commit("unrelated, once more")
    pending = trustroot.pending_change(g, CATALOG, "alias/c")
    assert pending is not None and (pending.before, pending.after) == ("alias/b", "alias/c")
    assert "(uncommitted)" in pending.describe()
