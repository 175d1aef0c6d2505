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
    DEFAULT_ON_REVOKED,
    ON_MISSING,
    ON_REVOKED,
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
    from bridge.model import Build
    from bridge.protocol import Query
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
    args, extra = parser.parse_known_args(argv)
    if extra:
        _unrecognized(parser, args, extra)
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
    if query.channel is not None:
        sys.stdout.write(protocol.encode_result(_through_channel(query, env)))
        return EXIT_OK
    resolver = _resolver(query.options, env, echo=None, spell=spell)
    on_missing = query.options.on_missing or EXTERNAL_ON_MISSING
    resolved = resolver.resolve(
        list(query.definitions),
        on_missing=on_missing,
        on_revoked=query.options.on_revoked or DEFAULT_ON_REVOKED,
        expect_fingerprint=query.options.expect_fingerprint,
        jobs=_jobs(None, env, resolver.catalog),
    )
    if query.many:
        values = protocol.results({name: resolved[name] for name in query.definitions})
    else:
        values = protocol.result(resolved[query.definitions[0]])
    sys.stdout.write(protocol.encode_result(values))
    return EXIT_OK


def _through_channel(query: Query, env: Mapping[str, str]) -> dict[str, str]:
    """The result of a channel query: what the channel holds in the region (no repository)."""
    from bridge import channels, protocol
    from bridge.aws import AwsClients

    assert query.channel is not None
    definition = query.definitions[0]
    region = query.options.region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if not region:
        raise QueryError(
            "A channel query needs a region: set the query's `region` (the ami_channel module "
            "passes the AWS provider's) or AWS_REGION."
        )
    clients = AwsClients(model_cache=state_dir(env) / "models")
    held = channels.current(clients, query.channel_prefix, definition, query.channel, region)
    channels.check_not_revoked(clients, region, definition, query.channel, held)
    return protocol.channel_result(
        definition,
        query.channel,
        channels.parameter_name(query.channel_prefix, definition, query.channel),
        region,
        held,
    )


def _resolve(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    options = _options(args, env)
    resolver = _resolver(
        options, env, echo=None if args.quiet else sys.stderr, verbose=args.verbose
    )
    names = _names(args, resolver.catalog)
    results = resolver.resolve(
        names,
        on_missing=args.on_missing,
        on_revoked=args.on_revoked,
        expect_fingerprint=options.expect_fingerprint,
        jobs=_jobs(args.jobs, env, resolver.catalog),
        fail_fast=args.fail_fast,
    )
    return _report(args, {n: r for n, r in results.items() if n in names}, sys.stdout)


def _build(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    options = _options(args, env)
    if args.local_exec is not None:
        args.definitions = [*args.definitions, _local_exec_definition(args.local_exec)]
    resolver = _resolver(
        options, env, echo=None if args.quiet else sys.stderr, verbose=args.verbose
    )
    names = _names(args, resolver.catalog)
    if args.dry_run:
        planned = resolver.status(names, expect_fingerprint=options.expect_fingerprint)
        _report(args, planned, sys.stdout)
        return EXIT_OK
    results = resolver.resolve(
        names,
        on_missing="build",
        on_revoked=args.on_revoked,
        force=names if args.force else (),
        expect_fingerprint=options.expect_fingerprint,
        jobs=_jobs(args.jobs, env, resolver.catalog),
        fail_fast=args.fail_fast,
    )
    # The named definitions, and the ancestors this run built for them.
    return _report(args, {n: r for n, r in results.items() if n in names or r.built}, sys.stdout)


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
    names = [d.name for d in resolver.catalog.all()]
    errors: dict[str, str] = {}
    try:
        results = resolver.status(names)
    except BridgeError as exc:
        # One broken definition must not hide the others: look at each on its own (with its
        # ancestors), and show the broken ones' rows with their errors.
        results = {}
        for name in names:
            try:
                results[name] = resolver.status([name])[name]
            except BridgeError as each:
                errors[name] = str(each)
        if not results:
            raise exc from None
    _report(args, results, sys.stdout, channels=_channel_notes(resolver, results), errors=errors)
    return EXIT_ERROR if errors else EXIT_OK


def _channel_notes(resolver: Resolver, results: Mapping[str, ResolvedAmi]) -> dict[str, str]:
    """Definition -> its channels, those holding a revoked (or vanished) image marked: a channel
    is rolled back only when someone asks (`ami-bridge rollback`)."""
    from bridge import channels
    from bridge.errors import AwsError

    region = resolver.settings.region
    try:
        found = channels.held(resolver.clients, resolver.catalog.channel_prefix, region)
    except AwsError as exc:
        log.warning("channels are not shown: %s", exc)
        return {}
    return {
        name: "channels: "
        + " ".join(f"{c}:REVOKED" if bad else c for c, (_, bad) in found[name].items())
        for name in results
        if name in found
    }


def _check(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """The catalog is valid and every definition can be fingerprinted: git only, no AWS (a
    Packer repository's pre-commit hook). Uncommitted content counts, as it is what is checked
    in; a tracked source filter is checked, not resolved."""
    from bridge.fingerprint import fingerprint_all
    from bridge.sources import SourcePick

    repo, catalog = _open(_options(args, env), env)
    snapshot = fingerprint_all(
        repo,
        catalog.all(),
        allow_dirty=True,
        catalog_path=catalog.path,
        pick_sources=lambda d, filters: [SourcePick(f, "-", "", "") for f in filters],
    )
    rows = [("DEFINITION", "TEMPLATE", "INPUTS", "UPSTREAM")]
    for d in catalog.all():
        fp = snapshot.fingerprints[d.name]
        upstream = ", ".join(s.filter.origin for s in fp.sources) or (
            f"parent {d.parent}" if d.parent else "fixed"
        )
        rows.append((d.name, d.template, str(len(fp.inputs)), upstream))
    _table(rows, sys.stdout)
    return EXIT_OK


def _manifest(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    resolver = _resolver_for_args(args, env)
    manifest = resolver.manifest(args.definition)
    json.dump(manifest.to_dict(), sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
    return EXIT_OK


def _revoke(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from bridge.revoke import Revoker

    changes = Revoker(_resolver_for_args(args, env)).revoke(
        args.definition,
        reason=args.reason,
        at=args.at,
        fingerprint=args.fingerprint,
        ami=args.ami,
    )
    rows: list[tuple[str, ...]] = [("DEFINITION", "BUILD", "AMIS", "REVOKED AT", "REASON")]
    for c in changes:
        reason = f"(revoked earlier) {c.revocation.reason}" if c.kept else c.revocation.reason
        rows.append(_change_row(c.build, c.revocation.at, reason))
    _table(rows, sys.stdout)
    revoked = [c for c in changes if not c.kept]
    log.info(
        "revoked %d image build(s) (%d descendant(s)) from %s",
        len(revoked),
        len(revoked) - 1,
        changes[0].revocation.at,
    )
    return EXIT_OK


def _restore(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from bridge.revoke import Revoker

    changes = Revoker(_resolver_for_args(args, env)).restore(
        args.definition, fingerprint=args.fingerprint, ami=args.ami
    )
    rows: list[tuple[str, ...]] = [("DEFINITION", "BUILD", "AMIS", "STATE")]
    for c in changes:
        state = (
            f"still revoked (by {c.revocation.by[:12]}: {c.revocation.reason})"
            if c.kept
            else "restored"
        )
        rows.append(_change_row(c.build, state))
    _table(rows, sys.stdout)
    return EXIT_OK


def _change_row(build: Build, *cells: str) -> tuple[str, ...]:
    amis = " ".join(f"{region}:{ami}" for region, ami in build.amis.items())
    return (build.definition, build.build_id[:12], amis, *cells)


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

    if args.status:
        resolver = _resolver_for_args(args, env)
        catalog = resolver.catalog
        looked = resolver.status([d.name for d in catalog.all()])
        revoked = {n: r.revoke_reason for n, r in looked.items() if r.revoked}
        expired = [n for n, r in looked.items() if r.state == "expired"]
    else:
        _, catalog = _open(_options(args, env), env)
        revoked, expired = {}, []
    print(render(catalog, args.format, revoked, expired))
    return EXIT_OK


def _promote(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from bridge import channels

    channels.check_channel(args.channel)
    if args.from_channel is not None:
        channels.check_channel(args.from_channel)
    resolver = _resolver_for_args(args, env)
    build = channels.chosen_build(
        resolver,
        args.definition,
        fingerprint=args.fingerprint,
        ami=args.ami,
        from_channel=args.from_channel,
    )
    versions = channels.promote(
        resolver.clients, resolver.catalog.channel_prefix, build, args.channel
    )
    _channel_report(args, resolver.catalog.channel_prefix, build, versions, sys.stdout)
    return EXIT_OK


def _rollback(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from bridge import channels

    channels.check_channel(args.channel)
    resolver = _resolver_for_args(args, env)
    build, versions = channels.rollback(resolver, args.definition, args.channel, args.to)
    _channel_report(args, resolver.catalog.channel_prefix, build, versions, sys.stdout)
    return EXIT_OK


def _channel_report(
    args: argparse.Namespace,
    prefix: str,
    build: Build,
    versions: Mapping[str, int],
    out: TextIO,
) -> None:
    from bridge import channels

    name = channels.parameter_name(prefix, build.definition, args.channel)
    if args.json:
        json.dump(
            {
                "definition": build.definition,
                "channel": args.channel,
                "parameter": name,
                "build_id": build.build_id,
                "fingerprint": build.fingerprint,
                "regions": {
                    r: {"ami_id": i.ami_id, "version": versions[r]}
                    for r, i in sorted(build.images.items())
                },
            },
            out,
            indent=2,
            sort_keys=True,
        )
        out.write("\n")
        return
    out.write(f"{name} -> build {build.build_id[:12]} (fingerprint {build.fingerprint[:12]})\n")
    for region, image in sorted(build.images.items()):
        out.write(f"  {region}  {image.ami_id}  version {versions[region]}\n")


def _channel_history(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from bridge import channels

    channels.check_channel(args.channel)
    resolver = _resolver_for_args(args, env)
    d = resolver.catalog.get(args.definition)
    region = resolver.regions(d)[0]
    versions = channels.history(
        resolver.clients, resolver.catalog.channel_prefix, d.name, args.channel, region
    )
    if args.json:
        json.dump(
            [
                {
                    "version": v.version,
                    "modified": v.modified,
                    "ami_id": v.ami_id,
                    "build_id": v.build_id,
                    "fingerprint": v.fingerprint,
                    "region": region,
                }
                for v in versions
            ],
            sys.stdout,
            indent=2,
        )
        sys.stdout.write("\n")
        return EXIT_OK
    rows = [("VERSION", "MODIFIED", "AMI", "BUILD", "FINGERPRINT")]
    rows += [
        (
            f"{v.version}{' *' if v is versions[-1] else ''}",
            v.modified,
            v.ami_id,
            v.build_id[:12] or "-",
            v.fingerprint[:12] or "-",
        )
        for v in versions
    ]
    _table(rows, sys.stdout)
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
    verbose: bool = False,
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
            settings.packer,
            env=dict(env),
            echo=echo,
            cache=state / "packer-version.json",
            verbose=verbose,
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


def _report(
    args: argparse.Namespace,
    results: Mapping[str, ResolvedAmi],
    out: TextIO,
    *,
    channels: Mapping[str, str] | None = None,
    errors: Mapping[str, str] | None = None,
) -> int:
    from bridge.protocol import result

    if args.json:
        values: dict[str, dict[str, str]] = {n: result(r) for n, r in results.items()}
        values.update({n: {"definition": n, "error": e} for n, e in (errors or {}).items()})
        json.dump(values, out, indent=2, sort_keys=True)
        out.write("\n")
    else:
        rows: list[tuple[str, ...]] = [
            ("DEFINITION", "STATE", "AMI", "FINGERPRINT", "PARENT", "AGE", "REGIONS")
        ]
        now = datetime.now(timezone.utc)
        for r in results.values():
            parent = (
                f"{r.parent_definition} ({r.parent_ami_id or '-'})" if r.parent_definition else "-"
            )
            # Each region, and its state when the image is not there yet.
            regions = " ".join(
                region if state == "found" else f"{region}:{state}"
                for region, state in r.region_states.items()
            )
            age = _age(r.creation_date, now) if r.ami_id else "-"
            rows.append(
                (r.definition, r.state, r.ami_id or "-", r.fingerprint[:12], parent, age, regions)
            )
        for name in errors or {}:
            rows.append((name, "error", "-", "-", "-", "-", "-"))
        notes = [
            "; ".join(
                n
                for n in (
                    _revocation_note(r),
                    f"expires {r.expires_at}" if r.expires_at and r.ami_id else "",
                    (channels or {}).get(r.definition),
                )
                if n
            )
            for r in results.values()
        ]
        notes += [_one_paragraph(e) for e in (errors or {}).values()]
        if any(notes):
            rows = [
                (*rows[0], "NOTE"),
                *((*row, n) for row, n in zip(rows[1:], notes, strict=True)),
            ]
        _table(rows, out)
    return EXIT_OK if all(r.found for r in results.values()) else EXIT_MISSING


def _age(creation_date: str, now: datetime) -> str:
    """How old an image is, roughly: 45s, 12m, 5h, 3d."""
    from bridge.model import parse_time

    created = parse_time(creation_date)
    if created is None:
        return "?"
    seconds = max(0, int((now - created).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _revocation_note(r: ResolvedAmi) -> str:
    if r.revoked:
        return f"REVOKED: {r.revoke_reason or 'no reason recorded'}"
    if r.revokes_at:
        return f"revoked at {r.revokes_at}"
    return ""


def _table(rows: Sequence[Sequence[str]], out: TextIO) -> None:
    """Rows as left-aligned columns (the first row is the header)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")


def _inside(filename: object, directory: Path) -> bool:
    """Whether `filename` (an OSError's) is `directory` or below it."""
    if not isinstance(filename, (str, os.PathLike)):
        return False
    path = os.path.abspath(os.fspath(filename))
    root = os.path.abspath(directory)
    return path == root or path.startswith(root + os.sep)


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


def _query_keys() -> str:
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


def _unrecognized(
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
    revoked = _Parser(add_help=False)
    revoked.add_argument(
        "--on-revoked",
        choices=ON_REVOKED,
        default=DEFAULT_ON_REVOKED,
        help="what a revoked image does: build (the default) treats it as missing (built "
        "again with --on-missing build), fail fails naming the revocation",
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

    p = sub.add_parser(
        "external",
        help="Terraform external data source: query on stdin, result on stdout",
        description="Reads one JSON object of strings on stdin (Terraform's external data "
        "source query) and writes one on stdout. Default on_missing: "
        f"{EXTERNAL_ON_MISSING}.",
        epilog=_query_keys(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--module",
        action="store_true",
        help="name options in messages as the ami_chain module's variables (repo_dir for repo)",
    )
    p.set_defaults(func=_external)

    p = sub.add_parser(
        "resolve",
        parents=[common, output, expect, parallel, revoked, loud],
        help="find the AMIs of definitions",
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
        parents=[common, output, expect, parallel, revoked, loud],
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
    p.set_defaults(func=_check)

    p = sub.add_parser(
        "manifest", parents=[common], help="print the build manifest of a definition's image"
    )
    p.add_argument("definition", metavar="DEF")
    p.set_defaults(func=_manifest)

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
    p.set_defaults(func=_revoke)

    p = sub.add_parser(
        "restore",
        parents=[common, target],
        help="lift a revocation, from the image and the images revoked because of it",
    )
    p.set_defaults(func=_restore)

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
    p.add_argument(
        "--status",
        action="store_true",
        help="look the images up (as `status` does) and mark revoked and expired definitions",
    )
    p.set_defaults(func=_graph)

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
    p.set_defaults(func=_promote)

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
    p.set_defaults(func=_rollback)

    p = sub.add_parser("channel", help="promotion channels")
    channel_sub = p.add_subparsers(
        dest="channel_command", required=True, metavar="COMMAND", parser_class=_Parser
    )
    q = channel_sub.add_parser(
        "history", parents=[common, output], help="every version of a channel, oldest first"
    )
    q.add_argument("definition", metavar="DEF")
    q.add_argument("channel", metavar="CHANNEL")
    q.set_defaults(func=_channel_history)

    p = sub.add_parser(
        "sandbox", parents=[verbosity], help="run the local AWS sandbox in the foreground"
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    p.set_defaults(func=_sandbox)
    return parser
