"""The catalog ID (ownership.py) of a repository without a remote: its first commit, found
without a git process once cached, and the same as `git rev-list --max-parents=0 HEAD`."""

from __future__ import annotations

import subprocess

import pytest

from bridge import ownership
from bridge.catalog import load_catalog
from bridge.errors import CatalogError
from bridge.git import open_repo
from bridge.ownership import _WALK_LIMIT, catalog_id


def catalog_of(repo):
    data = repo.catalog()
    data.pop("id", None)
    repo.set_catalog(data)
    repo.commit("no id")
    return load_catalog(repo.path)


def first_root(repo) -> str:
    return sorted(repo.git("rev-list", "--max-parents=0", "HEAD").split())[0]


def no_rev_list(*args, **kwargs):
    raise AssertionError("git rev-list was started")


def test_the_id_is_the_first_commit_and_the_catalogs_path(repo, tmp_path):
    catalog = catalog_of(repo)
    expected = f"{first_root(repo)[:12]}:ami-chain.json"
    assert catalog_id(open_repo(repo.path), catalog) == expected
    assert catalog_id(open_repo(repo.path), catalog, tmp_path / "cache") == expected


def test_a_cached_head_and_commits_on_it_start_no_git_process(repo, tmp_path, monkeypatch):
    catalog = catalog_of(repo)
    cache = tmp_path / "cache"
    expected = catalog_id(open_repo(repo.path), catalog, cache)
    for i in range(3):
        repo.write(f"new{i}.txt", f"{i}\n")
        repo.commit(f"new {i}")
    monkeypatch.setattr(ownership, "_rev_list_first", no_rev_list)
    assert catalog_id(open_repo(repo.path), catalog, cache) == expected
    assert catalog_id(open_repo(repo.path), catalog, cache) == expected


def test_an_unrelated_history_merged_in_counts_its_root(repo, tmp_path):
    catalog = catalog_of(repo)
    cache = tmp_path / "cache"
    catalog_id(open_repo(repo.path), catalog, cache)
    repo.git("checkout", "-q", "--orphan", "other")
    repo.git("rm", "-rfq", ".")
    repo.write("other.txt", "other\n")
    repo.commit("other root")
    repo.git("checkout", "-q", "main")
    repo.git("merge", "-q", "--allow-unrelated-histories", "-m", "merge", "other")
    assert len(repo.git("rev-list", "--max-parents=0", "HEAD").split()) == 2
    expected = f"{first_root(repo)[:12]}:ami-chain.json"
    assert catalog_id(open_repo(repo.path), catalog, cache) == expected
    assert catalog_id(open_repo(repo.path), catalog) == expected


def test_a_history_longer_than_the_walk_asks_git_once(repo, tmp_path, monkeypatch):
    catalog = catalog_of(repo)
    stream = b""
    for i in range(_WALK_LIMIT * 2):
        message, body = f"c{i}\n".encode(), f"{i}\n".encode()
        stream += b"commit refs/heads/main\n"
        stream += f"committer t <t@example.invalid> {1700000000 + i} +0000\n".encode()
        stream += f"data {len(message)}\n".encode() + message
        stream += b"from refs/heads/main^0\n" if i == 0 else b""
        stream += f"M 100644 inline h.txt\ndata {len(body)}\n".encode() + body + b"\n"
    subprocess.run(["git", "fast-import", "--quiet"], input=stream, cwd=repo.path, check=True)
    repo.git("reset", "-q", "--hard", "main")
    expected = f"{first_root(repo)[:12]}:ami-chain.json"
    cache = tmp_path / "cache"
    assert catalog_id(open_repo(repo.path), catalog, cache) == expected
    monkeypatch.setattr(ownership, "_rev_list_first", no_rev_list)
    assert catalog_id(open_repo(repo.path), catalog, cache) == expected


def test_a_shallow_clone_without_a_remote_must_set_an_id(repo, tmp_path):
    catalog_of(repo)
    repo.write("more.txt", "more\n")
    repo.commit("more")
    clone = tmp_path / "shallow"
    subprocess.run(
        ["git", "clone", "-q", "--depth", "1", f"file://{repo.path}", str(clone)], check=True
    )
    subprocess.run(["git", "remote", "remove", "origin"], cwd=clone, check=True)
    with pytest.raises(CatalogError, match="shallow clone"):
        catalog_id(open_repo(clone), load_catalog(clone), tmp_path / "cache")
