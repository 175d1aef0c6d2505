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

import dataclasses
import hashlib
import json
import posixpath
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import git

from bridge.catalog import Definition
from bridge.entries import canonical_value
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
from bridge.refusals import check_entries, check_environment, check_one_build, refuse_undeclared
from bridge.sources import SourceFilter, SourcePick
from bridge.templates import (
    Reads,
    Variable,
    declared_variables,
    fixed_source_amis,
    other_templates,
    source_filters,
    template_reads,
)

ENCODING_VERSION = "ami-chain-bridge/fingerprint/v2"


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
    # The upstream images a root's template names outright (`source_ami`), for its provenance.
    fixed_sources: tuple[str, ...] = ()


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
        check_entries(
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
            refuse_undeclared(d, declared)
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
        check_one_build(d, reads[d.name].builds)
        found = check_environment(root, d, commit_obj.hexsha, environment or {})
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
        if d.parent is None:
            fixed = fixed_source_amis(root, d, commit_obj.hexsha)
            result[d.name] = dataclasses.replace(result[d.name], fixed_sources=fixed)
    return Snapshot(commit=commit_obj.hexsha, tree=root.sha, dirty=dirty, fingerprints=result)


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
