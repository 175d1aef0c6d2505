"""`ami-bridge` as a script: `python ami_bridge.py ARGS` runs what `python -m bridge ARGS` runs.

The warm server (warm.py) imports it once, with `warm_up`, and forks one per start, as it does
the stand-in providers; testing.bridge starts the bridge this way while a test session runs one.
It lives here, not in bridge/ or testing/, because a script's directory leads sys.path: there,
their git.py would hide GitPython.
"""

from __future__ import annotations

import importlib
import pkgutil

import bridge
from bridge.cli import main


def warm_up() -> None:
    """Import what a command imports when it runs: every module of the bridge (not the sandbox
    it serves, nor its __main__) and the libraries its functions import."""
    for module in pkgutil.walk_packages(bridge.__path__, "bridge."):
        if module.name == "bridge.__main__" or module.name.startswith("bridge.sandbox"):
            continue
        importlib.import_module(module.name)
    for name in ("botocore.session", "botocore.client", "botocore.exceptions", "git", "hcl2"):
        importlib.import_module(name)


if __name__ == "__main__":
    raise SystemExit(main())
