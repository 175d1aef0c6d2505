"""The tree Packer builds from (checkout.py): a commit's content exactly as committed."""

from __future__ import annotations

import os

import git
import pytest

from bridge.errors import BuildError
from bridge.pipeline.checkout import exported


def test_the_export_holds_the_committed_bytes_modes_and_links(repo, tmp_path):
    repo.write("data/notes.txt", "one\ntwo\n")
    os.symlink("notes.txt", repo.path / "data" / "link.txt")
    commit = repo.commit("data")
    # The working tree drifts from the commit: an edit, and eol conversion on checkout.
    repo.write("base/tasks/baseline.sh", "#!/bin/sh\necho uncommitted\n")
    repo.git("config", "core.autocrlf", "true")
    (repo.path / "data" / "notes.txt").unlink()
    repo.git("checkout", "--", "data/notes.txt")
    assert (repo.path / "data" / "notes.txt").read_bytes() == b"one\r\ntwo\r\n"

    with exported(git.Repo(repo.path), commit, tmp_path / "trees") as tree:
        assert (tree / "data" / "notes.txt").read_bytes() == b"one\ntwo\n"
        assert b"uncommitted" not in (tree / "base" / "tasks" / "baseline.sh").read_bytes()
        assert os.access(tree / "base" / "tasks" / "baseline.sh", os.X_OK)
        assert not os.access(tree / "base" / "base.json", os.X_OK)
        assert os.readlink(tree / "data" / "link.txt") == "notes.txt"
        assert sorted(p.name for p in tree.iterdir()) == sorted(
            repo.git("ls-tree", "--name-only", commit).splitlines()
        )
    assert not tree.exists()  # one export per build, removed afterwards
    assert list((tmp_path / "trees").iterdir()) == []


def test_an_older_commit_is_exported_whatever_is_checked_out(repo, tmp_path):
    old = repo.git("rev-parse", "HEAD")
    repo.write("base/tasks/baseline.sh", "#!/bin/sh\necho v2\n")
    repo.commit("v2")
    with exported(git.Repo(repo.path), old, tmp_path / "trees") as tree:
        assert b"v2" not in (tree / "base" / "tasks" / "baseline.sh").read_bytes()


def test_an_export_that_cannot_be_written_is_a_clear_error(repo, tmp_path):
    blocked = tmp_path / "trees"
    blocked.write_text("a file where the directory should be")
    with pytest.raises(BuildError, match="Cannot export commit .*AMI_BRIDGE_STATE_DIR"):
        with exported(git.Repo(repo.path), repo.git("rev-parse", "HEAD"), blocked):
            pass


def test_an_interrupted_build_leaves_no_export(repo, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with exported(git.Repo(repo.path), repo.git("rev-parse", "HEAD"), tmp_path / "trees"):
            raise KeyboardInterrupt
    assert list((tmp_path / "trees").iterdir()) == []


def test_a_git_lfs_pointer_among_the_inputs_is_refused(repo, tmp_path):
    pointer = "version https://git-lfs.github.com/spec/v1\noid sha256:" + "a" * 64 + "\nsize 9\n"
    repo.write("base/files/disk.img", pointer)
    repo.write("docs/diagram.png", pointer)  # not read by the build: exported as it is
    commit = repo.commit("LFS pointers")
    with pytest.raises(
        BuildError, match="base/files/disk.img, an input of the build, is a Git LFS"
    ):
        with exported(git.Repo(repo.path), commit, tmp_path / "trees", inputs=["base"]):
            pass
    with exported(git.Repo(repo.path), commit, tmp_path / "trees", inputs=["snowflake"]) as tree:
        assert (tree / "docs" / "diagram.png").read_text() == pointer
    assert list((tmp_path / "trees").iterdir()) == []


def test_an_input_behind_a_checkout_filter_is_refused(repo, tmp_path):
    """git-crypt and the like: the build would get the stored (encrypted) bytes."""
    repo.write(".gitattributes", "base/tasks/*.sh filter=git-crypt diff=git-crypt\n")
    commit = repo.commit("encrypted scripts")
    with pytest.raises(BuildError, match=r"base/tasks/cleanup.sh \(filter=git-crypt\)"):
        with exported(git.Repo(repo.path), commit, tmp_path / "trees", inputs=["base"]):
            pass
    # Not an input of this build: exported as it is.
    with exported(git.Repo(repo.path), commit, tmp_path / "trees", inputs=["snowflake"]):
        pass
    assert list((tmp_path / "trees").iterdir()) == []
