"""`ami-bridge promote`, `rollback` and `channel history`: promotion channels (an SSM parameter
per region pointing at a build)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping

from bridge.aws import parameters
from bridge.cli import render
from bridge.cli.workspace import context, options, resolver
from bridge.errors import EXIT_OK
from bridge.lifecycle import channels
from bridge.model import Build


def promote(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    parameters.check_channel(args.channel)
    if args.from_channel is not None:
        parameters.check_channel(args.from_channel)
    ctx = context(options(args, env), env)
    the = resolver(ctx, env, echo=None if args.quiet else sys.stderr)
    d = ctx.catalog.get(args.definition)
    build = channels.chosen_build(
        ctx,
        d.name,
        the.surveyor.regions(d),
        lambda: the.status([d.name])[d.name],
        fingerprint=args.fingerprint,
        ami=args.ami,
        from_channel=args.from_channel,
        require=args.require or (),
    )
    done = parameters.promote(ctx.clients, ctx.catalog.channel_prefix, build, args.channel)
    _report(args, ctx.catalog.channel_prefix, build, done)
    return EXIT_OK


def rollback(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    parameters.check_channel(args.channel)
    ctx = context(options(args, env), env)
    the = resolver(ctx, env, echo=None if args.quiet else sys.stderr)
    d = ctx.catalog.get(args.definition)
    build, done = channels.rollback(ctx, d.name, args.channel, args.to, the.surveyor.regions(d))
    _report(args, ctx.catalog.channel_prefix, build, done)
    return EXIT_OK


def history(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    parameters.check_channel(args.channel)
    ctx = context(options(args, env), env)
    the = resolver(ctx, env, echo=None if args.quiet else sys.stderr)
    d = ctx.catalog.get(args.definition)
    region = the.surveyor.regions(d)[0]
    versions = parameters.history(
        ctx.clients, ctx.catalog.channel_prefix, d.name, args.channel, region
    )
    render.channel_history(versions, region, sys.stdout, as_json=args.json)
    return EXIT_OK


def _report(
    args: argparse.Namespace, prefix: str, build: Build, done: parameters.Promotion
) -> None:
    name = parameters.parameter_name(prefix, build.definition, args.channel)
    render.channel_report(name, args.channel, build, done, sys.stdout, as_json=args.json)
