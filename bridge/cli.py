"""The command line: argument parsing, dispatch, and the one error handler."""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import tempfile
import traceback
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, TextIO

from bridge import __version__
from bridge.errors import BridgeError, QueryError

if TYPE_CHECKING:
    from bridge.chain import Chain, ResolvedAmi
    from bridge.protocol import Query

log = logging.getLogger("bridge")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `ami-bridge` command; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    debug = args.debug or os.environ.get("AMI_BRIDGE_DEBUG") == "1"
    _logging(debug=debug, quiet=args.command == "external" or args.quiet)
    try:
        code: int = args.func(args, os.environ)
        return code
    except BridgeError as exc:
        print(f"ami-bridge: error: {_one_paragraph(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("ami-bridge: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if debug:
            traceback.print_exc()
        crash = _crash_log(exc, os.environ)
        print(
            f"ami-bridge: internal error: {type(exc).__name__}: {exc}. This is a bug in "
            f"ami-bridge; the details are in {crash}. Run again with --debug to see them here.",
            file=sys.stderr,
        )
        return 1


# -- commands -------------------------------------------------------------------------------------


def _external(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from bridge import protocol

    raw = sys.stdin.buffer.read(protocol.MAX_QUERY_BYTES + 1)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise QueryError(
            f"The query on stdin is not UTF-8 text (byte {exc.start}). Pass a JSON object of "
            'strings, e.g. {"definition": "base"}.'
        ) from None
    query = protocol.parse_query(text, cache_dir=_state_dir(env))
    chain = _chain_for_query(query, env, echo=None)
    resolved = chain.resolve([query.definition], on_missing=query.on_missing)[query.definition]
    sys.stdout.write(protocol.encode_result(protocol.result(resolved)))
    return 0


def _resolve(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    chain = _chain_for_args(args, env)
    names = _names(args, chain)
    results = chain.resolve(names, on_missing=args.on_missing)
    return _report(args, {n: r for n, r in results.items() if n in names}, sys.stdout)


def _build(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    chain = _chain_for_args(args, env)
    names = _names(args, chain)
    results = chain.resolve(names, on_missing="build", force=names if args.force else ())
    return _report(args, {n: r for n, r in results.items() if n in names}, sys.stdout)


def _status(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    chain = _chain_for_args(args, env)
    names = [d.name for d in chain.catalog.all()]
    results = chain.resolve(names, on_missing="report")
    _report(args, results, sys.stdout)
    return 0


def _manifest(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    chain = _chain_for_args(args, env)
    manifest = chain.manifest(args.definition)
    json.dump(manifest.to_dict(), sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
    return 0


def _graph(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from bridge.catalog import load_catalog
    from bridge.graph import render

    print(render(load_catalog(_repo_root(args.repo), args.catalog), args.format))
    return 0


def _sandbox(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from bridge import sandbox

    sandbox.serve(args.host, args.port, announce=sys.stdout)
    return 0


# -- wiring ---------------------------------------------------------------------------------------


def _chain_for_args(args: argparse.Namespace, env: Mapping[str, str]) -> Chain:
    from bridge.protocol import parse_query

    # Flags go through the same validation as an external query, so both fail alike.
    query = {
        "definition": "x",
        "repo": args.repo,
        "catalog": args.catalog or "",
        "commit": args.commit or "",
        "region": args.region or "",
        "tag_key": args.tag_key or "",
        "owners": args.owners or "",
        "manifest_bucket": args.manifest_bucket or "",
        "manifest_prefix": args.manifest_prefix or "",
        "allow_dirty": "true" if args.allow_dirty else "",
    }
    try:
        parsed = parse_query(json.dumps(query), cache_dir=_state_dir(env))
    except QueryError as exc:
        raise QueryError(
            str(exc).replace("Query key", "Option").replace("query", "option")
        ) from None
    return _chain_for_query(parsed, env, echo=None if args.quiet else sys.stderr)


def _chain_for_query(query: Query, env: Mapping[str, str], echo: TextIO | None) -> Chain:
    from bridge.aws import AwsClients
    from bridge.catalog import DEFAULT_OWNERS, DEFAULT_TAG_KEY, load_catalog
    from bridge.chain import Chain, Settings
    from bridge.fingerprint import open_repo
    from bridge.packer import PackerRunner

    state = _state_dir(env)
    root = _repo_root(query.repo)
    cat = load_catalog(root, query.catalog, cache_dir=state)
    region = (
        query.region
        or env.get("AWS_REGION")
        or env.get("AWS_DEFAULT_REGION")
        or (cat.regions[0] if cat.regions else None)
    )
    if not region:
        raise QueryError(
            "No AWS region is set. Pass `region` (query) or --region, set AWS_REGION, or list "
            "`regions` in the catalog."
        )
    bucket = query.manifest_bucket or cat.manifest_bucket
    prefix = query.manifest_prefix if query.manifest_prefix is not None else cat.manifest_prefix
    if not bucket:
        log.info("no manifest bucket is configured; manifests will not be published")
    settings = Settings(
        region=region,
        tag_key=query.tag_key or cat.tag_key or DEFAULT_TAG_KEY,
        owners=query.owners or cat.owners or DEFAULT_OWNERS,
        manifest_bucket=bucket,
        manifest_prefix=prefix,
        commit=query.commit,
        allow_dirty=query.allow_dirty,
        # Packer 1.6 ignores AWS_ENDPOINT_URL*, so the endpoint goes to templates as a variable.
        ec2_endpoint=env.get("AMI_BRIDGE_PACKER_EC2_ENDPOINT")
        or env.get("AWS_ENDPOINT_URL_EC2")
        or env.get("AWS_ENDPOINT_URL"),
        build_url=build_url(env),
        log_dir=state / "logs",
        lock_dir=state / "locks",
        lease_bucket=cat.lease_bucket or bucket,
        lease_prefix=cat.lease_prefix if cat.lease_prefix is not None else (prefix or ""),
        lease_ttl=cat.lease_ttl,
        packer_manifest_dir=Path(env["AMI_BRIDGE_PACKER_MANIFESTS"])
        if env.get("AMI_BRIDGE_PACKER_MANIFESTS")
        else None,
    )
    packer = env.get("AMI_BRIDGE_PACKER", "packer")
    return Chain(
        repo=open_repo(root),
        catalog=cat,
        clients=AwsClients(),
        settings=settings,
        packer=lambda: PackerRunner(
            packer, env=dict(env), echo=echo, cache=state / "packer-version.json"
        ),
    )


def build_url(env: Mapping[str, str]) -> str:
    """The URL of the CI job running us (CircleCI, GitHub Actions, GitLab), or ""."""
    if env.get("CIRCLE_BUILD_URL"):
        return env["CIRCLE_BUILD_URL"]
    if env.get("GITHUB_RUN_ID") and env.get("GITHUB_REPOSITORY"):
        server = env.get("GITHUB_SERVER_URL", "https://github.com")
        return f"{server}/{env['GITHUB_REPOSITORY']}/actions/runs/{env['GITHUB_RUN_ID']}"
    return env.get("CI_JOB_URL", "")


def _repo_root(repo: str) -> Path:
    if "\x00" in repo:
        raise QueryError("The repository path contains a NUL byte; pass a plain directory path.")
    return Path(os.path.abspath(repo))


def _names(args: argparse.Namespace, chain: Chain) -> list[str]:
    if args.all:
        return [d.name for d in chain.catalog.all()]
    if not args.definitions:
        raise QueryError("Name at least one definition, or pass --all.")
    for name in args.definitions:
        chain.catalog.get(name)
    return list(dict.fromkeys(args.definitions))


def _report(args: argparse.Namespace, results: Mapping[str, ResolvedAmi], out: TextIO) -> int:
    from bridge.protocol import result

    if args.json:
        json.dump({n: result(r) for n, r in results.items()}, out, indent=2, sort_keys=True)
        out.write("\n")
    else:
        rows = [("DEFINITION", "STATE", "AMI", "FINGERPRINT", "PARENT")]
        for r in results.values():
            parent = (
                f"{r.parent_definition} ({r.parent_ami_id or '-'})" if r.parent_definition else "-"
            )
            rows.append((r.definition, r.state, r.ami_id or "-", r.fingerprint[:12], parent))
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            out.write(
                "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n"
            )
    return 0 if all(r.found for r in results.values()) else 1


def _one_paragraph(text: str) -> str:
    """Control characters from input (a path with a newline) are shown escaped, not acted on."""
    return re.sub(r"[\x00-\x1f\x7f]", lambda m: repr(m.group())[1:-1], text)


def _state_dir(env: Mapping[str, str]) -> Path:
    if env.get("AMI_BRIDGE_STATE_DIR"):
        return Path(env["AMI_BRIDGE_STATE_DIR"])
    base = env.get("XDG_STATE_HOME") or os.path.join(
        env.get("HOME") or tempfile.gettempdir(), ".local", "state"
    )
    return Path(base) / "ami-bridge"


def _crash_log(exc: BaseException, env: Mapping[str, str]) -> Path:
    directory = _state_dir(env) / "crashes"
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


class _Parser(argparse.ArgumentParser):
    """argparse, but bad usage exits 1 like every other bad input."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(1, f"ami-bridge: error: {message}. See `{self.prog} --help`.\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="ami-bridge",
        description="Resolve or build fingerprinted Packer AMI chains (Terraform external "
        "data source and CLI).",
    )
    parser.add_argument("--version", action="version", version=f"ami-bridge {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )

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

    p = sub.add_parser(
        "external", help="Terraform external data source: query on stdin, result on stdout"
    )
    p.set_defaults(func=_external)

    p = sub.add_parser("resolve", parents=[common, output], help="find the AMIs of definitions")
    p.add_argument("definitions", nargs="*", metavar="DEF")
    p.add_argument("--all", action="store_true", help="every definition in the catalog")
    p.add_argument("--on-missing", choices=["fail", "report", "build"], default="fail")
    p.set_defaults(func=_resolve)

    p = sub.add_parser("build", parents=[common, output], help="build missing AMIs, parents first")
    p.add_argument("definitions", nargs="*", metavar="DEF")
    p.add_argument("--all", action="store_true", help="every definition in the catalog")
    p.add_argument(
        "--force", action="store_true", help="rebuild the named definitions even if present"
    )
    p.set_defaults(func=_build)

    p = sub.add_parser("status", parents=[common, output], help="table of every definition's image")
    p.set_defaults(func=_status)

    p = sub.add_parser(
        "manifest", parents=[common], help="print the build manifest of a definition's image"
    )
    p.add_argument("definition", metavar="DEF")
    p.set_defaults(func=_manifest)

    p = sub.add_parser("graph", parents=[common], help="the chain as Graphviz DOT or Mermaid")
    p.add_argument("--format", choices=["dot", "mermaid"], default="dot")
    p.set_defaults(func=_graph)

    p = sub.add_parser(
        "sandbox", parents=[verbosity], help="run the local AWS sandbox in the foreground"
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    p.set_defaults(func=_sandbox)
    return parser
