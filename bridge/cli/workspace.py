"""From flags (or a query's options) and the environment to what a command works with: the
repository, its catalog, the settings, a Context and a Resolver."""

from __future__ import annotations

import argparse
import logging
import os
import posixpath
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from bridge.errors import QueryError
from bridge.settings import Options, Spell, cache_dir, cli_flag, parse_options

if TYPE_CHECKING:
    import git

    from bridge.catalog import Catalog
    from bridge.context import Context
    from bridge.pipeline.resolve import Resolver
    from bridge.pipeline.result import ResolvedAmi

log = logging.getLogger(__name__)

# Options every command that reads the repository takes: flag -> key of the query schema.
OPTION_FLAGS = (
    "repo",
    "catalog",
    "commit",
    "region",
    "tag_key",
    "owners",
    "manifest_bucket",
    "manifest_prefix",
    "expect_fingerprint",
    "on_missing",
    "on_revoked",
)


def options(args: argparse.Namespace, env: Mapping[str, str]) -> Options:
    """The flags, checked by the same per-key validators as an external query."""
    values = {key: getattr(args, key) for key in OPTION_FLAGS if getattr(args, key, None)}
    if getattr(args, "allow_dirty", False):
        values["allow_dirty"] = "true"
    return parse_options(values, spell=cli_flag, cache_dir=cache_dir(env))


def open_catalog(
    options: Options, env: Mapping[str, str], spell: Spell = cli_flag
) -> tuple[git.Repo, Catalog]:
    """The repository holding the `repo` directory (found through git), and its catalog.

    The catalog is looked up in the `repo` directory (the root or any directory inside it); the
    paths in it are relative to the repository root, where Packer runs. With a `commit` other than
    the checked-out one, the catalog and its paths are read from that commit.
    """
    from bridge.catalog import DEFAULT_CATALOG, load_catalog
    from bridge.git import CommitFiles, is_head, open_repo

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
    return repo, load_catalog(root, rel, cache_dir=cache_dir(env), files=files)


def context(
    options: Options,
    env: Mapping[str, str],
    spell: Spell = cli_flag,
    *,
    anywhere: bool = False,
) -> Context:
    """The context of the catalog the options name; `anywhere`: the region is only where AWS
    is asked first, never a region every definition must list (gc looks in all of them)."""
    from bridge.aws.clients import AwsClients
    from bridge.context import Context
    from bridge.settings import Settings

    repo, catalog = open_catalog(options, env, spell)
    settings = Settings.from_sources(
        options, catalog, env, repo_root=Path(str(repo.working_tree_dir))
    )
    from bridge.ownership import catalog_id

    settings = replace(
        settings, catalog_id=catalog_id(repo, catalog, cache_dir(env) / "first-commits")
    )
    if anywhere:
        settings = replace(settings, region_explicit=False)
    if not settings.manifest_bucket:
        log.info("no manifest bucket is configured; manifests will not be published")
    return Context(
        repo=repo,
        catalog=catalog,
        clients=AwsClients(model_cache=cache_dir(env) / "models"),
        settings=settings,
    )


def resolver(
    ctx: Context, env: Mapping[str, str], echo: TextIO | None, *, verbose: bool = False
) -> Resolver:
    """The resolver of `ctx`, running Packer with the environment `env`."""
    from bridge.packer import PackerRunner
    from bridge.pipeline.resolve import Resolver

    return Resolver(
        ctx,
        packer=lambda: PackerRunner(
            ctx.settings.packer,
            env=dict(env),
            echo=echo,
            cache=cache_dir(env) / "packer-version.json",
            verbose=verbose,
        ),
    )


def names(args: argparse.Namespace, catalog: Catalog) -> list[str]:
    """The definitions named on the command line (checked), or every one with --all."""
    if args.all:
        return [d.name for d in catalog.all()]
    if not args.definitions:
        raise QueryError("Name at least one definition, or pass --all.")
    for name in args.definitions:
        catalog.get(name)
    return list(dict.fromkeys(args.definitions))


def survey_each(the: Resolver, names: list[str]) -> tuple[dict[str, ResolvedAmi], dict[str, str]]:
    """`the.status(names)` in one pass; when a definition is broken, each one on its own (with
    its ancestors), so one broken definition does not hide the others: (results, definition ->
    its error)."""
    from bridge.errors import BridgeError

    try:
        return the.status(names), {}
    except BridgeError:
        results: dict[str, ResolvedAmi] = {}
        errors: dict[str, str] = {}
        for name in names:
            try:
                results[name] = the.status([name])[name]
            except BridgeError as each:
                errors[name] = str(each)
        return results, errors
