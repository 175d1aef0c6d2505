"""The command line: `main` parses the arguments (parser.py), runs the command's module
(commands/), and is the one error handler: the exit statuses, messages and crash logs."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bridge.cli.parser import build as build_parser
from bridge.cli.parser import unrecognized
from bridge.cli.render import one_paragraph
from bridge.errors import (
    EXIT_ERROR,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_MISSING,
    EXIT_OK,
    EXIT_TERMINATED,
    BridgeError,
    NotFoundError,
)
from bridge.settings import state_dir

log = logging.getLogger("bridge")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `ami-bridge` command; returns the exit status."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        unrecognized(parser, args, extra)
    debug = args.debug or os.environ.get("AMI_BRIDGE_DEBUG") == "1"
    _logging(debug=debug, quiet=args.command == "external" or args.quiet)
    before = _stop_on_sigterm()
    try:
        return _run(args, debug)
    finally:
        if before is not None:  # a program that calls main() keeps its own handling after it
            signal.signal(signal.SIGTERM, before)


def _run(args: argparse.Namespace, debug: bool) -> int:
    """The command, and the one error handler: exit statuses and messages."""
    try:
        command = importlib.import_module(f"bridge.cli.commands.{args.command_module}")
        code: int = getattr(command, args.run)(args, os.environ)
        return code
    except NotFoundError as exc:
        print(f"ami-bridge: error: {_told(exc)}", file=sys.stderr)
        return EXIT_MISSING
    except BridgeError as exc:
        print(f"ami-bridge: error: {_told(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except Terminated:
        print(
            "ami-bridge: stopped by SIGTERM (what was running was cancelled and cleaned up)",
            file=sys.stderr,
        )
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print("ami-bridge: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`ami-bridge status | head -1`): nothing left to say, to anyone.
        # Python would report the pipe again when it flushes stdout at exit; point it elsewhere.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:
        if debug:
            traceback.print_exc()
        state = state_dir(os.environ)
        if isinstance(exc, OSError) and _inside(exc.filename, state):
            print(
                f"ami-bridge: error: Cannot use the state directory {state}: {exc.strerror} "
                f"({exc.filename}). Make it a writable directory with free space, or point "
                "AMI_BRIDGE_STATE_DIR at one.",
                file=sys.stderr,
            )
            return EXIT_ERROR
        crash = _crash_log(exc, os.environ)
        print(
            f"ami-bridge: internal error: {type(exc).__name__}: {exc}. This is a bug in "
            f"ami-bridge; the details are in {crash}. Run again with --debug to see them here.",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: a cancelled CI job, `kill`, a supervisor stopping the bridge."""


def _stop_on_sigterm() -> Any:
    """Make SIGTERM stop a run as Ctrl-C does (Packer cancels and cleans up, test commands are
    stopped, leases are released) instead of ending the process where it stands. A second
    SIGTERM during that cleanup ends it at once. The handling it replaced (None: none)."""
    if threading.current_thread() is not threading.main_thread():
        return None  # main() called from a thread (an embedding program): its signals are its own

    def stop(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        raise Terminated

    return signal.signal(signal.SIGTERM, stop)


def _told(exc: BaseException) -> str:
    """An error as one paragraph, the environment's secrets masked (it may quote Packer)."""
    from bridge.masking import mask, secrets_of

    return mask(one_paragraph(str(exc)), secrets_of(os.environ))


def _inside(filename: object, directory: Path) -> bool:
    """Whether `filename` (an OSError's) is `directory` or below it."""
    if not isinstance(filename, (str, os.PathLike)):
        return False
    path = os.path.abspath(os.fspath(filename))
    root = os.path.abspath(directory)
    return path == root or path.startswith(root + os.sep)


def _crash_log(exc: BaseException, env: Mapping[str, str]) -> Path:
    directory = state_dir(env) / "crashes"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"crash-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{os.getpid()}.log"
        path.write_text("".join(traceback.format_exception(exc)), encoding="utf-8")
        return path
    except OSError:
        return Path("(the crash log could not be written)")


def _logging(*, debug: bool, quiet: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("ami-bridge: %(message)s"))
    root = logging.getLogger("bridge")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO)
    root.propagate = False
