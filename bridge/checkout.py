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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import git

from bridge.errors import BuildError

log = logging.getLogger(__name__)

_EXECUTABLE = 0o100755
_LINK = 0o120000
_GITLINK = 0o160000


@contextmanager
def exported(repo: git.Repo, commit: str, directory: Path) -> Iterator[Path]:
    """A fresh directory under `directory` holding the tree of `commit`, removed afterwards.

    One per build, so nothing a build writes (a Packer manifest, say) is seen by the next.
    """
    dest = directory / f"{commit[:12]}-{uuid.uuid4().hex[:8]}"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        _write_tree(repo.commit(commit).tree, dest)
    except OSError as exc:
        shutil.rmtree(dest, ignore_errors=True)
        raise BuildError(
            f"Cannot export commit {commit[:12]} to {directory} for the build: {exc.strerror}. "
            "Check the free space and permissions of the state directory (AMI_BRIDGE_STATE_DIR)."
        ) from None
    log.debug("exported commit %s to %s", commit[:12], dest)
    try:
        yield dest
    finally:
        shutil.rmtree(dest, ignore_errors=True)


def _write_tree(tree: git.Tree, target: Path) -> None:
    target.mkdir(parents=True)
    for item in tree:
        path = target / item.name
        if item.type == "tree":
            _write_tree(item, path)
        elif item.mode == _GITLINK:
            # A submodule: its content is not in this repository's objects.
            path.mkdir()
        elif item.mode == _LINK:
            os.symlink(os.fsdecode(item.data_stream.read()), path)
        else:
            path.write_bytes(item.data_stream.read())
            if item.mode == _EXECUTABLE:
                path.chmod(0o755)
