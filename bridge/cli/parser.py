"""The `ami-bridge` argument parser: every command, its flags and their help."""

from __future__ import annotations

import argparse
import functools
from collections.abc import Sequence
from typing import Any, NoReturn

from bridge.cli.flags import Parser, Shared, shared_flags
from bridge.cli.lifecycle_parser import channel_commands, lifecycle_commands
from bridge.settings import (
    ON_MISSING,
    ON_MISSING_DEFAULTS,
)


class _Version(argparse.Action):
    """--version, read from the installed package's metadata only when asked for."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, help=str(kwargs.get("help", "")))

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> NoReturn:
        from importlib.metadata import version

        print(f"ami-bridge {version('ami-chain-bridge')}")
        parser.exit(0)


def query_keys() -> str:
    """The query's keys and what each means (schemas/query.schema.json), for `external --help`."""
    import textwrap

    from bridge.validation import load_schema

    lines = ["query keys:"]
    for key, spec in load_schema("query.schema.json")["properties"].items():
        text = textwrap.fill(
            spec.get("description", ""),
            width=78,
            initial_indent=" " * 24,
            subsequent_indent=" " * 24,
        )
        lines.append(f"  {key:<21} {text.lstrip()}" if len(key) < 22 else f"  {key}\n{text}")
    return "\n".join(lines)


def unrecognized(
    parser: argparse.ArgumentParser, args: argparse.Namespace, extra: Sequence[str]
) -> NoReturn:
    """Unknown arguments, reported by the (sub)command they were given to, with the closest
    option it has."""
    import difflib

    command = parser
    for attr in ("command", "channel_command"):
        subs = [a for a in command._actions if isinstance(a, argparse._SubParsersAction)]
        name = getattr(args, attr, None)
        if not subs or name not in subs[0].choices:
            break
        command = subs[0].choices[name]
    options = [s for a in command._actions for s in a.option_strings]
    hints = []
    for arg in extra:
        if arg.startswith("-"):
            close = difflib.get_close_matches(arg.split("=", 1)[0], options, n=1, cutoff=0.6)
            if close:
                hints.append(f"{arg.split('=', 1)[0]}: did you mean {close[0]}?")
    hint = f" ({'; '.join(hints)})" if hints else ""
    command.error(f"unrecognized arguments: {' '.join(extra)}{hint}")


@functools.cache
def build() -> argparse.ArgumentParser:
    """The parser; each command sets `command_module` (bridge.cli.commands.<module>) and `run` (the
    function in it). Built once per process (it depends on nothing but this code, and parsing
    leaves it unchanged): a program that runs `main` many times, the test suite among them, pays
    for its 17 commands once."""
    parser = Parser(
        prog="ami-bridge",
        description="Resolve or build fingerprinted Packer AMI chains (Terraform external "
        "data source and CLI).",
    )
    parser.add_argument("--version", action=_Version, help="show the version and exit")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=Parser
    )

    shared = shared_flags()
    _image_commands(sub, shared)
    lifecycle_commands(sub, shared)
    channel_commands(sub, shared)
    return parser


def _image_commands(sub: Any, shared: Shared) -> None:
    """external, resolve, build, status, check, manifest: finding and building images."""
    verbosity = shared.verbosity
    common = shared.common
    output = shared.output
    parallel = shared.parallel
    revoked = shared.revoked
    loud = shared.loud
    expect = shared.expect
    chosen = shared.chosen
    p = sub.add_parser(
        "external",
        help="Terraform external data source: query on stdin, result on stdout",
        description="Reads one JSON object of strings on stdin (Terraform's external data "
        "source query) and writes one on stdout. Default on_missing: "
        f"{ON_MISSING_DEFAULTS['external']}.",
        epilog=query_keys(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--module",
        action="store_true",
        help="name options in messages as the ami_chain module's variables (repo_dir for repo)",
    )
    p.set_defaults(command_module="external", run="run")

    p = sub.add_parser(
        "resolve",
        parents=[common, chosen, output, expect, parallel, revoked, loud],
        help="find the AMIs of definitions",
    )
    p.add_argument(
        "--on-missing",
        choices=ON_MISSING,
        help=f"what a missing image does (default {ON_MISSING_DEFAULTS['resolve']}; exit status 3)",
    )
    p.set_defaults(command_module="resolve", run="run")

    p = sub.add_parser(
        "build",
        parents=[common, chosen, output, expect, parallel, revoked, loud],
        help="build missing AMIs, parents first",
    )
    p.add_argument(
        "--force", action="store_true", help="rebuild the named definitions even if present"
    )
    p.add_argument(
        "--local-exec",
        metavar="COMMAND",
        help="the text `ami-bridge build DEF`, as the ami_chain module's local-exec provisioner "
        "passes it (Terraform shows it when the build fails): builds DEF",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print what each definition needs (found, missing, outdated, pending); build nothing",
    )
    p.set_defaults(command_module="build", run="run")

    p = sub.add_parser(
        "matrix",
        parents=[common, chosen],
        help="the builds a run needs as CI matrix waves (a job per wave, each after the last)",
    )
    p.add_argument(
        "--wave",
        type=int,
        metavar="N",
        help="only wave N's matrix (0: the roots; empty past the last)",
    )
    p.add_argument(
        "--format",
        choices=("github", "circleci"),
        default="github",
        help='github: {"include": [{"definition": ...}]} (strategy.matrix); circleci: '
        '{"definition": [...]} (matrix parameters)',
    )
    p.set_defaults(command_module="matrix", run="run")

    p = sub.add_parser(
        "report",
        parents=[common],
        help="the catalog at a glance: one self-contained HTML file (graph, states, images)",
    )
    p.add_argument("--html", required=True, metavar="DIR", help="write DIR/index.html")
    p.set_defaults(command_module="report", run="run")

    p = sub.add_parser("status", parents=[common, output], help="table of every definition's image")
    p.set_defaults(command_module="status", run="run")

    p = sub.add_parser(
        "check",
        parents=[verbosity],
        help="validate the catalog and fingerprint every definition (git only, no AWS; for "
        "pre-commit)",
    )
    p.add_argument("--repo", default=".", help="root of the Packer git repository (default .)")
    p.add_argument("--catalog", help="catalog path relative to the repo (default ami-chain.json)")
    p.add_argument(
        "files", nargs="*", metavar="FILE", help="ignored (pre-commit passes the changed files)"
    )
    p.set_defaults(command_module="check", run="run")

    p = sub.add_parser(
        "inputs",
        parents=[shared.verbosity, shared.output],
        help="what a definition's fingerprint is made of, and why each input is there (git "
        "only, no AWS)",
    )
    p.add_argument("definition", metavar="DEF")
    p.add_argument("--repo", default=".", help="root of the Packer git repository (default .)")
    p.add_argument("--catalog", help="catalog path relative to the repo (default ami-chain.json)")
    p.add_argument("--commit", help="commit to fingerprint (default HEAD)")
    p.add_argument("--allow-dirty", action="store_true", help="fingerprint uncommitted changes")
    p.set_defaults(command_module="inputs", run="run")

    p = sub.add_parser(
        "manifest", parents=[common], help="print the build manifest of a definition's image"
    )
    p.add_argument("definition", metavar="DEF")
    p.set_defaults(command_module="manifest", run="run")
