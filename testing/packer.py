"""A stand-in `packer` for `packer init`, which Packer 1.6.6 (the one the tests run) lacks.

The stand-in records each call (argv, working directory, PACKER_PLUGIN_PATH) as a JSON line,
answers `init` itself, installing nothing (it succeeds, or fails as Packer does when it cannot get
a plugin), and hands every other command to the real Packer. Packer 1.6.6 refuses a
`required_plugins` block ("Blocks of type "required_plugins" are not expected here"), so a
`build` of an HCL2 directory whose `packer` block is in a file of its own runs the real Packer on
a copy of the directory without that file; the exported tree is left as the bridge wrote it, and
a file that holds anything besides the `packer` block is refused rather than edited.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

# What Packer 1.7+ prints to stderr when it cannot install a plugin (command/init.go), exit 1.
INIT_FAILURE = (
    'Failed getting the "github.com/hashicorp/amazon" plugin:\n'
    "1 error occurred:\n"
    '\t* Get "https://api.github.com/repos/hashicorp/packer-plugin-amazon/git/matching-refs/'
    'tags": dial tcp: lookup api.github.com: no such host\n'
)

_SCRIPT = """\
#!{python}
import json, os, shutil, sys, tempfile
import hcl2

RECORD, REAL, INIT, FAILURE = {record!r}, {real!r}, {init!r}, {failure!r}
args = sys.argv[1:]
with open(RECORD, "a") as f:
    call = {{"argv": args, "cwd": os.getcwd(), "plugin_path": os.environ.get("PACKER_PLUGIN_PATH")}}
    f.write(json.dumps(call) + "\\n")
if args[:1] == ["init"]:
    if not os.path.exists(args[-1]):
        sys.exit(f"Error: {{args[-1]}} does not exist")
    if INIT == "fail":
        sys.stderr.write(FAILURE)
        sys.exit(1)
    sys.exit(0)
if args[:1] == ["build"] and os.path.isdir(args[-1]):
    kept = []
    for name in sorted(os.listdir(args[-1])):
        if not name.endswith(".pkr.hcl"):
            continue
        path = os.path.join(args[-1], name)
        with open(path) as f:
            blocks = set(hcl2.load(f))
        if "packer" not in blocks:
            kept.append(path)
        elif blocks != {{"packer"}}:
            sys.exit(f"stand-in packer: {{path}} holds more than its packer block")
    copy = tempfile.mkdtemp(prefix="template-", dir=os.path.dirname(RECORD))
    for path in kept:
        shutil.copy(path, copy)
    args[-1] = copy
os.execv(REAL, [REAL, *args])
"""


@dataclass(frozen=True)
class Call:
    """One run of the stand-in."""

    argv: list[str]
    cwd: str
    plugin_path: str | None

    @property
    def template(self) -> str:
        """The template a `build` was given (its last argument; the bridge passes it by its
        absolute path), relative to the directory Packer ran in."""
        return os.path.relpath(self.argv[-1], self.cwd)


def standin(directory: Path, real: str, *, init: Literal["install", "fail"]) -> Path:
    """Write the stand-in `packer` into `directory` (a directory of its own, which can go first
    on PATH); `real` is the real Packer it hands other commands to."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "packer"
    path.write_text(
        _SCRIPT.format(
            python=sys.executable,
            record=str(directory / "calls.jsonl"),
            real=real,
            init=init,
            failure=INIT_FAILURE,
        )
    )
    path.chmod(0o755)
    return path


def calls(standin: Path) -> list[Call]:
    """The calls the stand-in at `standin` recorded, in order."""
    record = standin.parent / "calls.jsonl"
    if not record.exists():
        return []
    return [Call(**json.loads(line)) for line in record.read_text().splitlines()]
