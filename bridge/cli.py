"""The command line: argument parsing, dispatch, and the one error handler."""

from __future__ import annotations

import argparse
import json
import logging
import os
import posixpath
import re
import sys
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, TextIO

from bridge.errors import BridgeError, NotFoundError, QueryError
from bridge.graph import GRAPH_FORMATS
from bridge.settings import (
    DEFAULT_GC_CHANNEL_VERSIONS,
    DEFAULT_GC_KEEP,
    DEFAULT_GC_MIN_AGE_HOURS,
    ON_MISSING,
    OnMissing,
    Options,
    Spell,
    cli_flag,
    module_variable,
    parse_options,
    query_key,
    state_dir,
)

if TYPE_CHECKING:
    import git

    from bridge.catalog import Catalog
    from bridge.resolve import ResolvedAmi, Resolver

log = logging.getLogger("bridge")


# Exit statuses (README "Exit status").
EXIT_OK = 0
EXIT_ERROR = 1  # bad input (usage, query, catalog) or a failed operation; one paragraph on stderr
EXIT_MISSING = 3  # a definition has no usable image and the caller asked not to build it
EXIT_INTERNAL = 70  # a bug in ami-bridge (EX_SOFTWARE); the traceback is in a crash log
EXIT_INTERRUPTED = 130

# Commands' own on_missing defaults: Terraform's data source builds, a person's `resolve` asks.
EXTERNAL_ON_MISSING: OnMissing = "build"
RESOLVE_ON_MISSING: OnMissing = "fail"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `ami-bridge` command; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    debug = args.debug or os.environ.get("AMI_BRIDGE_DEBUG") == "1"
    _logging(debug=debug, quiet=args.command == "external" or args.quiet)
    try:
        code: int = args.func(args, os.environ)
        return code
    except NotFoundError as exc:
        print(f"ami-bridge: error: {_one_paragraph(str(exc))}", file=sys.stderr)
        return EXIT_MISSING
    except BridgeError as exc:
        print(f"ami-bridge: error: {_one_paragraph(str(exc))}", file=sys.stderr)
        return EXIT_ERROR
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
        crash = _crash_log(exc, os.environ)
        print(
            f"ami-bridge: internal error: {type(exc).__name__}: {exc}. This is a bug in "
            f"ami-bridge; the details are in {crash}. Run again with --debug to see them here.",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


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
    spell = module_variable if args.module else query_key
    query = protocol.parse_query(text, cache_dir=state_dir(env), spell=spell)
    resolver = _resolver(query.options, env, echo=None, spell=spell)
    on_missing = query.options.on_missing or EXTERNAL_ON_MISSING
    resolved = resolver.resolve(
        list(query.definitions),
        on_missing=on_missing,
        expect_fingerprint=query.options.expect_fingerprint,
        jobs=_jobs(None, env, resolver.catalog),
    )
    if query.many:
        values = protocol.results({name: resolved[name] for name in query.definitions})
    else:
        values = protocol.result(resolved[query.definitions[0]])
    sys.stdout.write(protocol.encode_result(values))
    return EXIT_OK


def _resolve(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    options = _options(args, env)
    resolver = _resolver(options, env, echo=None if args.quiet else sys.stderr)
    names = _names(args, resolver.catalog)
    results = resolver.resolve(
        names,
        on_missing=args.on_missing,
        expect_fingerprint=options.expect_fingerprint,
        jobs=_jobs(args.jobs, env, resolver.catalog),
        fail_fast=args.fail_fast,
    )
    return _report(args, {n: r for n, r in results.items() if n in names}, sys.stdout)


def _build(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    options = _options(args, env)
    if args.local_exec is not None:
        args.definitions = [*args.definitions, _local_exec_definition(args.local_exec)]
    resolver = _resolver(options, env, echo=None if args.quiet else sys.stderr)
    names = _names(args, resolver.catalog)
    if args.dry_run:
        planned = resolver.status(names, expect_fingerprint=options.expect_fingerprint)
        _report(args, planned, sys.stdout)
        return EXIT_OK
    results = resolver.resolve(
        names,
        on_missing="build",
        force=names if args.force else (),
        expect_fingerprint=options.expect_fingerprint,
        jobs=_jobs(args.jobs, env, resolver.catalog),
        fail_fast=args.fail_fast,
    )
    return _report(args, {n: r for n, r in results.items() if n in names}, sys.stdout)


DEFAULT_JOBS = 4


def _jobs(flag: str | None, env: Mapping[str, str], catalog: Catalog) -> int:
    """How many definitions build at once: --jobs, else AMI_BRIDGE_JOBS, else the catalog's
    `jobs`, else DEFAULT_JOBS."""
    raw = flag if flag is not None else env.get("AMI_BRIDGE_JOBS")
    if raw is None or raw == "":
        return catalog.jobs or DEFAULT_JOBS
    try:
        jobs = int(raw)
    except ValueError:
        jobs = 0
    if not 1 <= jobs <= 64:
        where = "--jobs" if flag is not None else "AMI_BRIDGE_JOBS"
        raise QueryError(
            f"{where} is {raw!r}; it takes a whole number of builds to run at once, 1 to 64."
        )
    return jobs


_LOCAL_EXEC = re.compile(r"ami-bridge build ([a-z][a-z0-9_-]{0,62})")


def _local_exec_definition(text: str) -> str:
    """The definition in the command text Terraform's local-exec passes (and shows on failure):
    exactly `ami-bridge build DEF`, read here, never run by a shell."""
    match = _LOCAL_EXEC.fullmatch(text)
    if match is None:
        raise QueryError(
            f"--local-exec takes the text `ami-bridge build DEF` (the ami_chain module's "
            f"local-exec command), not {text[:80]!r}. Name definitions as arguments instead."
        )
    return match.group(1)


def _status(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    resolver = _resolver_for_args(args, env)
    _report(args, resolver.status([d.name for d in resolver.catalog.all()]), sys.stdout)
    return EXIT_OK


def _manifest(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    resolver = _resolver_for_args(args, env)
    manifest = resolver.manifest(args.definition)
    json.dump(manifest.to_dict(), sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
    return EXIT_OK


def _gc(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from bridge import gc

    retention = gc.policy(
        keep=args.keep,
        older_than=args.older_than,
        min_age_hours=args.min_age_hours,
        keep_channel_versions=args.keep_channel_versions,
        definitions=args.definition or (),
    )
    # gc looks in every region of the catalog, whichever region the environment names.
    resolver = _resolver(
        _options(args, env), env, echo=None if args.quiet else sys.stderr, anywhere=True
    )
    now = datetime.now(timezone.utc)
    report = gc.run(resolver, retention, delete=args.apply)
    if args.json:
        json.dump(report.to_dict(now), sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
        return EXIT_OK
    for line in gc.table(gc.rows(report.outcomes, now=now)):
        print(line)
    for region, snapshots in sorted(report.leftovers.items()):
        print(f"leftover snapshots in {region} (deleted by --apply): {' '.join(snapshots)}")
    return EXIT_OK


def _graph(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from bridge.graph import render

    _, catalog = _open(_options(args, env), env)
    print(render(catalog, args.format))
    return EXIT_OK


def _sandbox(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from bridge import sandbox

    sandbox.serve(args.host, args.port, announce=sys.stdout)
    return EXIT_OK


# -- wiring ---------------------------------------------------------------------------------------

# Options every command that reads the repository takes: flag -> key of the query schema.
_OPTION_FLAGS = (
    "repo",
    "catalog",
    "commit",
    "region",
    "tag_key",
    "owners",
    "manifest_bucket",
    "manifest_prefix",
    "expect_fingerprint",
)


def _options(args: argparse.Namespace, env: Mapping[str, str]) -> Options:
    """The flags, checked by the same per-key validators as an external query."""
    values = {key: getattr(args, key) for key in _OPTION_FLAGS if getattr(args, key, None)}
    if getattr(args, "allow_dirty", False):
        values["allow_dirty"] = "true"
    return parse_options(values, spell=cli_flag, cache_dir=state_dir(env))


def _resolver_for_args(args: argparse.Namespace, env: Mapping[str, str]) -> Resolver:
    return _resolver(_options(args, env), env, echo=None if args.quiet else sys.stderr)


def _open(
    options: Options, env: Mapping[str, str], spell: Spell = cli_flag
) -> tuple[git.Repo, Catalog]:
    """The repository holding the `repo` directory (found through git), and its catalog.

    The catalog is looked up in the `repo` directory (the root or any directory inside it); the
    paths in it are relative to the repository root, where Packer runs. With a `commit` other than
    the checked-out one, the catalog and its paths are read from that commit.
    """
    from bridge.catalog import DEFAULT_CATALOG, load_catalog
    from bridge.fingerprint import CommitFiles, is_head, open_repo

    repo = open_repo(options.directory, named=spell("repo"))
    root = Path(str(repo.working_tree_dir))
    where = os.path.relpath(os.path.realpath(options.directory), os.path.realpath(root))
    rel = posixpath.normpath(posixpath.join(where, options.catalog or DEFAULT_CATALOG))
    # A pinned commit is described by its own catalog, not today's.
    files = (
        CommitFiles(repo, options.commit)
        if options.commit and not is_head(repo, options.commit)
        else None
    )
    return repo, load_catalog(root, rel, cache_dir=state_dir(env), files=files)


def _resolver(
    options: Options,
    env: Mapping[str, str],
    echo: TextIO | None,
    spell: Spell = cli_flag,
    *,
    anywhere: bool = False,
) -> Resolver:
    """The resolver of the catalog the options name; `anywhere`: the region is only where AWS
    is asked first, never a region every definition must list (gc looks in all of them)."""
    from bridge.aws import AwsClients
    from bridge.packer import PackerRunner
    from bridge.resolve import Resolver
    from bridge.settings import Settings

    state = state_dir(env)
    repo, catalog = _open(options, env, spell)
    settings = Settings.from_sources(
        options, catalog, env, repo_root=Path(str(repo.working_tree_dir))
    )
    if anywhere:
        settings = replace(settings, region_explicit=False)
    if not settings.manifest_bucket:
        log.info("no manifest bucket is configured; manifests will not be published")
    return Resolver(
        repo=repo,
        catalog=catalog,
        clients=AwsClients(model_cache=state / "models"),
        settings=settings,
        packer=lambda: PackerRunner(
            settings.packer, env=dict(env), echo=echo, cache=state / "packer-version.json"
        ),
    )


def _names(args: argparse.Namespace, catalog: Catalog) -> list[str]:
    if args.all:
        return [d.name for d in catalog.all()]
    if not args.definitions:
        raise QueryError("Name at least one definition, or pass --all.")
    for name in args.definitions:
        catalog.get(name)
    return list(dict.fromkeys(args.definitions))


def _report(args: argparse.Namespace, results: Mapping[str, ResolvedAmi], out: TextIO) -> int:
    from bridge.protocol import result

    if args.json:
        json.dump({n: result(r) for n, r in results.items()}, out, indent=2, sort_keys=True)
        out.write("\n")
    else:
        rows = [("DEFINITION", "STATE", "AMI", "FINGERPRINT", "PARENT", "REGIONS")]
        for r in results.values():
            parent = (
                f"{r.parent_definition} ({r.parent_ami_id or '-'})" if r.parent_definition else "-"
            )
            # Each region, and its state when the image is not there yet.
            regions = " ".join(
                region if state == "found" else f"{region}:{state}"
                for region, state in r.region_states.items()
            )
            rows.append(
                (r.definition, r.state, r.ami_id or "-", r.fingerprint[:12], parent, regions)
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            out.write(
                "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n"
            )
    return EXIT_OK if all(r.found for r in results.values()) else EXIT_MISSING


def _one_paragraph(text: str) -> str:
    """Control characters from input (a path with a newline) are shown escaped, not acted on."""
    return re.sub(r"[\x00-\x1f\x7f]", lambda m: repr(m.group())[1:-1], text)


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


class _Version(argparse.Action):
    """--version, read from the installed package's metadata only when asked for."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, help=str(kwargs.get("help", "")))

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> NoReturn:
        from importlib.metadata import version

        print(f"ami-bridge {version('ami-chain-bridge')}")
        parser.exit(0)


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
    parser.add_argument("--version", action=_Version, help="show the version and exit")
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
    expect = _Parser(add_help=False)
    expect.add_argument(
        "--expect-fingerprint",
        metavar="FP",
        help="refuse unless the one DEF has this fingerprint (the one a reviewed plan showed)",
    )

    p = sub.add_parser(
        "external", help="Terraform external data source: query on stdin, result on stdout"
    )
    p.add_argument(
        "--module",
        action="store_true",
        help="name options in messages as the ami_chain module's variables (repo_dir for repo)",
    )
    p.set_defaults(func=_external)

    p = sub.add_parser(
        "resolve", parents=[common, output, expect, parallel], help="find the AMIs of definitions"
    )
    p.add_argument("definitions", nargs="*", metavar="DEF")
    p.add_argument("--all", action="store_true", help="every definition in the catalog")
    p.add_argument(
        "--on-missing",
        choices=ON_MISSING,
        default=RESOLVE_ON_MISSING,
        help=f"what a missing image does (default {RESOLVE_ON_MISSING}; exit status 3)",
    )
    p.set_defaults(func=_resolve)

    p = sub.add_parser(
        "build",
        parents=[common, output, expect, parallel],
        help="build missing AMIs, parents first",
    )
    p.add_argument("definitions", nargs="*", metavar="DEF")
    p.add_argument("--all", action="store_true", help="every definition in the catalog")
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
    p.set_defaults(func=_build)

    p = sub.add_parser("status", parents=[common, output], help="table of every definition's image")
    p.set_defaults(func=_status)

    p = sub.add_parser(
        "manifest", parents=[common], help="print the build manifest of a definition's image"
    )
    p.add_argument("definition", metavar="DEF")
    p.set_defaults(func=_manifest)

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
        "--definition",
        action="append",
        metavar="NAME",
        help="delete only builds of NAME (repeatable; default every definition)",
    )
    p.add_argument(
        "--apply", action="store_true", help="delete (default: print what would be deleted)"
    )
    p.set_defaults(func=_gc)

    p = sub.add_parser("graph", parents=[common], help="the chain as Graphviz DOT or Mermaid")
    p.add_argument("--format", choices=GRAPH_FORMATS, default="dot")
    p.set_defaults(func=_graph)

    p = sub.add_parser(
        "sandbox", parents=[verbosity], help="run the local AWS sandbox in the foreground"
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    p.set_defaults(func=_sandbox)
    return parser
