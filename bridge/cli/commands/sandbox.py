"""`ami-bridge sandbox`: the local AWS sandbox in the foreground."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping

from bridge.errors import EXIT_OK


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from bridge import sandbox

    sandbox.serve(args.host, args.port, announce=sys.stdout)
    return EXIT_OK
