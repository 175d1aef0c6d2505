"""`ami-bridge revoke` and `restore`: withdraw an image and every image built on it from use,
or lift that."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Mapping

from bridge.cli import render
from bridge.cli.workspace import context, options
from bridge.errors import EXIT_OK
from bridge.lifecycle.revoke import Revoker

log = logging.getLogger(__name__)


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    changes = Revoker(context(options(args, env), env)).revoke(
        args.definition,
        reason=args.reason,
        at=args.at,
        fingerprint=args.fingerprint,
        ami=args.ami,
    )
    rows: list[tuple[str, ...]] = [("DEFINITION", "BUILD", "AMIS", "REVOKED AT", "REASON")]
    for c in changes:
        reason = f"(revoked earlier) {c.revocation.reason}" if c.kept else c.revocation.reason
        rows.append(render.change_row(c.build, c.revocation.at, reason))
    render.table(rows, sys.stdout)
    revoked = [c for c in changes if not c.kept]
    log.info(
        "revoked %d image build(s) (%d descendant(s)) from %s",
        len(revoked),
        len(revoked) - 1,
        changes[0].revocation.at,
    )
    return EXIT_OK


def restore(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    changes = Revoker(context(options(args, env), env)).restore(
        args.definition, fingerprint=args.fingerprint, ami=args.ami
    )
    rows: list[tuple[str, ...]] = [("DEFINITION", "BUILD", "AMIS", "STATE")]
    for c in changes:
        state = (
            f"still revoked (by {c.revocation.by[:12]}: {c.revocation.reason})"
            if c.kept
            else "restored"
        )
        rows.append(render.change_row(c.build, state))
    render.table(rows, sys.stdout)
    return EXIT_OK
