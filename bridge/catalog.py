"""The catalog: which Packer definitions a repository has and how their images chain."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Any

from bridge import ownership
from bridge.entries import (
    TemplateFormat,
    VariableValue,
    check_tag_room,
    check_value,
    entry_of,
)
from bridge.errors import CatalogError
from bridge.repopaths import Files, WorkingTree, normalize
from bridge.sources import SourceFilter, filter_from
from bridge.validation import count_errors, first_error

DEFAULT_CATALOG = "ami-chain.json"
SCHEMA = "catalog.schema.json"
# The variable the bridge passes a template the EC2 endpoint in (a sandbox's, or
# AMI_BRIDGE_PACKER_EC2_ENDPOINT), where the template declares it.
ENDPOINT_VARIABLE = "ec2_endpoint"
# Packer variables the bridge sets on every build (build.py): a catalog value would build an image
# that its fingerprint, name or parent tag does not describe.
BRIDGE_VARIABLES = {
    "ami_base": "the parent's AMI",
    "ami_sha": "the fingerprint",
    "ami_name": "the image name derived from the fingerprint",
    "region": "the build region",
}


@dataclass(frozen=True)
class ImageTest:
    """A check a new image must pass before it is published (gates.py): a command (an argv list,
    run from the exported tree) or a built-in (`boots`: one instance launched and terminated)."""

    name: str
    command: tuple[str, ...] = ()
    builtin: str | None = None
    timeout_seconds: float = 1800.0
    # `boots`: the instance type it launches.
    instance_type: str = "t3.micro"


@dataclass(frozen=True)
class Definition:
    """One Packer definition: a template, its inputs and its place in the chain."""

    name: str
    template: str
    template_format: TemplateFormat
    directory: str
    inputs: tuple[str, ...]
    parent: str | None = None
    # Names it had before a rename: their images are its images (plan.py, publish.adopt).
    formerly: tuple[str, ...] = ()
    variables: Mapping[str, VariableValue] = field(default_factory=lambda: MappingProxyType({}))
    regions: tuple[str, ...] = ()
    tags: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    # Distribution: None where the definition does not say (the catalog's value applies).
    encrypted: bool | None = None
    kms_keys: Mapping[str, str] | None = None
    share: tuple[str, ...] | None = None
    max_age_days: float | None = None
    # A root's upstream image: the catalog's `source` filter (passed as `ami_base`), and whether
    # the images its filters choose are part of its fingerprint (sources.py).
    source: SourceFilter | None = None
    track_source: bool = True
    # The one build of a template with several that this definition makes, as `packer build
    # -only` names it (templates/reads.py selects it); None: the template's only build.
    only: str | None = None
    # Packer variable files, in the order they are passed (-var-file), before `variables`.
    var_files: tuple[str, ...] = ()
    # Environment variables its template may read; their values are part of its fingerprint.
    env: tuple[str, ...] = ()
    # The definition's catalog entry as canonical JSON: fingerprint.py checks it against the
    # entry committed at the fingerprinted commit.
    entry: str = ""
    # The checks a new image passes before it is published (gates.py); not in the fingerprint:
    # they qualify an image, they do not make it.
    tests: tuple[ImageTest, ...] = ()


@dataclass(frozen=True)
class Catalog:
    """A validated catalog. Definitions are kept in file order."""

    path: str
    definitions: Mapping[str, Definition]
    # The catalog's own ID (`id`), tagged on its images; None: derived (ownership.catalog_id).
    id: str | None = None
    tag_key: str | None = None
    owners: tuple[str, ...] | None = None
    regions: tuple[str, ...] | None = None
    manifest_bucket: str | None = None
    manifest_prefix: str | None = None
    lease_bucket: str | None = None
    lease_prefix: str | None = None
    lease_ttl: float | None = None
    jobs: int | None = None
    # Promotion channels live under /<channel_prefix>/<definition>/<channel> in SSM: by default
    # ami-chain/<id> (default_channel_prefix).
    channel_prefix: str = "ami-chain"
    encrypted: bool = False
    kms_keys: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    share: tuple[str, ...] = ()
    max_age_days: float | None = None
    # What a revocation in effect does in EC2 besides its tags: deprecate (default), or also
    # disable (DisableImage: no account can launch it; restore enables it again).
    on_revoke: str = "deprecate"
    # Deregistration protection on every image built or copied (gc lifts it only for what it
    # deletes).
    protect: bool = True
    # gc --apply deletes only what a Recycle Bin retention rule keeps restorable (false: it may
    # delete for good, as --unrecoverable lets one run do).
    require_recycle_bin: bool = True
    # gc archives the snapshots of builds kept only for rollback once this many days old (None:
    # never).
    archive_after_days: float | None = None
    # An image that failed its tests is kept, tagged rejected, for debugging (gc deletes it);
    # by default it is deregistered at once.
    keep_rejected: bool = False
    # Whether builds run under strace, so that a read outside the identity fails the build
    # (observe.py): required, auto (when strace can trace here) or off; None: the default.
    observe: str | None = None
    # The KMS asymmetric key (ID, ARN or alias) every build's provenance is signed with
    # (provenance.py); None: no provenance is written.
    provenance_key: str | None = None
    _order: tuple[str, ...] = field(default=(), repr=False)

    def get(self, name: str) -> Definition:
        """The definition called `name`, or a CatalogError listing the known ones."""
        try:
            return self.definitions[name]
        except KeyError:
            pass
        import difflib

        names = sorted(self.definitions)
        if name.lower() in self.definitions:
            hint = f"Definition names are lowercase: did you mean {name.lower()!r}?"
        elif close := difflib.get_close_matches(name, names, n=3, cutoff=0.6):
            hint = f"Did you mean {' or '.join(repr(c) for c in close)}?"
        elif len(names) <= 20:
            hint = f"It defines {', '.join(names) or 'none'}."
        else:
            hint = f"It defines {len(names)} (`ami-bridge status` lists them)."
        raise CatalogError(
            f"Unknown definition {name!r} in the catalog {self.path}. {hint} Use a name the "
            "catalog defines, or add the definition to it."
        )

    def encrypted_for(self, d: Definition) -> bool:
        """Whether the bridge's copies of `d`'s image are encrypted."""
        return self.encrypted if d.encrypted is None else d.encrypted

    def kms_key_for(self, d: Definition, region: str) -> str | None:
        """The KMS key for `d`'s copies in `region`, when the catalog names one."""
        return (self.kms_keys if d.kms_keys is None else d.kms_keys).get(region)

    def share_for(self, d: Definition) -> tuple[str, ...]:
        """Who may launch `d`'s images (the definition's list, else the catalog's)."""
        return self.share if d.share is None else d.share

    def max_age_for(self, d: Definition) -> float | None:
        """How many days `d`'s images last before they expire (None: forever)."""
        return self.max_age_days if d.max_age_days is None else d.max_age_days

    def closure(self, names: Iterable[str]) -> list[Definition]:
        """The named definitions and all their ancestors, parents before children."""
        wanted: set[str] = set()
        for name in names:
            current: str | None = self.get(name).name
            while current is not None and current not in wanted:
                wanted.add(current)
                current = self.definitions[current].parent
        return [self.definitions[n] for n in self._order if n in wanted]

    def all(self) -> list[Definition]:
        """Every definition, parents before children."""
        return [self.definitions[n] for n in self._order]


def load_catalog(
    repo_root: Path,
    catalog_path: str | None = None,
    *,
    cache_dir: Path | None = None,
    files: Files | None = None,
) -> Catalog:
    """Read, validate and check the catalog of the repository at `repo_root`.

    `files` is where the catalog and its paths are read (default: the working tree). With
    `cache_dir`, a catalog that validated before is not validated again.
    """
    rel = catalog_path or DEFAULT_CATALOG
    files = files or WorkingTree(repo_root)
    raw = files.read(rel, "catalog")
    if raw is None:
        raise CatalogError(
            f"No catalog at {rel} {files.where}. Create {DEFAULT_CATALOG} at the repository "
            "root (see the README's catalog section) or pass the path of yours as `catalog`."
        )
    try:
        data = json.loads(raw)
    except UnicodeDecodeError:
        raise CatalogError(f"The catalog {rel} is not UTF-8 text. Save it as UTF-8.") from None
    except json.JSONDecodeError as exc:
        raise CatalogError(
            f"The catalog {rel} is not valid JSON: {exc.msg} at line {exc.lineno}, "
            f"column {exc.colno}. Fix the syntax and run again."
        ) from None

    first = first_error(SCHEMA, data, raw, cache_dir)
    if first is not None:
        total = count_errors(SCHEMA, data)
        more = f" ({total - 1} more problem(s) after this one)" if total > 1 else ""
        raise CatalogError(
            f"The catalog {rel} is invalid at {first.json_path}: {first.message}{more}. "
            "See the catalog format in the README."
        )

    definitions: dict[str, Definition] = {}
    for name, spec in data["definitions"].items():
        definitions[name] = _definition(
            files,
            rel,
            name,
            spec,
            track_source=data.get("track_source", True),
            var_files=data.get("var_files", []),
            env=data.get("env", []),
            entry=entry_of(data, name),
        )

    for d in definitions.values():
        if d.parent is not None and d.source is not None:
            raise CatalogError(
                f"Definition {d.name!r} in {rel} has both a `parent` and a `source`: a child is "
                "built on its parent's image. Remove `source`, or the `parent` to make it a root."
            )
        if d.source is not None and not d.track_source:
            raise CatalogError(
                f"Definition {d.name!r} in {rel} has a `source` but does not track it "
                "(`track_source: false`): the bridge chooses that image, so it is always part of "
                "the fingerprint. Remove `track_source: false` for it, or the `source`."
            )
        for old in d.formerly:
            taken = old in definitions or any(
                old in o.formerly for o in definitions.values() if o.name != d.name
            )
            if taken:
                raise CatalogError(
                    f"Definition {d.name!r} in {rel} lists {old!r} in `formerly`, which is also "
                    "a current definition or another definition's former name: images can be "
                    "one definition's only. Remove it from `formerly` (or rename the other)."
                )
        if d.parent is not None and d.parent not in definitions:
            raise CatalogError(
                f"Definition {d.name!r} in {rel} names the parent {d.parent!r}, which the catalog "
                f"does not define. Add {d.parent!r} or correct the parent's name."
            )
    order = _topological_order(rel, definitions)
    manifest = data.get("manifest", {})
    lease = data.get("lease", {})
    return Catalog(
        path=rel,
        definitions=definitions,
        id=data.get("id"),
        tag_key=data.get("tag_key"),
        owners=tuple(data["owners"]) if "owners" in data else None,
        regions=tuple(data["regions"]) if "regions" in data else None,
        manifest_bucket=manifest.get("bucket"),
        manifest_prefix=manifest.get("prefix"),
        lease_bucket=lease.get("bucket"),
        lease_prefix=lease.get("prefix"),
        lease_ttl=float(lease["ttl_seconds"]) if "ttl_seconds" in lease else None,
        jobs=data.get("jobs"),
        channel_prefix=data.get("channels", {}).get("prefix")
        or ownership.default_channel_prefix(data.get("id")),
        encrypted=data.get("encrypted", False),
        kms_keys=MappingProxyType(dict(data.get("kms_keys", {}))),
        share=tuple(data.get("share", ())),
        max_age_days=data.get("max_age_days"),
        on_revoke=data.get("on_revoke", "deprecate"),
        protect=data.get("protect", True),
        require_recycle_bin=data.get("require_recycle_bin", True),
        archive_after_days=data.get("archive_after_days"),
        keep_rejected=data.get("keep_rejected", False),
        observe=data.get("observe"),
        provenance_key=data.get("provenance", {}).get("key"),
        _order=tuple(order),
    )


def _test(spec: Mapping[str, Any]) -> ImageTest:
    return ImageTest(
        name=spec["name"],
        command=tuple(spec.get("command", ())),
        builtin=spec.get("builtin"),
        timeout_seconds=float(spec.get("timeout_seconds", 1800)),
        instance_type=spec.get("instance_type", "t3.micro"),
    )


def _definition(
    files: Files,
    rel: str,
    name: str,
    spec: Mapping[str, Any],
    *,
    track_source: bool,
    var_files: Sequence[str],
    env: Sequence[str] = (),
    entry: str,
) -> Definition:
    template = normalize(spec["template"])
    kind = files.kind(spec["template"], f"template of {name!r}")
    fmt: TemplateFormat
    if kind == "dir":
        fmt, directory = "hcl2", template
        if not any(n.endswith(".pkr.hcl") for n in files.names(template)):
            raise CatalogError(
                f"The template directory {template!r} of definition {name!r} holds no *.pkr.hcl "
                "file. Point `template` at a Packer JSON template, an HCL2 file or a directory of "
                "HCL2 files."
            )
    elif kind == "file":
        if template.endswith(".pkr.hcl"):
            fmt = "hcl2"
        elif template.endswith(".json"):
            fmt = "json"
        else:
            raise CatalogError(
                f"The template {template!r} of definition {name!r} is neither a .json nor a "
                ".pkr.hcl file. Rename it or point `template` at the right file."
            )
        directory = normalize(str(PurePosixPath(template).parent))
    else:
        raise CatalogError(
            f"The template {template!r} of definition {name!r} does not exist {files.where}. "
            f"Fix the `template` path in {rel} (it is relative to the repository root)."
        )
    for variable, value in spec.get("variables", {}).items():
        if variable in BRIDGE_VARIABLES:
            raise CatalogError(
                f"Definition {name!r} in {rel} sets the Packer variable {variable!r}, which the "
                f"bridge sets itself ({BRIDGE_VARIABLES[variable]}): a catalog value would build "
                "an image its tags do not describe. Remove it from `variables`."
            )
        check_value(rel, name, variable, value, fmt)
    only = spec.get("only")
    if only is not None and any(c in only for c in "*?[]{},"):
        raise CatalogError(
            f"The `only` of definition {name!r} in {rel} is {only!r}: a definition makes one "
            "image, so it names one build exactly, without wildcards or commas. Name the source "
            "(HCL2: <type>.<name>) or builder (JSON: its name) it builds."
        )
    var_files = spec.get("var_files", var_files)
    for item in var_files:
        what = f"var file of {name!r}"
        found = files.kind(item, what)
        if found != "file":
            raise CatalogError(
                f"The {what} {item!r} in {rel} "
                + ("is a directory" if found == "dir" else f"does not exist {files.where}")
                + ". List Packer variable files in `var_files` (paths relative to the repository "
                "root)."
            )
        if fmt == "hcl2" and not item.endswith((".hcl", ".json")):
            raise CatalogError(
                f"The {what} {item!r} in {rel} ends neither in .hcl nor in .json, which Packer "
                "needs to read it with an HCL2 template. Rename it (e.g. .pkrvars.hcl)."
            )
    inputs = []
    for item in spec.get("inputs", []):
        if files.kind(item, f"input of {name!r}") == "dir" and not files.names(normalize(item)):
            raise CatalogError(
                f"Input {item!r} of definition {name!r} is an empty directory, and git does not "
                "track empty directories, so it cannot be fingerprinted. Put the files it should "
                "hold in it (or a .gitkeep) and commit them, or remove it from `inputs`."
            )
        inputs.append(normalize(item))
    check_tag_room(name, spec.get("tags", {}))
    return Definition(
        name=name,
        template=template,
        template_format=fmt,
        directory=directory,
        inputs=tuple(inputs),
        parent=spec.get("parent"),
        formerly=tuple(spec.get("formerly", ())),
        variables=MappingProxyType(dict(sorted(spec.get("variables", {}).items()))),
        regions=tuple(spec.get("regions", ())),
        tags=MappingProxyType(dict(sorted(spec.get("tags", {}).items()))),
        encrypted=spec.get("encrypted"),
        kms_keys=MappingProxyType(dict(spec["kms_keys"])) if "kms_keys" in spec else None,
        share=tuple(spec["share"]) if "share" in spec else None,
        max_age_days=spec.get("max_age_days"),
        tests=tuple(_test(t) for t in spec.get("tests", ())),
        source=filter_from(
            f"The catalog's `source` of {name!r}",
            spec["source"],
            origin="catalog source",
            kind="catalog",
            most_recent_default=True,
        )
        if "source" in spec
        else None,
        track_source=spec.get("track_source", track_source),
        only=only,
        var_files=tuple(normalize(item) for item in var_files),
        env=tuple(spec.get("env", env)),
        entry=entry,
    )


def _topological_order(rel: str, definitions: Mapping[str, Definition]) -> list[str]:
    order: list[str] = []
    state: dict[str, str] = {}
    for start in definitions:
        path: list[str] = []
        current: str | None = start
        while current is not None and state.get(current) != "done":
            if state.get(current) == "visiting":
                cycle = " -> ".join([*path[path.index(current) :], current])
                raise CatalogError(
                    f"The catalog {rel} has a parent cycle: {cycle}. A definition cannot be "
                    "built on itself; remove one of these `parent` links."
                )
            state[current] = "visiting"
            path.append(current)
            current = definitions[current].parent
        for name in reversed(path):
            state[name] = "done"
            order.append(name)
    return order
