"""Settings: the one place where options, the catalog and the environment become a run's settings.

Options come from CLI flags or an external query and are checked by the same per-key validators
(the properties of schemas/query.schema.json). Precedence, highest first, is the README's table:

    option (flag or query key)  >  environment  >  catalog  >  default

Every default is defined here, once.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Literal, get_args

from bridge.catalog import Catalog
from bridge.errors import QueryError
from bridge.observe import DEFAULT_OBSERVE, Observe
from bridge.observe import mode as observe_mode
from bridge.packer import VARIABLE_ENV_PREFIX
from bridge.validation import first_error, load_schema

OnMissing = Literal["build", "fail", "report"]
ON_MISSING: tuple[OnMissing, ...] = get_args(OnMissing)
# What a revoked image does: what a missing one does (on_missing: build it again under the same
# fingerprint, fail or report), or fail naming the revocation whatever on_missing says.
OnRevoked = Literal["build", "fail"]
ON_REVOKED: tuple[OnRevoked, ...] = get_args(OnRevoked)
DEFAULT_ON_REVOKED: OnRevoked = "build"

DEFAULT_TAG_KEY = "SHA"
DEFAULT_OWNERS: tuple[str, ...] = ("self",)
DEFAULT_LEASE_TTL = 120.0
# A concurrent build of the same image, or a pending image, is waited for this long: a real AMI
# build takes 5-40 minutes.
DEFAULT_WAIT_TIMEOUT = 3600.0
DEFAULT_PACKER = "packer"
# gc (retention.py): builds kept per definition, the age below which nothing is deleted, and how
# many versions of each channel parameter keep their images.
DEFAULT_GC_KEEP = 2
DEFAULT_GC_MIN_AGE_HOURS = 24.0
DEFAULT_GC_CHANNEL_VERSIONS = 5
# gc keeps an image shared with other accounts that was launched (by any account, as EC2's
# lastLaunchedTime says) within this many days: gc cannot see other accounts' instances.
DEFAULT_GC_LAUNCHED_WITHIN_DAYS = 30.0
# A shared build gc deletes leaves service in steps: deprecated, then disabled this many days
# later, then deleted as many days after that (0: deleted at once).
DEFAULT_GC_RETIRE_DAYS = 7.0
OPTIONS_SCHEMA = "query.schema.json"


@dataclass(frozen=True)
class Options:
    """What the caller asked for, from CLI flags or an external query. None means not given."""

    repo: str = "."
    catalog: str | None = None
    commit: str | None = None
    region: str | None = None
    on_missing: OnMissing | None = None
    on_revoked: OnRevoked | None = None
    tag_key: str | None = None
    owners: tuple[str, ...] | None = None
    manifest_bucket: str | None = None
    manifest_prefix: str | None = None
    allow_dirty: bool = False
    expect_fingerprint: str | None = None
    # Answer only with images whose provenance verifies (verification.require), with this key.
    require_provenance: bool = False
    provenance_key: str | None = None

    @property
    def directory(self) -> Path:
        """The `repo` directory (the repository root or a directory inside it), absolute."""
        if "\x00" in self.repo:
            raise QueryError(
                "The repository path contains a NUL byte; pass a plain directory path."
            )
        return Path(os.path.abspath(self.repo))


# How a message names an option: the way the caller wrote it.
Spell = Callable[[str], str]
# The ami_chain module's variable for each query key it sets, where the names differ.
MODULE_VARIABLES = {"repo": "repo_dir"}


def query_key(key: str) -> str:
    """An option as an external query's key."""
    return f"query key {key!r}"


def cli_flag(key: str) -> str:
    """An option as a command-line flag."""
    return f"option --{key.replace('_', '-')}"


def module_variable(key: str) -> str:
    """An option as the variable of the ami_chain or ami_catalog module that sets it
    (`external --module`)."""
    return f"the module's variable {MODULE_VARIABLES.get(key, key)!r}"


def parse_options(
    values: Mapping[str, str],
    *,
    spell: Spell,
    cache_dir: Path | None = None,
) -> Options:
    """Check option values (strings; "" means unset) and turn them into Options.

    `spell` names a key in messages the way the caller wrote it ("query key 'owners'" or
    "option --owners"). Unknown keys are the caller's to refuse first.
    """
    raw = json.dumps(dict(values), sort_keys=True).encode("utf-8", "surrogatepass")
    error = first_error(OPTIONS_SCHEMA, dict(values), raw, cache_dir)
    if error is not None:
        key = str(error.path[0]) if error.path else "?"
        described = load_schema(OPTIONS_SCHEMA)["properties"].get(key, {}).get("description", "")
        value = values.get(key, "")
        named = spell(key)
        raise QueryError(
            f"{named[:1].upper()}{named[1:]} has the invalid value {value[:80]!r}. {described} "
            f"Correct the value of {named}."
        )

    def given(key: str) -> str | None:
        return values.get(key) or None

    owners = given("owners")
    on_missing = given("on_missing")
    return Options(
        repo=given("repo") or ".",
        catalog=given("catalog"),
        commit=given("commit"),
        region=given("region"),
        on_missing=_on_missing(on_missing),
        on_revoked=_on_revoked(given("on_revoked")),
        tag_key=given("tag_key"),
        owners=tuple(owners.split(",")) if owners else None,
        manifest_bucket=given("manifest_bucket"),
        manifest_prefix=given("manifest_prefix"),
        allow_dirty=values.get("allow_dirty") == "true",
        expect_fingerprint=given("expect_fingerprint"),
        require_provenance=values.get("require_provenance") == "true",
        provenance_key=given("provenance_key"),
    )


def _on_missing(value: str | None) -> OnMissing | None:
    for known in ON_MISSING:
        if value == known:
            return known
    return None  # the schema's enum allows nothing else


def _on_revoked(value: str | None) -> OnRevoked | None:
    for known in ON_REVOKED:
        if value == known:
            return known
    return None  # the schema's enum allows nothing else


# Commands' own on_missing defaults: Terraform's data source builds, a person's `resolve` asks,
# `build` always builds.
RunCommand = Literal["external", "resolve", "build"]
ON_MISSING_DEFAULTS: Mapping[RunCommand, OnMissing] = MappingProxyType(
    {"external": "build", "resolve": "fail", "build": "build"}
)
DEFAULT_JOBS = 4


@dataclass(frozen=True)
class RunPolicy:
    """What a run does about what it finds, decided once (run_policy) and passed to the
    workflows: a missing or revoked image, forced rebuilds, the fingerprint a saved plan
    reviewed, how many definitions at once, and whether the first failure stops the rest."""

    on_missing: OnMissing
    on_revoked: OnRevoked = DEFAULT_ON_REVOKED
    force: frozenset[str] = frozenset()
    expect_fingerprint: str | None = None
    jobs: int = 1
    fail_fast: bool = False

    @property
    def writes(self) -> bool:
        """Whether the run may write to AWS (build, tag, share, copy, publish): only one that
        builds what is missing; a look (fail, report) changes nothing."""
        return self.on_missing == "build"


def run_policy(
    command: RunCommand,
    options: Options,
    env: Mapping[str, str],
    catalog: Catalog,
    *,
    jobs_flag: str | None = None,
    force: Iterable[str] = (),
    fail_fast: bool = False,
) -> RunPolicy:
    """The run's policy: the options (flag or query), else the command's default."""
    return RunPolicy(
        on_missing="build"
        if command == "build"
        else options.on_missing or ON_MISSING_DEFAULTS[command],
        on_revoked=options.on_revoked or DEFAULT_ON_REVOKED,
        force=frozenset(force),
        expect_fingerprint=options.expect_fingerprint,
        jobs=jobs(jobs_flag, env, catalog),
        fail_fast=fail_fast,
    )


def jobs(flag: str | None, env: Mapping[str, str], catalog: Catalog) -> int:
    """How many definitions build at once: --jobs, else AMI_BRIDGE_JOBS, else the catalog's
    `jobs`, else DEFAULT_JOBS."""
    raw = flag if flag is not None else env.get("AMI_BRIDGE_JOBS")
    if raw is None or raw == "":
        return catalog.jobs or DEFAULT_JOBS
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= 64:
        where = "--jobs" if flag is not None else "AMI_BRIDGE_JOBS"
        raise QueryError(
            f"{where} is {raw!r}; it takes a whole number of builds to run at once, 1 to 64."
        )
    return value


def channel_region(region: str | None, env: Mapping[str, str]) -> str:
    """The region of a channel query (no catalog): the query's, else the environment's."""
    found = region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if not found:
        raise QueryError(
            "A channel query needs a region: set the query's `region` (the ami_channel module "
            "passes the AWS provider's) or AWS_REGION."
        )
    return found


def state_dir(env: Mapping[str, str]) -> Path:
    """Where logs, locks and crash reports go."""
    if env.get("AMI_BRIDGE_STATE_DIR"):
        return Path(env["AMI_BRIDGE_STATE_DIR"])
    base = env.get("XDG_STATE_HOME") or os.path.join(
        env.get("HOME") or tempfile.gettempdir(), ".local", "state"
    )
    return Path(base) / "ami-bridge"


def cache_dir(env: Mapping[str, str]) -> Path:
    """Where caches go (slim service models, what validated, Packer's version): keyed by what
    they were made from and shared by every process and repository; deleting it costs time,
    never correctness."""
    if env.get("AMI_BRIDGE_CACHE_DIR"):
        return Path(env["AMI_BRIDGE_CACHE_DIR"])
    base = env.get("XDG_CACHE_HOME") or os.path.join(
        env.get("HOME") or tempfile.gettempdir(), ".cache"
    )
    return Path(base) / "ami-bridge"


def build_url(env: Mapping[str, str]) -> str:
    """The URL of the CI job running us (CircleCI, GitHub Actions, GitLab), or ""."""
    if env.get("CIRCLE_BUILD_URL"):
        return env["CIRCLE_BUILD_URL"]
    if env.get("GITHUB_RUN_ID") and env.get("GITHUB_REPOSITORY"):
        server = env.get("GITHUB_SERVER_URL", "https://github.com")
        return f"{server}/{env['GITHUB_REPOSITORY']}/actions/runs/{env['GITHUB_RUN_ID']}"
    return env.get("CI_JOB_URL", "")


@dataclass(frozen=True)
class Settings:
    """How to resolve and build: where to look, what counts, where builds and leases go."""

    repo_root: Path
    region: str
    state_dir: Path
    # The region was asked for (option or environment), not taken from the catalog.
    region_explicit: bool = False
    tag_key: str = DEFAULT_TAG_KEY
    owners: tuple[str, ...] = DEFAULT_OWNERS
    regions: tuple[str, ...] = ()
    manifest_bucket: str | None = None
    manifest_prefix: str | None = None
    commit: str | None = None
    allow_dirty: bool = False
    # Packer 1.6 ignores AWS_ENDPOINT_URL*, so the endpoint goes to templates as a variable.
    ec2_endpoint: str | None = None
    build_url: str = ""
    wait_timeout: float = DEFAULT_WAIT_TIMEOUT
    # S3 build leases (cross-machine exactly-once); no bucket means this machine's lock alone.
    lease_bucket: str | None = None
    lease_prefix: str = ""
    lease_ttl: float = DEFAULT_LEASE_TTL
    # Seed-style Packer manifests (manifest-<definition>.json) from builds in the same workflow.
    packer_manifest_dir: Path | None = None
    packer: str = DEFAULT_PACKER
    # The values of the environment variables the catalog's definitions list in `env` (part of
    # their fingerprints), and every PKR_VAR_* set (Packer reads one as a variable's value).
    environment: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    # The catalog's ID (ownership.catalog_id), tagged on its images; "" counts every image.
    catalog_id: str = ""
    # Whether builds run under strace (observe.py): AMI_BRIDGE_OBSERVE, else the catalog's.
    observe: Observe = DEFAULT_OBSERVE

    @property
    def log_dir(self) -> Path:
        """Build logs."""
        return self.state_dir / "logs"

    @property
    def lock_dir(self) -> Path:
        """This machine's build locks."""
        return self.state_dir / "locks"

    @classmethod
    def from_sources(
        cls, options: Options, catalog: Catalog, env: Mapping[str, str], *, repo_root: Path
    ) -> Settings:
        """Merge options, environment and catalog, highest precedence first (README table).

        `repo_root` is the root of the repository holding the `repo` directory (found through git).
        """
        asked = options.region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
        region = asked or (catalog.regions[0] if catalog.regions else None)
        if not region:
            raise QueryError(
                "No AWS region is set. Pass `region` (query) or --region, set AWS_REGION, or "
                "list `regions` in the catalog."
            )
        bucket = options.manifest_bucket or catalog.manifest_bucket
        prefix = (
            options.manifest_prefix
            if options.manifest_prefix is not None
            else catalog.manifest_prefix
        )
        lease_prefix = catalog.lease_prefix if catalog.lease_prefix is not None else prefix
        listed = {name for d in catalog.all() for name in d.env}
        manifests = env.get("AMI_BRIDGE_PACKER_MANIFESTS")
        return cls(
            repo_root=repo_root,
            region=region,
            region_explicit=bool(asked),
            state_dir=state_dir(env),
            tag_key=options.tag_key or catalog.tag_key or DEFAULT_TAG_KEY,
            owners=options.owners or catalog.owners or DEFAULT_OWNERS,
            regions=catalog.regions or (),
            manifest_bucket=bucket,
            manifest_prefix=prefix,
            commit=options.commit,
            allow_dirty=options.allow_dirty,
            ec2_endpoint=env.get("AMI_BRIDGE_PACKER_EC2_ENDPOINT")
            or env.get("AWS_ENDPOINT_URL_EC2")
            or env.get("AWS_ENDPOINT_URL"),
            build_url=build_url(env),
            lease_bucket=catalog.lease_bucket or bucket,
            lease_prefix=lease_prefix or "",
            lease_ttl=catalog.lease_ttl if catalog.lease_ttl is not None else DEFAULT_LEASE_TTL,
            packer_manifest_dir=Path(manifests) if manifests else None,
            packer=env.get("AMI_BRIDGE_PACKER") or DEFAULT_PACKER,
            observe=observe_mode(env.get("AMI_BRIDGE_OBSERVE"), "AMI_BRIDGE_OBSERVE")
            if env.get("AMI_BRIDGE_OBSERVE")
            else observe_mode(catalog.observe, "The catalog's `observe`"),
            environment=MappingProxyType(
                {
                    name: value
                    for name, value in env.items()
                    if name.startswith(VARIABLE_ENV_PREFIX) or name in listed
                }
            ),
        )
