"""The git adapter (git.py): the repository, a commit in any spelling, what git is asked, and
its failures."""

from __future__ import annotations

import subprocess

import git
import pytest

from bridge.errors import FingerprintError
from bridge.git import open_repo
from testing.fingerprint import fingerprints


def test_explicit_commit_fingerprints_that_commit(repo):
    old_head = repo.git("rev-parse", "HEAD")
    old, _ = fingerprints(repo)
    repo.write("base/tasks/baseline.sh", "#!/bin/sh\necho v2\n")
    repo.commit("v2")
    at_old, snap = fingerprints(repo, commit=old_head)
    assert at_old == old and snap.commit == old_head
    repo.git("tag", "-a", "-m", "release", "v1", old_head)
    tag_object = repo.git("rev-parse", "v1")
    assert tag_object != old_head
    for spelling in (old_head.upper(), old_head[:10], "v1", tag_object, "HEAD~1"):
        at, snap = fingerprints(repo, commit=spelling)
        assert (at, snap.commit) == (old, old_head), spelling


@pytest.mark.parametrize("what", ["nope", "a tree", "a missing SHA"])
def test_unknown_commit_is_clear(repo, what):
    rev = {
        "nope": "nope",
        "a tree": repo.git("rev-parse", "HEAD^{tree}"),
        "a missing SHA": "0123456789" * 4,
    }[what]
    with pytest.raises(FingerprintError, match=f"Cannot find commit '{rev}'"):
        fingerprints(repo, commit=rev)


def test_not_a_git_repo(tmp_path):
    (tmp_path / "ami-chain.json").write_text("{}")
    with pytest.raises(FingerprintError, match="is not inside a git repository") as err:
        open_repo(tmp_path)
    assert "git init" not in str(err.value)  # never advice that nests a repository in another


def test_git_invocations_do_not_grow_with_history(repo, monkeypatch):
    """Fingerprinting reads objects at one commit; history length must not matter."""
    calls: list[list[str]] = []
    real_popen = subprocess.Popen

    def counting(argv, *args, **kwargs):
        if argv and "git" in str(argv[0]):
            calls.append(list(argv))
        return real_popen(argv, *args, **kwargs)

    def count_once() -> tuple[int, dict]:
        calls.clear()
        monkeypatch.setattr(subprocess, "Popen", counting)
        monkeypatch.setattr(git.cmd, "safer_popen", counting)
        try:
            fps, _ = fingerprints(repo)
        finally:
            monkeypatch.setattr(subprocess, "Popen", real_popen)
            monkeypatch.setattr(git.cmd, "safer_popen", real_popen)
        return len(calls), fps

    short_count, short_fps = count_once()
    for i in range(150):
        repo.write("history.txt", f"{i}\n")
        repo.git("add", "history.txt")
        repo.git("commit", "-q", "-m", f"history {i}")
    long_count, long_fps = count_once()
    assert long_fps == short_fps
    assert long_count == short_count
    # One `git status` and one long-lived `git cat-file --batch`, whatever the history: HEAD is
    # read from the ref files and the commit through the same reader as the trees.
    assert sorted(" ".join(argv[1:3]) for argv in calls) == [
        "cat-file --batch",
        "status --porcelain=v1",
    ]


def test_git_failing_on_an_ignored_input_is_a_clear_error(repo):
    repo.write(".gitignore", "secret/\n")
    repo.commit("ignore a directory")
    repo.write("secret/token.sh", "echo secret\n")
    repo.write("base/tasks/baseline.sh", "#!/bin/sh\necho dirty\n")
    data = repo.catalog()
    data["definitions"]["base"]["inputs"] = ["secret/token.sh"]
    repo.set_catalog(data)
    with pytest.raises(FingerprintError, match=r"git failed while hashing .*\.gitignore"):
        fingerprints(repo, ["base"], allow_dirty=True)
