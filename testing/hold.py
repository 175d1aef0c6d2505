"""Holding a build where a test wants it, whatever the machine's load: a provisioner that waits
while a `hold` file is in the state directory of the bridge running it (Packer inherits its
environment), and waiting for events instead of for time."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

WAIT = 'while [ -e "$AMI_BRIDGE_STATE_DIR/hold" ]; do sleep 0.1; done'


def holdable(repo: Any, template: str = "base/base.json") -> None:
    """Make the JSON template's first provisioner wait while its bridge's hold file exists
    (written, not committed)."""
    data = json.loads(repo.path.joinpath(template).read_text())
    data["provisioners"].insert(0, {"type": "shell-local", "inline": [WAIT]})
    repo.write(template, json.dumps(data, indent=2))


def hold(state_dir: Path) -> Path:
    """Hold the builds of the bridge whose state directory is `state_dir`; unlink to let go."""
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "hold").touch()
    return state_dir / "hold"


def wait_for(predicate: Callable[[], bool], timeout: float = 120.0) -> None:
    """Poll until `predicate` holds (an AssertionError after `timeout` seconds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("condition not reached")


def provisioning(state_dir: Path) -> bool:
    """The build's log shows Packer in its first (held) provisioner."""
    return any(
        "Running local shell script" in log.read_text() for log in state_dir.glob("logs/*.log")
    )
