"""The git adapter: a repository, its commits, and the trees at them, read as git objects.

Opens the repository, finds the commit any revision names, reads paths and blobs of one tree
through the repository's one long-lived `git cat-file --batch` (also as the place a catalog is
read at a commit), and, for allow_dirty, lists uncommitted changes and hashes working-tree
content into a tree with git's own object hashing. What goes wrong in git is wrapped here, with
what to do next.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import git
from git.objects.fun import tree_entries_from_data

from bridge.errors import CatalogError, FingerprintError
from bridge.repopaths import normalize

# Modes of git tree entries.
TREE_MODE = 0o040000
LINK_MODE = 0o120000
GITLINK_MODE = 0o160000  # a submodule, at the commit it records
EXECUTABLE_MODE = 0o100755


def open_repo(path: Path, *, named: str = "`repo`") -> git.Repo:
    """Open the git repository that holds `path` (its root, or a directory inside it); `named`
    is how messages name the option that gave it."""
    if not path.is_dir():
        what = "is not a directory" if path.exists() else "does not exist (directory not found)"
        raise FingerprintError(
            f"The repository directory {path} {what}. Pass the directory of the Packer "
            f"repository (or of its catalog, inside it) as {named}."
        )
    try:
        repo = git.Repo(path, search_parent_directories=True)
    except (git.NoSuchPathError, git.InvalidGitRepositoryError):
        raise FingerprintError(
            f"{path} is not inside a git repository. Fingerprints come from git content: pass "
            f"a directory of a clone of the Packer repository as {named}."
        ) from None
    if repo.bare or repo.working_tree_dir is None:
        raise FingerprintError(f"{path} is in a bare repository; pass a checkout instead.")
    return repo


def find_commit(repo: git.Repo, commit: str | None) -> git.Commit:
    """The commit `commit` names (any revision: SHA, branch, tag, `rev~2`; default HEAD)."""
    rev = commit or "HEAD"
    try:
        sha = _head_sha(repo) if commit is None else commit.lower()
        if re.fullmatch(r"[0-9a-f]{40}", sha) and is_commit(repo, sha):
            # HEAD and full SHAs are read through the one `cat-file --batch` the tree reads use.
            found = git.Commit(repo, bytes.fromhex(sha))
        else:  # branches, tags, short SHAs, `rev~2`: git's own revision parsing
            found = repo.commit(rev)
        found.tree  # noqa: B018 - reads the object, so a missing commit fails here
        return found
    except (git.BadName, git.BadObject, ValueError, git.GitCommandError):
        hint = (
            "Commit the Packer definitions first (git add, git commit)."
            if commit is None
            else "Pass a commit, branch or tag that exists in the repository."
        )
        raise FingerprintError(
            f"Cannot find commit {rev!r} in {repo.working_tree_dir}. {hint}"
        ) from None


def is_head(repo: git.Repo, commit: str) -> bool:
    """Whether `commit` (any revision) is the checked-out commit."""
    return is_head_sha(repo, find_commit(repo, commit).hexsha)


def is_head_sha(repo: git.Repo, sha: str) -> bool:
    """Whether `sha` (a full commit SHA) is the checked-out commit."""
    try:
        return _head_sha(repo) == sha
    except ValueError:
        return False


def _head_sha(repo: git.Repo) -> str:
    """The SHA HEAD points at, read from the ref files (ValueError before the first commit)."""
    sha: str = git.SymbolicReference.dereference_recursive(repo, "HEAD")
    return sha


def is_commit(repo: git.Repo, sha: str) -> bool:
    """Whether the object `sha` (a full SHA) is a commit (ValueError when there is none)."""
    return bool(repo.odb.stream(bytes.fromhex(sha)).type == b"commit")


class TreeIndex:
    """Path lookups in one git tree, reading each directory object once (git cat-file --batch)."""

    def __init__(self, repo: git.Repo, tree_sha: str) -> None:
        self._odb = repo.odb
        self.sha = tree_sha
        self._dirs: dict[str, dict[str, tuple[int, bytes]] | None] = {}
        # Files parsed by this tree's readers, by path, so each is parsed once per tree.
        self.parsed: dict[str, Any] = {}

    def _entries(self, directory: str) -> dict[str, tuple[int, bytes]] | None:
        if directory not in self._dirs:
            if directory == ".":
                binsha: bytes | None = bytes.fromhex(self.sha)
            else:
                found = self.lookup(directory)
                binsha = bytes.fromhex(found[1]) if found and found[0] == TREE_MODE else None
            self._dirs[directory] = (
                None
                if binsha is None
                else {
                    name: (mode, sha)
                    for sha, mode, name in tree_entries_from_data(self._odb.stream(binsha).read())
                }
            )
        return self._dirs[directory]

    def lookup(self, path: str) -> tuple[int, str] | None:
        """(mode, object SHA) of `path`, or None when the tree has no such path."""
        if path == ".":
            return TREE_MODE, self.sha
        parent, _, name = path.rpartition("/")
        entries = self._entries(parent or ".")
        if entries is None or name not in entries:
            return None
        mode, binsha = entries[name]
        return mode, binsha.hex()

    def listing(self, directory: str) -> dict[str, tuple[int, bytes]]:
        """Name -> (mode, binary object SHA) of the entries of `directory` ({} for no tree)."""
        return self._entries(directory) or {}

    def read(self, path: str) -> bytes | None:
        """The content of the blob at `path`, or None."""
        found = self.lookup(path)
        if found is None or found[0] == TREE_MODE:
            return None
        data: bytes = self._odb.stream(bytes.fromhex(found[1])).read()
        return data


class CommitFiles:
    """A commit's tree as the place a catalog is read (repopaths.Files): what `commit` pins."""

    def __init__(self, repo: git.Repo, commit: str) -> None:
        found = find_commit(repo, commit)
        self._tree = TreeIndex(repo, found.tree.hexsha)
        self.where = f"in commit {found.hexsha[:12]}"

    def _path(self, rel: str, what: str) -> str:
        path = normalize(rel)
        if PurePosixPath(rel).is_absolute() or path == ".." or path.startswith("../"):
            raise CatalogError(
                f"The {what} path {rel!r} leaves the repository. Keep templates, inputs and the "
                "catalog inside the repository."
            )
        return path

    def read(self, rel: str, what: str) -> bytes | None:
        return self._tree.read(self._path(rel, what))

    def kind(self, rel: str, what: str) -> Literal["file", "dir", "missing"]:
        found = self._tree.lookup(self._path(rel, what))
        return "missing" if found is None else "dir" if found[0] == TREE_MODE else "file"

    def names(self, rel: str) -> list[str]:
        return sorted(self._tree.listing(normalize(rel)))


def changed_files(repo: git.Repo, paths: Sequence[str]) -> list[str]:
    """The files at or below `paths` with uncommitted changes, untracked ones included."""
    if not paths:
        return []
    try:
        out = repo.git.status("--porcelain=v1", "-z", "--untracked-files=all", "--", *paths)
    except git.GitCommandError as exc:
        raise _git_failed("checking the inputs for uncommitted changes", exc) from None
    changed: list[str] = []
    records = iter(out.split("\0"))
    for record in records:
        if len(record) < 4:
            continue
        changed.append(record[3:])
        if record[0] in "RC":
            next(records, None)  # the rename source follows as its own record
    return sorted(changed)


def worktree_tree(
    repo: git.Repo, commit: git.Commit, committed: TreeIndex, paths: Sequence[str]
) -> str:
    """The tree SHA of `commit` with `paths` replaced by their working-tree content."""
    root = repo.working_tree_dir
    assert root is not None
    existing = [
        p
        for p in paths
        if os.path.lexists(os.path.join(root, p)) or committed.lookup(p) is not None
    ]
    with tempfile.TemporaryDirectory(prefix="ami-bridge-index-") as tmp:
        env = {"GIT_INDEX_FILE": os.path.join(tmp, "index")}
        try:
            repo.git.read_tree(commit.hexsha, env=env)
            if existing:
                repo.git.add("-A", "--", *existing, env=env)
            sha: str = repo.git.write_tree(env=env)
        except git.GitCommandError as exc:
            raise _git_failed("hashing the working tree's inputs (allow_dirty)", exc) from None
    return sha


def _git_failed(doing: str, exc: git.GitCommandError) -> FingerprintError:
    detail = " ".join(str(exc.stderr or "").split()).removeprefix("stderr: ").strip("'")
    return FingerprintError(
        f"git failed while {doing}: {detail or exc.status}. An input may name a path git "
        "ignores (.gitignore): track it, or take it out of the inputs and the template."
    )
