"""The `ami-bridge` argument parser: every command, its flags and their help."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from bridge.cli.graph import GRAPH_FORMATS
from bridge.settings import (
    DEFAULT_GC_CHANNEL_VERSIONS,
    DEFAULT_GC_KEEP,
    DEFAULT_GC_LAUNCHED_WITHIN_DAYS,
    DEFAULT_GC_MIN_AGE_HOURS,
    DEFAULT_GC_RETIRE_DAYS,
    DEFAULT_JOBS,
    DEFAULT_ON_REVOKED,
    ON_MISSING,
    ON_MISSING_DEFAULTS,
    ON_REVOKED,
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


class _Parser(argparse.ArgumentParser):
    """argparse, but bad usage exits 1 like every other bad input."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(1, f"ami-bridge: error: {message}. See `{self.prog} --help`.\n")


def build() -> argparse.ArgumentParser:
    """The parser; each command sets `command_module` (bridge.cli.commands.<module>) and `run` (the
    function in it)."""
    parser = _Parser(
        prog="ami-bridge",
        description="Resolve or build fingerprinted Packer AMI chains (Terraform external "
        "data source and CLI).",
    )
    parser.add_argument("--version", action=_Version, help="show the version and exit")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )

    shared = _shared()
    _image_commands(sub, shared)
    _lifecycle_commands(sub, shared)
    _channel_commands(sub, shared)
    return parser


@dataclass(frozen=True)
class _Shared:
    """The flag groups several commands share (argparse parent parsers)."""

    verbosity: argparse.ArgumentParser
    common: argparse.ArgumentParser
    output: argparse.ArgumentParser
    parallel: argparse.ArgumentParser
    revoked: argparse.ArgumentParser
    loud: argparse.ArgumentParser
    expect: argparse.ArgumentParser
    # DEF ... or --all (workspace.names reads them).
    chosen: argparse.ArgumentParser


def _shared() -> _Shared:
    # --debug/-q also after the subcommand; SUPPRESS keeps a top-level value from being reset.
    verbosity = _Parser(add_help=False)
    verbosity.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)
    verbosity.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS)
    common = _Parser(add_help=False, parents=[verbosity])
    common.add_argument("--repo", default=".", help="root of the Packer git repository (default .)")
    common.add_argument(
        "--catalog", help="catalog path relative to the repo (default ami-chain.json)"
    )
    common.add_argument("--commit", help="commit to fingerprint (default HEAD)")
    common.add_argument("--region", help="AWS region (default AWS_REGION, then the catalog)")
    common.add_argument("--tag-key", help="tag carrying the fingerprint (default SHA)")
    common.add_argument("--owners", help="comma-separated image owners (default self)")
    common.add_argument("--manifest-bucket", help="S3 bucket for build manifests")
    common.add_argument("--manifest-prefix", help="S3 key prefix for build manifests")
    common.add_argument(
        "--allow-dirty", action="store_true", help="fingerprint uncommitted changes"
    )
    output = _Parser(add_help=False)
    output.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parallel = _Parser(add_help=False)
    parallel.add_argument(
        "--jobs",
        "-j",
        metavar="N",
        help=f"build up to N definitions at once, each when its parent is ready (default "
        f"AMI_BRIDGE_JOBS, else the catalog's `jobs`, else {DEFAULT_JOBS})",
    )
    parallel.add_argument(
        "--fail-fast",
        action="store_true",
        help="on the first failure, cancel every running build (default: only the failed "
        "definition's descendants are skipped)",
    )
    revoked = _Parser(add_help=False)
    revoked.add_argument(
        "--on-revoked",
        choices=ON_REVOKED,
        help=f"what a revoked image does: {DEFAULT_ON_REVOKED} (the default) treats it as "
        "missing (built again with --on-missing build), fail fails naming the revocation",
    )
    loud = _Parser(add_help=False)
    loud.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="stream everything Packer shows, provisioner output included (default: its steps, "
        "errors and artifacts)",
    )
    expect = _Parser(add_help=False)
    expect.add_argument(
        "--expect-fingerprint",
        metavar="FP",
        help="refuse unless the one DEF has this fingerprint (the one a reviewed plan showed)",
    )

    chosen = _Parser(add_help=False)
    chosen.add_argument("definitions", nargs="*", metavar="DEF")
    chosen.add_argument("--all", action="store_true", help="every definition in the catalog")
    return _Shared(verbosity, common, output, parallel, revoked, loud, expect, chosen)


def _image_commands(sub: Any, shared: _Shared) -> None:
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


def _lifecycle_commands(sub: Any, shared: _Shared) -> None:
    """revoke, restore, gc: withdrawing and deleting images; graph: drawing the chain."""
    common = shared.common
    output = shared.output
    target = _Parser(add_help=False)
    target.add_argument("definition", metavar="DEF")
    which = target.add_mutually_exclusive_group()
    which.add_argument(
        "--fingerprint",
        metavar="FP",
        help="the image with this fingerprint (default: DEF's at the commit)",
    )
    which.add_argument("--ami", metavar="AMI", help="the image of this AMI (any regional copy)")

    p = sub.add_parser(
        "revoke",
        parents=[common, target],
        help="withdraw an image, and every image built on it, from use",
    )
    p.add_argument("--reason", metavar="TEXT", help="why (required); recorded on every image")
    p.add_argument(
        "--at",
        metavar="TIME",
        help="from when, ISO 8601 with a time zone (default now; later schedules it)",
    )
    p.set_defaults(command_module="revoke", run="run")

    p = sub.add_parser(
        "restore",
        parents=[common, target],
        help="lift a revocation, from the image and the images revoked because of it",
    )
    p.set_defaults(command_module="revoke", run="restore")

    p = sub.add_parser(
        "gc",
        parents=[common, output],
        help="delete old images nothing uses (a dry run unless --apply)",
        description="Delete the bridge's old images and their snapshots, in every region of "
        "the catalog, never one that is current, in a channel, the parent of a kept image, used "
        "by a launch template version, an instance or an Auto Scaling group, or young. Prints "
        "what it would do unless --apply.",
    )
    p.add_argument(
        "--keep",
        metavar="N",
        help=f"keep the newest N builds of each definition (default {DEFAULT_GC_KEEP})",
    )
    p.add_argument("--older-than", metavar="DAYS", help="delete only builds older than DAYS days")
    p.add_argument(
        "--min-age-hours",
        metavar="HOURS",
        help=f"never delete builds younger than HOURS hours (default {DEFAULT_GC_MIN_AGE_HOURS:g})",
    )
    p.add_argument(
        "--keep-channel-versions",
        metavar="K",
        help="keep the images of each channel parameter's K newest versions (default "
        f"{DEFAULT_GC_CHANNEL_VERSIONS})",
    )
    p.add_argument(
        "--retire-days",
        metavar="DAYS",
        help="a shared build leaves service in steps: deprecated, disabled DAYS days later, "
        f"deleted DAYS days after that (default {DEFAULT_GC_RETIRE_DAYS:g}; 0 deletes at once)",
    )
    p.add_argument(
        "--launched-within",
        metavar="DAYS",
        help="keep an image shared with other accounts that any account launched in the last "
        f"DAYS days, as EC2's lastLaunchedTime says (default {DEFAULT_GC_LAUNCHED_WITHIN_DAYS:g})",
    )
    p.add_argument(
        "--definition",
        action="append",
        metavar="NAME",
        help="delete only builds of NAME (repeatable; default every definition)",
    )
    p.add_argument(
        "--apply", action="store_true", help="delete (default: print what would be deleted)"
    )
    p.add_argument(
        "--archive-after",
        metavar="DAYS",
        help="archive the snapshots of builds kept only for rollback (--keep) once DAYS days "
        "old (default: the catalog's archive_after_days, or never)",
    )
    p.add_argument(
        "--unrecoverable",
        action="store_true",
        help="with --apply, delete even what no Recycle Bin retention rule keeps restorable "
        "(default: refuse, naming it)",
    )
    p.set_defaults(command_module="gc", run="run")

    p = sub.add_parser(
        "verify",
        parents=[common, output],
        help="check an image's signed provenance (and its ancestors') with the catalog's key",
    )
    p.add_argument("target", metavar="AMI|DEF", help="an AMI ID, or a definition at the commit")
    p.add_argument(
        "--public-key",
        metavar="FILE",
        help="verify with this public key (PEM or DER) instead of KMS (a path in the repository)",
    )
    p.set_defaults(command_module="verify", run="run")

    p = sub.add_parser(
        "unarchive",
        parents=[common, target],
        help="restore the snapshots gc archived of a build kept for rollback, so it resolves",
    )
    p.set_defaults(command_module="unarchive", run="run")

    p = sub.add_parser(
        "graph", parents=[common], help="the chain as Graphviz DOT or Mermaid, or drawn (SVG, PNG)"
    )
    p.add_argument(
        "--format",
        choices=GRAPH_FORMATS,
        default="dot",
        help="dot, mermaid (text), svg or png (drawn by Graphviz's dot; default dot)",
    )
    p.add_argument("--output", metavar="FILE", help="write to FILE (a PNG needs one on a terminal)")
    p.add_argument(
        "--status",
        action="store_true",
        help="look the images up (as `status` does) and mark revoked and expired definitions",
    )
    p.set_defaults(command_module="graph", run="run")


def _channel_commands(sub: Any, shared: _Shared) -> None:
    """promote, rollback, channel history, and the sandbox."""
    verbosity = shared.verbosity
    common = shared.common
    output = shared.output
    p = sub.add_parser(
        "promote",
        parents=[common, output],
        help="point a channel (an SSM parameter per region) at a build of a definition",
    )
    p.add_argument("definition", metavar="DEF")
    p.add_argument("channel", metavar="CHANNEL", help="e.g. staging, prod")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--fingerprint", metavar="FP", help="the newest image with this fingerprint")
    which.add_argument("--ami", help="the build of this image (any of its regional copies)")
    which.add_argument(
        "--from",
        dest="from_channel",
        metavar="CHANNEL",
        help="what this channel holds (a gate: promote staging's image to prod)",
    )
    p.add_argument(
        "--require",
        action="append",
        metavar="CHECK",
        help="promote only a build that passed the test CHECK too (repeatable; the definition's "
        "own tests are always required)",
    )
    p.set_defaults(command_module="channels", run="promote")

    p = sub.add_parser(
        "rollback",
        parents=[common, output],
        help="point a channel back at the build an earlier version held (a new version)",
    )
    p.add_argument("definition", metavar="DEF")
    p.add_argument("channel", metavar="CHANNEL")
    p.add_argument(
        "--to", type=int, metavar="VERSION", help="the version to go back to (default: previous)"
    )
    p.set_defaults(command_module="channels", run="rollback")

    p = sub.add_parser("channel", help="promotion channels")
    channel_sub = p.add_subparsers(
        dest="channel_command", required=True, metavar="COMMAND", parser_class=_Parser
    )
    q = channel_sub.add_parser(
        "history", parents=[common, output], help="every version of a channel, oldest first"
    )
    q.add_argument("definition", metavar="DEF")
    q.add_argument("channel", metavar="CHANNEL")
    q.set_defaults(command_module="channels", run="history")

    p = sub.add_parser(
        "sandbox", parents=[verbosity], help="run the local AWS sandbox in the foreground"
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    p.set_defaults(command_module="sandbox", run="run")
