"""What the argument parser's commands share: the parser class (bad usage exits 1), and the
flag groups several commands take (argparse parent parsers)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import NoReturn

from bridge.settings import DEFAULT_JOBS, DEFAULT_ON_REVOKED, ON_REVOKED


class Parser(argparse.ArgumentParser):
    """argparse, but bad usage exits 1 like every other bad input."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(1, f"ami-bridge: error: {message}. See `{self.prog} --help`.\n")


@dataclass(frozen=True)
class Shared:
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


def shared_flags() -> Shared:
    # --debug/-q also after the subcommand; SUPPRESS keeps a top-level value from being reset.
    verbosity = Parser(add_help=False)
    verbosity.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)
    verbosity.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS)
    common = Parser(add_help=False, parents=[verbosity])
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
    output = Parser(add_help=False)
    output.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parallel = Parser(add_help=False)
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
    revoked = Parser(add_help=False)
    revoked.add_argument(
        "--on-revoked",
        choices=ON_REVOKED,
        help=f"what a revoked image does: {DEFAULT_ON_REVOKED} (the default) treats it as "
        "missing (built again with --on-missing build), fail fails naming the revocation",
    )
    loud = Parser(add_help=False)
    loud.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="stream everything Packer shows, provisioner output included (default: its steps, "
        "errors and artifacts)",
    )
    expect = Parser(add_help=False)
    expect.add_argument(
        "--expect-fingerprint",
        metavar="FP",
        help="refuse unless the one DEF has this fingerprint (the one a reviewed plan showed)",
    )

    chosen = Parser(add_help=False)
    chosen.add_argument("definitions", nargs="*", metavar="DEF")
    chosen.add_argument("--all", action="store_true", help="every definition in the catalog")
    return Shared(verbosity, common, output, parallel, revoked, loud, expect, chosen)
