"""The package as users get it: a wheel built from this repository, installed into a fresh
virtualenv (with its dependencies from the package index), works on its own."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from testing import ROOT


@pytest.mark.install
def test_the_wheel_installs_into_a_fresh_venv_and_resolves(sandbox_env, repo, tmp_path):
    # Built from a copy: a build writes its metadata into the source tree.
    source = tmp_path / "source"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "*.egg-info", "build", "dist", "__pycache__", ".terraform*"
        ),
    )
    # Nothing of this checkout or its virtualenv may leak into the fresh one.
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    dist = tmp_path / "dist"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(source)],
        capture_output=True,
        text=True,
        env=clean,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = dist.glob("ami_chain_bridge-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = archive.read(next(n for n in names if n.endswith("/METADATA"))).decode()
    for data in ("schemas/catalog.schema.json", "schemas/query.schema.json", "py.typed"):
        assert f"bridge/{data}" in names, data
    assert (
        "License-Expression: Apache-2.0" in metadata and "Classifier: Typing :: Typed" in metadata
    )
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=clean)
    installed = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", str(wheel)],
        capture_output=True,
        text=True,
        env=clean,
        cwd=tmp_path,
    )
    assert installed.returncode == 0, installed.stderr
    bridge = str(venv / "bin" / "ami-bridge")
    version = subprocess.run([bridge, "--version"], capture_output=True, text=True, env=clean)
    assert version.returncode == 0 and version.stdout.strip() == "ami-bridge 0.1.0"
    # Run from elsewhere, so nothing of this checkout is on the path.
    env = {k: v for k, v in sandbox_env.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    looked = subprocess.run(
        [bridge, "resolve", "--all", "--repo", str(repo.path), "--on-missing", "report", "--json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert looked.returncode == 3, looked.stderr  # nothing built yet: reported as missing
    result = json.loads(looked.stdout)
    assert result["base"]["state"] == "missing" and result["base"]["fingerprint"] == (
        repo.tree_sha("base")
    )
    assert Path(bridge).resolve().is_relative_to(venv.resolve())
