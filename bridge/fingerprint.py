"""Content fingerprints of definitions, computed from git objects at one commit.

A fingerprint names the content an image is built from, never the history that led to it:

* A definition with a single input (its directory), no parent, no variables, var files or
  `only`, and no tracked source filter (sources.py), whose directory holds no template file but
  its own, gets the git tree SHA of that directory. That is what the seed pipeline tags with
  (`git ls-tree HEAD <dir>`), so images it built are found as they are. Two definitions in one
  directory would share that SHA, so they get the encoding below, which names the template.
* Every other definition gets the SHA-1 of the encoding below (version 2), UTF-8, each line ending
  in a newline, paths and values written as JSON strings:

      ami-chain-bridge/fingerprint/v2
      template "<template path>"
      only "<build>"                                         (only when the definition selects one)
      input "<path>" <mode> <blob|tree|commit> <git SHA>     (one line per input, sorted by path;
                                                              commit: a submodule's recorded one)
      source "<origin>" <AMI ID>                             (a root's upstream image, per source
                                                              filter, sorted; see sources.py)
      parent <parent fingerprint>                            (only when there is a parent)
      var_file "<path>"                                      (one line per var file, in the order
                                                              Packer reads them)
      variable "<name>" <value>                              (one line per variable, sorted by
                                                              name; the value as canonical JSON,
                                                              so a string is "<value>")

Inputs are the definition's directory, its declared `inputs` and var files, the files its
template (JSON or HCL2) makes Packer read (templates/reads.py), and what every symlink among or
below those points to (a tree's SHA covers a link's text, not its target). A definition that selects
its build with `only` from an HCL2 directory has that directory's Packer files in place of the
directory, where the bridge knows everything Packer reads from it (templates.template_reads).
An input inside another input's directory is dropped, since the directory's tree SHA covers it.
The git objects are read through git.py.

Version 2 differs from version 1 in what counts as an input (link targets) and in when a root keeps
the seed's tree SHA (alone in its directory), and a submodule input's kind is `commit`. The new
header makes every composite fingerprint new, so images named under version 1 are rebuilt once.

Git cost: one `git status` (dirty check) and one long-lived `git cat-file --batch` for all object
reads (GitPython adds its `git version` checks and a `cat-file --batch-check`), however many
definitions and commits there are.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import git

from bridge.catalog import BRIDGE_VARIABLES, Definition, canonical_value, entry_of
from bridge.errors import FingerprintError
from bridge.git import (
    GITLINK_MODE,
    LINK_MODE,
    TREE_MODE,
    TreeIndex,
    changed_files,
    find_commit,
    is_head_sha,
    worktree_tree,
)
from bridge.repopaths import normalize
from bridge.sources import SourceFilter, SourcePick
from bridge.templates import (
    EnvironmentReads,
    Reads,
    Variable,
    declared_variables,
    environment_reads,
    other_templates,
    source_filters,
    template_reads,
)

ENCODING_VERSION = "ami-chain-bridge/fingerprint/v2"


def _refuse_undeclared(d: Definition, declared: set[str]) -> None:
    """Refuse a definition whose values would not reach its image while they count in its
    fingerprint: a child's template must declare `ami_base` (else Packer builds it on the
    template's own source image, tagged as the parent's child); every catalog variable must be
    declared (a JSON template ignores a `-var` it does not declare; HCL2 refuses one only when
    Packer runs)."""
    if d.parent is not None and "ami_base" not in declared:
        raise FingerprintError(
            f"Definition {d.name!r} is built on its parent {d.parent!r}, but its template "
            f"{d.template} declares no variable `ami_base`, through which the bridge passes "
            "the parent's AMI, so Packer would build it on another image. Declare "
            '`variable "ami_base" { type = string }` (JSON: "ami_base" in `variables`) and '
            "use it as the source AMI."
        )
    unknown = sorted(set(d.variables) - declared)
    if not unknown:
        return
    import difflib

    named = ", ".join(f"`{n}`" for n in unknown)
    hints = [
        f"`{n}` (did you mean `{close[0]}`?)"
        for n in unknown
        if (close := difflib.get_close_matches(n, sorted(declared), n=1, cutoff=0.6))
    ]
    raise FingerprintError(
        f"Definition {d.name!r} sets {named} in the catalog's `variables`, but its template "
        f"{d.template} declares no such variable, so the value would not reach the image (a "
        "JSON template ignores a -var it does not declare; HCL2 refuses it) while it counts "
        "in the image's fingerprint. Correct the name in the catalog"
        + (f", {'; '.join(hints)}" if hints else "")
        + ', or declare the variable in the template (`variable "NAME" {}`; JSON: in '
        "`variables`) and use it."
    )


@dataclass(frozen=True)
class InputEntry:
    """One git object that goes into a fingerprint."""

    path: str
    mode: str
    kind: Literal["blob", "tree", "commit"]
    sha: str


@dataclass(frozen=True)
class Fingerprint:
    """The identity of one definition's image at one commit."""

    definition: str
    value: str
    inputs: tuple[InputEntry, ...]
    parent: str | None
    # The upstream images its source filters chose (a root's only), pinned for the build.
    sources: tuple[SourcePick, ...] = ()
    # The builds `packer build` runs for it, as `-only` names them (one, or build.py refuses).
    builds: tuple[str, ...] = ()
    # The variables its template declares, read from this tree: the `-var`s a build may pass.
    variables: frozenset[str] = frozenset()
    # Every variable's value as Packer takes it, the layer it comes from and whether the build
    # uses it (templates/environment.py), for `inputs`.
    values: tuple[Variable, ...] = ()


@dataclass(frozen=True)
class Snapshot:
    """The fingerprints of a set of definitions at one commit."""

    commit: str
    # The tree whose content was fingerprinted, and so is built: the commit's, or with
    # allow_dirty and uncommitted changes, the commit's with the inputs' working-tree content.
    tree: str
    dirty: bool
    fingerprints: dict[str, Fingerprint]


# Chooses the upstream image of each of a definition's source filters (resolve.py, with EC2).
SourcePicker = Callable[[Definition, Sequence[SourceFilter]], Sequence[SourcePick]]


def fingerprint_all(
    repo: git.Repo,
    definitions: Sequence[Definition],
    *,
    commit: str | None = None,
    allow_dirty: bool = False,
    catalog_path: str | None = None,
    pick_sources: SourcePicker | None = None,
    environment: Mapping[str, str] | None = None,
) -> Snapshot:
    """Fingerprint `definitions` (parents before children) at `commit` (default HEAD).

    A root definition that tracks its source (`track_source`) and has source filters gets the
    images `pick_sources` chooses for them in its fingerprint; without `pick_sources` (no AWS)
    such a definition is an error, never a fingerprint that leaves its base out.

    Uncommitted changes to an input are an error unless `allow_dirty`, in which case the working
    tree content is hashed with git's own object hashing instead. With `catalog_path`, each
    definition's catalog entry must be the one committed there too (the same rule).
    """
    commit_obj = find_commit(repo, commit)
    root = TreeIndex(repo, commit_obj.tree.hexsha)
    checks_worktree = commit is None or is_head_sha(repo, commit_obj.hexsha)
    if catalog_path is not None:
        _check_entries(
            root, catalog_path, definitions, commit_obj.hexsha, checks_worktree and allow_dirty
        )
    reads = {d.name: template_reads(root, d, commit_obj.hexsha) for d in definitions}
    inputs = {d.name: _inputs(root, d, reads[d.name], commit_obj.hexsha) for d in definitions}
    dirty = False
    if checks_worktree:
        paths = sorted({p for items in inputs.values() for p in items})
        changed = changed_files(repo, paths)
        if changed and not allow_dirty:
            owners = sorted(
                {
                    name
                    for name, items in inputs.items()
                    for f in changed
                    for p in items
                    if p == "." or f == p or f.startswith(p + "/")
                }
            )
            shown = ", ".join(changed[:10]) + (" ..." if len(changed) > 10 else "")
            raise FingerprintError(
                f"Uncommitted changes to inputs of {', '.join(owners)}: {shown}. An image is "
                "named by committed content: commit (or stash) these changes, or pass "
                "--allow-dirty (allow_dirty=true in a query) to fingerprint the working tree "
                "as it is."
            )
        if changed:
            dirty = True
            committed = root
            # The working tree's templates may name files the commit's did not: hash those too,
            # until the inputs stop growing.
            while True:
                root = TreeIndex(repo, worktree_tree(repo, commit_obj, committed, paths))
                reads = {d.name: template_reads(root, d, commit_obj.hexsha) for d in definitions}
                inputs = {
                    d.name: _inputs(root, d, reads[d.name], commit_obj.hexsha) for d in definitions
                }
                grown = sorted({p for items in inputs.values() for p in items} | set(paths))
                if grown == paths:
                    break
                paths = grown
    result: dict[str, Fingerprint] = {}
    for d in definitions:
        parent_fp = result[d.parent].value if d.parent is not None else None
        declared = declared_variables(root, d, commit_obj.hexsha)
        if d.parent is not None or d.variables:
            _refuse_undeclared(d, declared)
        picks: Sequence[SourcePick] = ()
        if d.parent is None and d.track_source:
            filters = source_filters(root, d, commit_obj.hexsha)
            if filters and pick_sources is None:
                raise FingerprintError(
                    f"Definition {d.name!r} chooses its upstream image with a filter "
                    f"({', '.join(f.origin for f in filters)}), which is part of its fingerprint "
                    "and needs EC2 to resolve. Resolve it with AWS credentials, or set "
                    "`track_source: false` to leave the choice to Packer."
                )
            if filters and pick_sources is not None:
                picks = pick_sources(d, filters)
        _check_one_build(d, reads[d.name].builds)
        found = _check_environment(root, d, commit_obj.hexsha, environment or {})
        values = {name: (environment or {}).get(name, "") for name in d.env}
        result[d.name] = _fingerprint(
            root,
            d,
            inputs[d.name],
            parent_fp,
            picks,
            builds=reads[d.name].builds,
            env=values,
            variables=frozenset(declared),
            values=found.variables,
        )
    return Snapshot(commit=commit_obj.hexsha, tree=root.sha, dirty=dirty, fingerprints=result)


def _check_one_build(d: Definition, builds: Sequence[str]) -> None:
    """A definition makes one image: a template with several builds needs `only` (refused here,
    so check, status, plans and matrices say it before a build would)."""
    if d.only is None and len(builds) > 1:
        raise FingerprintError(
            f"The template {d.template} of definition {d.name!r} has {len(builds)} builds "
            f"({', '.join(builds)}), and a definition makes one image. Choose its build with "
            "`only` in the catalog (one definition per build), as `packer build -only` does."
        )


def _check_environment(
    root: TreeIndex, d: Definition, commit: str, environment: Mapping[str, str]
) -> EnvironmentReads:
    """A build may read from the environment only what the catalog's `env` lists (whose values
    are in the fingerprint), and the builder's credentials (templates/environment.py: what it
    reads)."""
    found = environment_reads(root, d, commit, environment)
    if "*" in found.reads:
        raise FingerprintError(
            f"The template {d.template} of definition {d.name!r} reads an environment variable "
            f"whose name it computes ({found.reads['*'].where}), so the bridge cannot tell which "
            'value builds the image. Name it literally (env("X"), {{env `X`}}) and list it in '
            "the catalog's `env`."
        )
    unlisted = found.unlisted(d)
    if not unlisted:
        return found
    named = "; ".join(f"{n} ({found.reads[n].where})" for n in unlisted)
    variables = sorted({v for n in unlisted if (v := found.reads[n].variable) is not None})
    settable = [v for v in variables if v not in BRIDGE_VARIABLES]
    plural = len(unlisted) > 1
    raise FingerprintError(
        f"The template {d.template} of definition {d.name!r} reads the environment "
        f"variable{'s' if plural else ''} {named}, which the fingerprint does not know: "
        "whichever environment builds first would define the image for everyone. List "
        f"{'them' if plural else 'it'} in the catalog's `env` (the values at resolve time "
        "become part of the identity)"
        + (
            f", or set {', '.join(f'`{v}`' for v in settable)} in the catalog's `variables` "
            "(a value there wins over the default and the environment, so Packer reads neither)"
            if settable
            else ""
        )
        + "."
    )


def _followed(root: TreeIndex, path: str) -> str:
    """`path`, or where it points when it is a symlink that stays in the repository (a catalog
    kept elsewhere and linked to, say); followed as git stores it, a link at a time."""
    for _ in range(40):  # as the kernel's limit on nested links
        found = root.lookup(path)
        if found is None or found[0] != LINK_MODE:
            return path
        target = (root.read(path) or b"").decode("utf-8", errors="replace")
        joined = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
        if target.startswith("/") or joined == ".." or joined.startswith("../"):
            return path  # out of the repository: read as it is, and refused as not a catalog
        path = joined
    return path


def _check_entries(
    root: TreeIndex,
    catalog_path: str,
    definitions: Sequence[Definition],
    commit: str,
    allow_dirty: bool,
) -> None:
    """The catalog entries in use are the ones committed at `commit` (or `allow_dirty` says the
    working tree's count). Otherwise the fingerprint would name one entry and the build use
    another: a variable edited but not committed, or today's catalog applied to an old commit."""
    raw = root.read(_followed(root, normalize(catalog_path)))
    try:
        data = json.loads(raw or b"null")
        committed = data["definitions"]
    except (ValueError, TypeError, KeyError):
        committed = None
    if not isinstance(committed, dict):
        differing = [d.name for d in definitions]
    else:
        differing = [
            d.name
            for d in definitions
            if d.name not in committed or entry_of(data, d.name) != d.entry
        ]
    if not differing or allow_dirty:
        return
    where = "is not committed" if raw is None else "is not a catalog"
    found = (
        f"the catalog {catalog_path} {where} at {commit[:12]}"
        if not isinstance(committed, dict)
        else f"the catalog entries of {', '.join(differing)} differ from the ones committed at "
        f"{commit[:12]}"
    )
    raise FingerprintError(
        f"Cannot fingerprint {', '.join(differing)}: {found}. An image is named by the catalog "
        "entry committed with its files: commit the catalog (or stash its changes), resolve at "
        "the commit whose catalog you have, or pass --allow-dirty (allow_dirty=true in a "
        "query) to use the working tree's."
    )


def encode(
    definition: Definition,
    entries: Iterable[InputEntry],
    parent_fingerprint: str | None,
    sources: Iterable[SourcePick] = (),
    *,
    env: Mapping[str, str] | None = None,
) -> bytes:
    """The canonical encoding hashed into a composite fingerprint (ENCODING_VERSION)."""
    lines = [ENCODING_VERSION, f"template {json.dumps(definition.template)}"]
    if definition.only is not None:
        lines.append(f"only {json.dumps(definition.only)}")
    for e in sorted(entries, key=lambda e: e.path):
        lines.append(f"input {json.dumps(e.path)} {e.mode} {e.kind} {e.sha}")
    for s in sorted(sources, key=lambda s: s.filter.origin):
        lines.append(f"source {json.dumps(s.filter.origin)} {s.ami_id}")
    if parent_fingerprint is not None:
        lines.append(f"parent {parent_fingerprint}")
    for path in definition.var_files:
        lines.append(f"var_file {json.dumps(path)}")
    for name, value in sorted(definition.variables.items()):
        lines.append(f"variable {json.dumps(name)} {canonical_value(value)}")
    for name in sorted(definition.env):
        lines.append(f"env {json.dumps(name)} {json.dumps((env or {}).get(name, ''))}")
    return "".join(line + "\n" for line in lines).encode("utf-8")


def _fingerprint(
    root: TreeIndex,
    d: Definition,
    paths: Sequence[str],
    parent_fp: str | None,
    sources: Sequence[SourcePick] = (),
    *,
    builds: tuple[str, ...] = (),
    env: Mapping[str, str] | None = None,
    variables: frozenset[str] = frozenset(),
    values: tuple[Variable, ...] = (),
) -> Fingerprint:
    entries = tuple(_entry(root, d, p) for p in paths)
    seed = (
        parent_fp is None
        and not sources
        and not d.variables
        and d.only is None
        and not d.var_files
        and not d.env
        and list(paths) == [d.directory]
        and not other_templates(root, d)
    )
    if seed and entries[0].kind == "tree":
        value = entries[0].sha
    else:
        value = hashlib.sha1(
            encode(d, entries, parent_fp, sources, env=env or {}), usedforsecurity=False
        ).hexdigest()
    return Fingerprint(d.name, value, entries, parent_fp, tuple(sources), builds, variables, values)


def _inputs(root: TreeIndex, d: Definition, reads: Reads, commit: str) -> list[str]:
    candidates = [*reads.paths, *d.inputs]
    candidates += _link_targets(root, d, candidates, commit)
    unique = sorted(set(candidates))
    # A path below another input is covered by that input's tree SHA (only a tree has children).
    return [
        p for p in unique if not any(o != p and (o == "." or p.startswith(o + "/")) for o in unique)
    ]


def _entry(root: TreeIndex, d: Definition, path: str) -> InputEntry:
    found = root.lookup(path)
    if found is None:
        raise FingerprintError(
            f"Input {path!r} of definition {d.name!r} is not in the fingerprinted commit. Commit "
            "it (git add, git commit), or fix the path in the catalog or the template (paths "
            "there are relative to the repository root, where Packer runs)."
        )
    mode, sha = found
    kind: Literal["blob", "tree", "commit"] = (
        "tree" if mode == TREE_MODE else "commit" if mode == GITLINK_MODE else "blob"
    )
    return InputEntry(path, f"{mode:06o}", kind, sha)


def _link_targets(root: TreeIndex, d: Definition, paths: Sequence[str], commit: str) -> list[str]:
    """What the symlinks among `paths`, or anywhere below them, point to.

    A tree's SHA covers a link's text, not the content it points to, so each target is an input
    of its own (followed in turn). A link out of the repository, or to nothing, is refused.
    """
    targets: list[str] = []
    seen: set[str] = set()
    pending = list(paths)
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        found = root.lookup(path)
        if found is None:
            continue  # _entry names a missing input
        mode = found[0]
        if mode == LINK_MODE:
            target = _link_target(root, d, path, commit)
            targets.append(target)
            pending.append(target)
        elif mode == TREE_MODE:
            prefix = "" if path == "." else path + "/"
            pending += [
                prefix + name
                for name, (child_mode, _) in root.listing(path).items()
                if child_mode in (LINK_MODE, TREE_MODE)
            ]
    return targets


def _link_target(root: TreeIndex, d: Definition, path: str, commit: str) -> str:
    target = (root.read(path) or b"").decode("utf-8", errors="replace")
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
    if posixpath.isabs(target) or resolved == ".." or resolved.startswith("../"):
        raise FingerprintError(
            f"{path!r}, an input of definition {d.name!r}, is a symlink to {target!r}, outside "
            "the repository: Packer would build from content the fingerprint cannot see. "
            "Replace the link with the file itself."
        )
    if root.lookup(resolved) is None:
        raise FingerprintError(
            f"{path!r}, an input of definition {d.name!r}, is a symlink to {target!r}, which is "
            f"not in commit {commit[:12]}. Commit the file it points to, or remove the link."
        )
    return resolved
