"""Real git repositories in temporary directories."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from testing import EXAMPLE_REPO


class GitRepo:
    """A real git repository in a temporary directory."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def git(self, *args: str) -> str:
        return subprocess.run(
            ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid", *args],
            cwd=self.path,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()

    def write(self, rel: str, text: str) -> Path:
        path = self.path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def commit(self, message: str = "change") -> str:
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD")

    def tree_sha(self, rel: str) -> str:
        """What the seed pipeline computes: `git ls-tree HEAD <dir> | cut -d" " -f3 | cut -f1`."""
        line = self.git("ls-tree", "HEAD", rel)
        return line.split(" ")[2].split("\t")[0]

    def catalog(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.path / "ami-chain.json").read_text())
        return data

    def set_catalog(self, data: Mapping[str, Any]) -> None:
        self.write("ami-chain.json", json.dumps(data, indent=2))


def make_repo(path: Path, source: Path = EXAMPLE_REPO, *, track_source: bool = False) -> GitRepo:
    """A new repository at `path` holding a copy of `source`, committed.

    Its catalog does not track the base's upstream image (`track_source: false`) unless asked:
    the root then has the seed pipeline's identity, which most tests compare with, and needs no
    EC2 to fingerprint.
    """
    shutil.copytree(source, path)
    repo = GitRepo(path)
    if not track_source and (path / "ami-chain.json").exists():
        repo.set_catalog({**repo.catalog(), "track_source": False})
    repo.git("init", "-q", "-b", "main")
    repo.commit("initial")
    return repo
