"""The lifecycle commands' part of the argument parser (parser.py): revoke, restore, gc,
unarchive, verify, report and the channel commands, their flags and their help."""

from __future__ import annotations

from typing import Any

from bridge.cli.flags import Parser, Shared
from bridge.cli.graph import GRAPH_FORMATS
from bridge.settings import (
    DEFAULT_GC_CHANNEL_VERSIONS,
    DEFAULT_GC_KEEP,
    DEFAULT_GC_LAUNCHED_WITHIN_DAYS,
    DEFAULT_GC_MIN_AGE_HOURS,
    DEFAULT_GC_RETIRE_DAYS,
)


def lifecycle_commands(sub: Any, shared: Shared) -> None:
    """revoke, restore, gc: withdrawing and deleting images; graph: drawing the chain."""
    common = shared.common
    output = shared.output
    target = Parser(add_help=False)
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
    pinned = p.add_mutually_exclusive_group()
    pinned.add_argument(
        "--public-key",
        metavar="FILE",
        help="verify with this public key (PEM or DER) instead of KMS (a file on this machine)",
    )
    pinned.add_argument(
        "--key",
        metavar="KEY",
        help="verify with this KMS key (ID, ARN or alias), whatever the catalog names: the trust "
        "root pinned, so a commit that switches provenance.key cannot move it",
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


def channel_commands(sub: Any, shared: Shared) -> None:
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
        dest="channel_command", required=True, metavar="COMMAND", parser_class=Parser
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
