"""The tree Packer builds from: a commit's content exactly as committed, in a private directory.

Builds never run from the working tree, whose bytes can differ from what was fingerprinted
(uncommitted edits, `core.autocrlf`, smudge filters, another checked-out commit). The export
writes each blob's committed bytes with its mode (executable bit, symlinks), reading objects
through the repository's object database, so no checkout filter or eol conversion applies.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import git

from bridge.errors import BuildError
from bridge.git import EXECUTABLE_MODE, GITLINK_MODE, LINK_MODE, TREE_MODE, is_commit

log = logging.getLogger(__name__)

_LFS_POINTER = b"version https://git-lfs.github.com/spec/v1"


@contextmanager
def exported(
    repo: git.Repo, commit: str, directory: Path, *, inputs: Sequence[str] = ()
) -> Iterator[Path]:
    """A fresh directory under `directory` holding the tree of `commit` (the full SHA of a
    commit or a tree), removed afterwards.

    One per build, so nothing a build writes (a Packer manifest, say) is seen by the next.
    Submodules are exported at their recorded commits from their checkouts; one within `inputs`
    (repo-relative paths) that is not checked out is an error, others stay empty directories.
    """
    dest = directory / f"{commit[:12]}-{uuid.uuid4().hex[:8]}"
    try:
        try:
            directory.mkdir(parents=True, exist_ok=True)
            # Read through the repository's one `cat-file --batch`, as the fingerprint was.
            binsha = bytes.fromhex(commit)
            tree_sha = git.Commit(repo, binsha).tree.hexsha if is_commit(repo, commit) else commit
            # A root tree with its path set, so its entries know theirs.
            tree = git.Tree(repo, bytes.fromhex(tree_sha), TREE_MODE, "")
            submodules = _Submodules(repo, inputs)
            _write_tree(tree, dest, submodules)
            check_filters(repo, submodules.written)
        except OSError as exc:
            raise BuildError(
                f"Cannot export commit {commit[:12]} to {directory} for the build: "
                f"{exc.strerror}. Check the free space and permissions of the state directory "
                "(AMI_BRIDGE_STATE_DIR)."
            ) from None
        except ValueError as exc:  # an object the repository does not have (a partial clone)
            raise BuildError(
                f"Cannot export commit {commit[:12]} for the build: {exc}. Fetch the whole "
                "commit (git fetch, or a clone without --filter) and build again."
            ) from None
        log.debug("exported commit %s to %s", commit[:12], dest)
        yield dest
    finally:
        # Whatever ends the build (success, failure, Ctrl-C), the export goes.
        shutil.rmtree(dest, ignore_errors=True)


# Checkout filters the bridge knows what to do about: none, and LFS (its pointers are refused
# by content, above).
_NO_FILTER = frozenset({"unspecified", "unset", "set", "lfs"})


def check_filters(repo: git.Repo, paths: Sequence[str]) -> None:
    """Refuse inputs that a git checkout filter (a `filter=` attribute: git-crypt and the like)
    transforms: the build gets the committed bytes, not what the working tree shows. One
    `git check-attr` for all of them."""
    if not paths:
        return
    import tempfile

    with tempfile.TemporaryFile() as listing:
        listing.write("\0".join(paths).encode())
        listing.seek(0)
        try:
            out = repo.git.check_attr("filter", "--cached", "-z", "--stdin", istream=listing)
        except git.GitCommandError:
            return  # git cannot read attributes here: nothing it cannot name is refused
    fields = out.split("\0")
    filtered = sorted(
        {
            f"{fields[i]} (filter={fields[i + 2]})"
            for i in range(0, len(fields) - 2, 3)
            if fields[i + 2] not in _NO_FILTER
        }
    )
    if filtered:
        raise BuildError(
            f"Inputs of the build pass through a git checkout filter: {', '.join(filtered[:5])}"
            f"{' ...' if len(filtered) > 5 else ''}. Builds use the committed bytes (for "
            "git-crypt, the encrypted ones), not the working tree's, so Packer would read "
            "something else than the repository shows. Keep these files unfiltered, or decrypt "
            "them in a provisioner."
        )


class _Submodules:
    """Finds the content of submodules (gitlinks) in their checkouts."""

    def __init__(self, repo: git.Repo, inputs: Sequence[str], prefix: str = "") -> None:
        self.repo = repo
        self.inputs = inputs
        self.prefix = prefix  # the path of `repo` in the top repository
        self.written = []

    def tree(self, rel: str, commit: str) -> tuple[git.Tree, _Submodules] | None:
        """The tree of the submodule at `rel` (in this repo) at `commit`, or None when absent."""
        path = Path(str(self.repo.working_tree_dir)) / rel
        top_rel = self.prefix + rel
        try:
            sub = git.Repo(path)
        except (git.InvalidGitRepositoryError, git.NoSuchPathError):
            sub = None
        try:
            # The directory must be the submodule's own checkout, holding the recorded commit.
            if sub is None or Path(str(sub.working_tree_dir)).resolve() != path.resolve():
                raise ValueError(rel)
            tree = sub.commit(commit).tree
        except ValueError:
            if sub is not None:
                sub.close()
            if self.needed(top_rel):
                raise BuildError(
                    f"The submodule {top_rel} is not checked out at commit {commit[:12]} (a "
                    "clone without --recurse-submodules?), so its content cannot be built. Run "
                    f"`git submodule update --init --recursive {top_rel}` and build again."
                ) from None
            log.debug("submodule %s is not checked out; nothing of the build reads it", top_rel)
            return None
        return tree, _Submodules(sub, self.inputs, top_rel + "/")

    # The input files of the top repository written so far (repository-relative).
    written: list[str]

    def needed(self, path: str) -> bool:
        """Whether `path` (repository-relative) is, or is inside, an input of the build."""
        return any(i == "." or path == i or path.startswith(i + "/") for i in self.inputs)


def _write_tree(tree: git.Tree, target: Path, submodules: _Submodules, rel: str = "") -> None:
    target.mkdir(parents=True)
    for item in tree:
        # Submodule entries carry no `name` until configured; the path's last part is the name.
        name = str(item.path).rsplit("/", 1)[-1]
        path = target / name
        if item.type == "tree":
            _write_tree(item, path, submodules, f"{rel}{name}/")
        elif item.mode == GITLINK_MODE:
            # A submodule: its content is in its own repository, at the recorded commit.
            found = submodules.tree(rel + name, item.hexsha)
            if found is None:
                path.mkdir()
            else:
                try:
                    _write_tree(found[0], path, found[1])
                finally:
                    found[1].repo.close()  # ends its object-reading git processes
        elif item.mode == LINK_MODE:
            os.symlink(os.fsdecode(item.data_stream.read()), path)
        else:
            data = item.data_stream.read()
            if data.startswith(_LFS_POINTER) and submodules.needed(submodules.prefix + rel + name):
                raise BuildError(
                    f"{submodules.prefix}{rel}{name}, an input of the build, is a Git LFS "
                    "pointer: builds use committed git objects, and its content is not among "
                    "them, so Packer would read the pointer text. Keep the file in git itself "
                    "(not LFS), or fetch it in a provisioner."
                )
            path.write_bytes(data)
            if not submodules.prefix and submodules.needed(rel + name):
                submodules.written.append(rel + name)
            if item.mode == EXECUTABLE_MODE:
                path.chmod(0o755)
