"""Content fingerprints of definitions, computed from git objects at one commit.

A fingerprint names the content an image is built from, never the history that led to it:

* A definition with a single input (its directory), no parent, no variables and no tracked
  source filter (sources.py), whose directory holds no template file but its own, gets the git
  tree SHA of that directory. That is what the
  seed pipeline tags with (`git ls-tree HEAD <dir>`), so images it built are found as they are.
  Two definitions in one directory would share that SHA, so they get the encoding below, which
  names the template.
* Every other definition gets the SHA-1 of the encoding below (version 2), UTF-8, each line ending
  in a newline, paths and values written as JSON strings:

      ami-chain-bridge/fingerprint/v2
      template "<template path>"
      input "<path>" <mode> <blob|tree|commit> <git SHA>     (one line per input, sorted by path;
                                                              commit: a submodule's recorded one)
      source "<origin>" <AMI ID>                             (a root's upstream image, per source
                                                              filter, sorted; see sources.py)
      parent <parent fingerprint>                            (only when there is a parent)
      variable "<name>" "<value>"                            (one line per variable, sorted by name)

Inputs are the definition's directory, its declared `inputs`, the files its template (JSON or
HCL2) makes Packer read (see _PROVISIONER_FILES and _BUILDER_FILES), and what
every symlink among or below those points to (a tree's SHA covers a link's text, not its target).
An input inside another input's directory is dropped, since the directory's tree SHA covers it.

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
import logging
import os
import posixpath
import re
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import git
from git.objects.fun import tree_entries_from_data

from bridge.catalog import Definition, canonical_entry, normalize
from bridge.errors import CatalogError, FingerprintError
from bridge.sources import SourceFilter, SourcePick, filter_from

log = logging.getLogger(__name__)

ENCODING_VERSION = "ami-chain-bridge/fingerprint/v2"
_TEMPLATE_DIR = re.compile(r"\{\{\s*template_dir\s*\}\}")
_TREE_MODE = 0o040000
_LINK_MODE = 0o120000
_GITLINK_MODE = 0o160000


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


@dataclass(frozen=True)
class Snapshot:
    """The fingerprints of a set of definitions at one commit."""

    commit: str
    # The tree whose content was fingerprinted, and so is built: the commit's, or with
    # allow_dirty and uncommitted changes, the commit's with the inputs' working-tree content.
    tree: str
    dirty: bool
    fingerprints: dict[str, Fingerprint]


def open_repo(path: Path, *, named: str = "`repo`") -> git.Repo:
    """Open the git repository that holds `path` (its root, or a directory inside it); `named`
    is how messages name the option that gave it."""
    if not path.is_dir():
        what = "is not a directory" if path.exists() else "does not exist (directory not found)"
        raise FingerprintError(
            f"The repository directory {path} {what}. Pass the directory of the Packer "
            f"repository (or of its catalog, inside it) as {named}."
        )
    try:
        repo = git.Repo(path, search_parent_directories=True)
    except (git.NoSuchPathError, git.InvalidGitRepositoryError):
        raise FingerprintError(
            f"{path} is not inside a git repository. Fingerprints come from git content: pass "
            f"a directory of a clone of the Packer repository as {named}."
        ) from None
    if repo.bare or repo.working_tree_dir is None:
        raise FingerprintError(f"{path} is in a bare repository; pass a checkout instead.")
    return repo


class CommitFiles:
    """A commit's tree as the place a catalog is read (catalog.Files): what `commit` pins."""

    def __init__(self, repo: git.Repo, commit: str) -> None:
        found = _commit(repo, commit)
        self._tree = TreeIndex(repo, found.tree.hexsha)
        self.where = f"in commit {found.hexsha[:12]}"

    def _path(self, rel: str, what: str) -> str:
        path = normalize(rel)
        if PurePosixPath(rel).is_absolute() or path == ".." or path.startswith("../"):
            raise CatalogError(
                f"The {what} path {rel!r} leaves the repository. Keep templates, inputs and the "
                "catalog inside the repository."
            )
        return path

    def read(self, rel: str, what: str) -> bytes | None:
        return self._tree.read(self._path(rel, what))

    def kind(self, rel: str, what: str) -> Literal["file", "dir", "missing"]:
        found = self._tree.lookup(self._path(rel, what))
        return "missing" if found is None else "dir" if found[0] == _TREE_MODE else "file"

    def names(self, rel: str) -> list[str]:
        return sorted(self._tree.listing(normalize(rel)))


def is_head(repo: git.Repo, commit: str) -> bool:
    """Whether `commit` (any revision) is the checked-out commit."""
    return _is_head(repo, _commit(repo, commit).hexsha)


def fingerprint_all(
    repo: git.Repo,
    definitions: Sequence[Definition],
    *,
    commit: str | None = None,
    allow_dirty: bool = False,
    catalog_path: str | None = None,
    pick_sources: SourcePicker | None = None,
) -> Snapshot:
    """Fingerprint `definitions` (parents before children) at `commit` (default HEAD).

    A root definition that tracks its source (`track_source`) and has source filters gets the
    images `pick_sources` chooses for them in its fingerprint; without `pick_sources` (no AWS)
    such a definition is an error, never a fingerprint that leaves its base out.

    Uncommitted changes to an input are an error unless `allow_dirty`, in which case the working
    tree content is hashed with git's own object hashing instead. With `catalog_path`, each
    definition's catalog entry must be the one committed there too (the same rule).
    """
    commit_obj = _commit(repo, commit)
    root = TreeIndex(repo, commit_obj.tree.hexsha)
    checks_worktree = commit is None or _is_head(repo, commit_obj.hexsha)
    if catalog_path is not None:
        _check_entries(
            root, catalog_path, definitions, commit_obj.hexsha, checks_worktree and allow_dirty
        )
    inputs = {d.name: _inputs(root, d, commit_obj.hexsha) for d in definitions}
    dirty = False
    if checks_worktree:
        paths = sorted({p for items in inputs.values() for p in items})
        changed = _changed_files(repo, paths)
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
                "named by committed content: commit (or stash) these changes, or set "
                "allow_dirty=true to fingerprint the working tree as it is."
            )
        if changed:
            dirty = True
            committed = root
            # The working tree's templates may name files the commit's did not: hash those too,
            # until the inputs stop growing.
            while True:
                root = TreeIndex(repo, _worktree_tree(repo, commit_obj, committed, paths))
                inputs = {d.name: _inputs(root, d, commit_obj.hexsha) for d in definitions}
                grown = sorted({p for items in inputs.values() for p in items} | set(paths))
                if grown == paths:
                    break
                paths = grown
    result: dict[str, Fingerprint] = {}
    for d in definitions:
        parent_fp = result[d.parent].value if d.parent is not None else None
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
        result[d.name] = _fingerprint(root, d, inputs[d.name], parent_fp, picks)
    return Snapshot(commit=commit_obj.hexsha, tree=root.sha, dirty=dirty, fingerprints=result)


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
    raw = root.read(normalize(catalog_path))
    try:
        committed = json.loads(raw or b"null")["definitions"]
    except (ValueError, TypeError, KeyError):
        committed = None
    if not isinstance(committed, dict):
        differing = [d.name for d in definitions]
    else:
        differing = [
            d.name
            for d in definitions
            if d.name not in committed or canonical_entry(committed[d.name]) != d.entry
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
        "the commit whose catalog you have, or set allow_dirty=true to use the working tree's."
    )


class TreeIndex:
    """Path lookups in one git tree, reading each directory object once (git cat-file --batch)."""

    def __init__(self, repo: git.Repo, tree_sha: str) -> None:
        self._odb = repo.odb
        self.sha = tree_sha
        self._dirs: dict[str, dict[str, tuple[int, bytes]] | None] = {}
        # Parsed template files by path: the inputs and the source filters read the same ones.
        self.parsed: dict[str, Any] = {}

    def _entries(self, directory: str) -> dict[str, tuple[int, bytes]] | None:
        if directory not in self._dirs:
            if directory == ".":
                binsha: bytes | None = bytes.fromhex(self.sha)
            else:
                found = self.lookup(directory)
                binsha = bytes.fromhex(found[1]) if found and found[0] == _TREE_MODE else None
            self._dirs[directory] = (
                None
                if binsha is None
                else {
                    name: (mode, sha)
                    for sha, mode, name in tree_entries_from_data(self._odb.stream(binsha).read())
                }
            )
        return self._dirs[directory]

    def lookup(self, path: str) -> tuple[int, str] | None:
        """(mode, object SHA) of `path`, or None when the tree has no such path."""
        if path == ".":
            return _TREE_MODE, self.sha
        parent, _, name = path.rpartition("/")
        entries = self._entries(parent or ".")
        if entries is None or name not in entries:
            return None
        mode, binsha = entries[name]
        return mode, binsha.hex()

    def listing(self, directory: str) -> dict[str, tuple[int, bytes]]:
        """Name -> (mode, binary object SHA) of the entries of `directory` ({} for no tree)."""
        return self._entries(directory) or {}

    def read(self, path: str) -> bytes | None:
        """The content of the blob at `path`, or None."""
        found = self.lookup(path)
        if found is None or found[0] == _TREE_MODE:
            return None
        data: bytes = self._odb.stream(bytes.fromhex(found[1])).read()
        return data


def encode(
    definition: Definition,
    entries: Iterable[InputEntry],
    parent_fingerprint: str | None,
    sources: Iterable[SourcePick] = (),
) -> bytes:
    """The canonical encoding hashed into a composite fingerprint (ENCODING_VERSION)."""
    lines = [ENCODING_VERSION, f"template {json.dumps(definition.template)}"]
    for e in sorted(entries, key=lambda e: e.path):
        lines.append(f"input {json.dumps(e.path)} {e.mode} {e.kind} {e.sha}")
    for s in sorted(sources, key=lambda s: s.filter.origin):
        lines.append(f"source {json.dumps(s.filter.origin)} {s.ami_id}")
    if parent_fingerprint is not None:
        lines.append(f"parent {parent_fingerprint}")
    for name, value in sorted(definition.variables.items()):
        lines.append(f"variable {json.dumps(name)} {json.dumps(value)}")
    return "".join(line + "\n" for line in lines).encode("utf-8")


def _fingerprint(
    root: TreeIndex,
    d: Definition,
    paths: Sequence[str],
    parent_fp: str | None,
    sources: Sequence[SourcePick] = (),
) -> Fingerprint:
    entries = tuple(_entry(root, d, p) for p in paths)
    seed = (
        parent_fp is None
        and not sources
        and not d.variables
        and list(paths) == [d.directory]
        and not _other_templates(root, d)
    )
    if seed and entries[0].kind == "tree":
        value = entries[0].sha
    else:
        value = hashlib.sha1(
            encode(d, entries, parent_fp, sources), usedforsecurity=False
        ).hexdigest()
    return Fingerprint(d.name, value, entries, parent_fp, tuple(sources))


def _other_templates(root: TreeIndex, d: Definition) -> bool:
    """Whether the definition's directory holds a template file besides its own: one another
    definition, catalog or pipeline may build, whose images the tree SHA would name too. An HCL2
    directory template counts every file as another's, so it never takes the tree SHA."""
    own = posixpath.basename(d.template)
    return any(
        name != own and name.endswith((".json", ".pkr.hcl"))
        for name, (mode, _) in root.listing(d.directory).items()
        if mode != _TREE_MODE
    )


def _commit(repo: git.Repo, commit: str | None) -> git.Commit:
    rev = commit or "HEAD"
    try:
        sha = _head_sha(repo) if commit is None else commit.lower()
        if re.fullmatch(r"[0-9a-f]{40}", sha) and _is_commit(repo, sha):
            # HEAD and full SHAs are read through the one `cat-file --batch` the tree reads use.
            found = git.Commit(repo, bytes.fromhex(sha))
        else:  # branches, tags, short SHAs, `rev~2`: git's own revision parsing
            found = repo.commit(rev)
        found.tree  # noqa: B018 - reads the object, so a missing commit fails here
        return found
    except (git.BadName, git.BadObject, ValueError, git.GitCommandError):
        hint = (
            "Commit the Packer definitions first (git add, git commit)."
            if commit is None
            else "Pass a commit, branch or tag that exists in the repository."
        )
        raise FingerprintError(
            f"Cannot find commit {rev!r} in {repo.working_tree_dir}. {hint}"
        ) from None


def _head_sha(repo: git.Repo) -> str:
    """The SHA HEAD points at, read from the ref files (ValueError before the first commit)."""
    sha: str = git.SymbolicReference.dereference_recursive(repo, "HEAD")
    return sha


def _is_commit(repo: git.Repo, sha: str) -> bool:
    return bool(repo.odb.stream(bytes.fromhex(sha)).type == b"commit")


def _is_head(repo: git.Repo, sha: str) -> bool:
    try:
        return _head_sha(repo) == sha
    except ValueError:
        return False


def _inputs(root: TreeIndex, d: Definition, commit: str) -> list[str]:
    candidates = [d.directory, *d.inputs, *_template_paths(root, d, commit)]
    candidates += _link_targets(root, d, candidates, commit)
    unique = sorted(set(candidates))
    # A path below another input is covered by that input's tree SHA (only a tree has children).
    return [
        p for p in unique if not any(o != p and (o == "." or p.startswith(o + "/")) for o in unique)
    ]


# Where JSON templates name files Packer reads on the machine running it, by block type: keys
# holding one path, and keys holding a list of paths. A provisioner type not listed here gets a
# warning: its files must be listed under the definition's `inputs`.
_PROVISIONER_FILES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "shell": (("script",), ("scripts",)),
    "shell-local": (("script",), ("scripts",)),
    "powershell": (("script",), ("scripts",)),
    "windows-shell": (("script",), ("scripts",)),
    "file": (("source",), ("sources",)),
    "ansible": (("playbook_file", "galaxy_file", "inventory_file", "roles_path"), ()),
    "ansible-local": (
        ("playbook_file", "playbook_dir", "galaxy_file", "inventory_file", "group_vars",
         "host_vars"),
        ("playbook_paths", "role_paths"),
    ),
    "puppet-masterless": (
        ("manifest_file", "manifest_dir", "hiera_config_path"),
        ("module_paths",),
    ),
    "salt-masterless": (
        ("local_state_tree", "local_pillar_roots", "minion_config", "grains_file"),
        (),
    ),
    "chef-solo": (
        ("config_template", "data_bags_path", "encrypted_data_bag_secret_path",
         "environments_path", "roles_path"),
        ("cookbook_paths",),
    ),
    "breakpoint": ((), ()),
    "windows-restart": ((), ()),
}  # fmt: skip
_BUILDER_FILES: tuple[tuple[str, ...], tuple[str, ...]] = (
    ("user_data_file", "http_directory"),
    ("floppy_files", "floppy_dirs", "cd_files"),
)


def _template_paths(root: TreeIndex, d: Definition, commit: str) -> list[str]:
    """The repository files a template makes Packer read (README: recognised references)."""
    if d.template_format == "json":
        builders, provisioners, post_processors = _json_blocks(root, d, commit)
    else:
        builders, provisioners, post_processors = _hcl2_blocks(root, d, commit)
    found: list[str] = []
    for index, builder in enumerate(builders):
        found += _paths(d, f"builder {index}", builder, _BUILDER_FILES)
    for index, prov in enumerate(provisioners):
        kind = str(prov.get("type", ""))
        if kind == "file" and prov.get("direction", "upload") != "upload":
            continue  # a download writes to the repository; it reads nothing from it
        keys = _PROVISIONER_FILES.get(kind)
        if keys is None:
            log.warning(
                "%s: provisioner %d has type %r, whose file references the bridge does not "
                "understand; list the files it reads under the definition's `inputs` so changes "
                "to them rebuild the image",
                d.name,
                index,
                kind,
            )
            continue
        found += _paths(d, f"provisioner {index}", prov, keys)
    for index, pp in enumerate(post_processors):
        if pp.get("type") == "shell-local":
            found += _paths(d, f"post-processor {index}", pp, _PROVISIONER_FILES["shell-local"])
    return found


# Chooses the upstream image of each of a definition's source filters (resolve.py, with EC2).
SourcePicker = Callable[[Definition, Sequence[SourceFilter]], Sequence[SourcePick]]
Blocks = tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]


def _json_blocks(root: TreeIndex, d: Definition, commit: str) -> Blocks:
    """Builders, provisioners and post-processors of a JSON template."""
    template = _json_template(root, d, commit)
    if not isinstance(template, dict):
        return [], [], []
    return (
        _blocks(template.get("builders")),
        _blocks(template.get("provisioners")),
        _blocks(template.get("post-processors"), nested=True),
    )


def _json_template(root: TreeIndex, d: Definition, commit: str) -> Any:
    if d.template not in root.parsed:
        data = _template_text(root, d.template, d, commit)
        try:
            root.parsed[d.template] = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise FingerprintError(
                f"The JSON template {d.template} of definition {d.name!r} cannot be parsed: "
                f"{exc}. Check it with `packer validate`."
            ) from None
    return root.parsed[d.template]


def _hcl2_files(root: TreeIndex, d: Definition, commit: str) -> list[tuple[str, dict[str, Any]]]:
    """The HCL2 files of a template (a file, or every *.pkr.hcl of a directory), parsed."""
    import hcl2

    if d.template.endswith(".pkr.hcl"):
        files = [d.template]
    else:
        prefix = "" if d.directory == "." else d.directory + "/"
        files = [prefix + n for n in sorted(root.listing(d.directory)) if n.endswith(".pkr.hcl")]
    parsed = []
    for path in files:
        if path not in root.parsed:
            text = _template_text(root, path, d, commit)
            try:
                root.parsed[path] = hcl2.loads(text.decode("utf-8"))
            except Exception as exc:  # the parser raises its own lark errors
                raise FingerprintError(
                    f"The HCL2 file {path} of definition {d.name!r} cannot be parsed "
                    f"({type(exc).__name__}). Check it with `packer validate`."
                ) from None
        parsed.append((path, root.parsed[path]))
    return parsed


def source_filters(root: TreeIndex, d: Definition, commit: str) -> list[SourceFilter]:
    """The filters that choose `d`'s upstream image (sources.py): the catalog's `source`, and
    the template's amazon builders' `source_ami_filter` and `data "amazon-ami"` blocks. A
    builder with a literal `source_ami` is built on that image; its filter only checks it."""
    found = [] if d.source is None else [d.source]
    if d.template_format == "json":
        template = _json_template(root, d, commit)
        builders = template.get("builders") if isinstance(template, dict) else None
        for index, builder in enumerate(builders if isinstance(builders, list) else []):
            if not isinstance(builder, dict) or "source_ami_filter" not in builder:
                continue
            if not str(builder.get("type", "")).startswith("amazon-") or builder.get("source_ami"):
                continue
            spec = builder["source_ami_filter"]
            found.append(
                filter_from(
                    f"Builder {index} of {d.template} (definition {d.name!r})",
                    spec if isinstance(spec, dict) else {},
                    origin=f"builder {index}",
                    kind="json-builder",
                    file=d.template,
                    index=index,
                )
            )
        return found
    for path, data in _hcl2_files(root, d, commit):
        for key, kind, prefix in (
            ("source", "hcl2-source", "source"),
            ("data", "hcl2-data", "data"),
        ):
            for block in _dicts(data.get(key)):
                for type_name, named in block.items():
                    block_type = _hcl_string(type_name, d.directory)
                    wanted = "amazon-ami" if kind == "hcl2-data" else "amazon-"
                    if not isinstance(named, dict) or not block_type.startswith(wanted):
                        continue
                    for name, body in named.items():
                        label = _hcl_string(name, d.directory)
                        origin = f"{prefix}.{block_type}.{label}"
                        if not isinstance(body, dict):
                            continue
                        if kind == "hcl2-source":
                            specs = _dicts(body.get("source_ami_filter"))
                            if not specs or body.get("source_ami"):
                                continue
                            spec = specs[0]
                        else:
                            spec = body
                        found.append(
                            filter_from(
                                f"{origin} in {path} (definition {d.name!r})",
                                _hcl_spec(spec, d.directory),
                                origin=origin,
                                kind=kind,  # type: ignore[arg-type]
                                file=path,
                            )
                        )
    return found


def _hcl_spec(spec: dict[str, Any], template_dir: str) -> dict[str, Any]:
    """A filter block with python-hcl2's quoting removed (keys and string values)."""
    filters = spec.get("filters")
    owners = spec.get("owners")
    return {
        "filters": {
            _hcl_string(k, template_dir): _hcl_string(v, template_dir) for k, v in filters.items()
        }
        if isinstance(filters, dict)
        else filters,
        "owners": [_hcl_string(o, template_dir) for o in owners]
        if isinstance(owners, list)
        else owners,
        "most_recent": spec.get("most_recent", False),
    }


def _hcl2_blocks(root: TreeIndex, d: Definition, commit: str) -> Blocks:
    """Sources (builders), provisioners and post-processors of HCL2 files, as JSON-like blocks
    whose string values are plain paths (`${path.root}` expanded; other expressions left as
    `{{...}}`, which the reference check warns about)."""
    builders: list[dict[str, Any]] = []
    provisioners: list[dict[str, Any]] = []
    post_processors: list[dict[str, Any]] = []
    for path, data in _hcl2_files(root, d, commit):
        for source in _dicts(data.get("source")):
            for names in _dicts(list(source.values())):
                builders += [_hcl_block(body, d.directory) for body in names.values()]
        for build in _dicts(data.get("build")):
            for key, into in (("provisioner", provisioners), ("post-processor", post_processors)):
                for block in _dicts(build.get(key)):
                    into += [
                        {**_hcl_block(body, d.directory), "type": _hcl_string(kind, d.directory)}
                        for kind, body in block.items()
                    ]
            if "post-processors" in build:
                log.warning(
                    "%s: %s chains post-processors (a `post-processors` block), whose files the "
                    "bridge does not read; list the files they read under `inputs`",
                    d.name,
                    path,
                )
    return builders, provisioners, post_processors


def _dicts(value: Any) -> list[dict[str, Any]]:
    """The blocks in a python-hcl2 value (a list of dicts), ignoring other shapes."""
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _hcl_block(body: Any, template_dir: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        return {}
    return {
        key: [_hcl_string(v, template_dir) for v in value]
        if isinstance(value, list)
        else _hcl_string(value, template_dir)
        for key, value in body.items()
        if key != "__is_block__"
    }


def _hcl_string(value: Any, template_dir: str) -> Any:
    """An HCL2 string literal as text (python-hcl2 keeps the quotes); expressions stay marked."""
    if not isinstance(value, str):
        return value
    text = value
    if len(value) >= 2 and value[0] == value[-1] == '"':
        try:
            text = json.loads(value)
        except ValueError:
            text = value[1:-1]
    text = text.replace("${path.root}", template_dir).replace("${path.cwd}/", "")
    return text.replace("${", "{{")


def _template_text(root: TreeIndex, path: str, d: Definition, commit: str) -> bytes:
    data = root.read(path)
    if data is None:
        raise FingerprintError(
            f"The template {path} of definition {d.name!r} is not in commit {commit[:12]}. "
            "Commit it (git add, git commit) or fix the `template` path in the catalog."
        )
    return data


def _blocks(value: Any, *, nested: bool = False) -> list[dict[str, Any]]:
    """The object blocks of a template list (post-processors may nest one level of lists)."""
    items = value if isinstance(value, list) else []
    if nested:
        items = [b for item in items for b in (item if isinstance(item, list) else [item])]
    return [b for b in items if isinstance(b, dict)]


def _paths(
    d: Definition, where: str, block: dict[str, Any], keys: tuple[tuple[str, ...], tuple[str, ...]]
) -> list[str]:
    single, lists = keys
    refs: list[Any] = [block.get(k) for k in single]
    for key in lists:
        value = block.get(key)
        refs += value if isinstance(value, list) else []
    found = []
    for ref in refs:
        if isinstance(ref, str) and ref:
            path = _template_path(d, where, ref)
            if path is not None:
                found.append(path)
    return found


def _template_path(d: Definition, where: str, ref: str) -> str | None:
    resolved = _TEMPLATE_DIR.sub(d.directory, ref)
    if "{{" in resolved:
        log.warning(
            "%s: %s references %r, which depends on template variables; "
            "declare the file in the catalog's `inputs` so changes to it rebuild the image",
            d.name,
            where,
            ref,
        )
        return None
    pure = PurePosixPath(resolved)
    path = normalize(resolved)
    if pure.is_absolute() or path == ".." or path.startswith("../"):
        raise FingerprintError(
            f"The {where} of definition {d.name!r} reads {ref!r}, which is outside the "
            "repository, so its content cannot be part of the fingerprint. Move the file into "
            "the repository and reference it relative to the repository root."
        )
    return path


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
        "tree" if mode == _TREE_MODE else "commit" if mode == _GITLINK_MODE else "blob"
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
        if mode == _LINK_MODE:
            target = _link_target(root, d, path, commit)
            targets.append(target)
            pending.append(target)
        elif mode == _TREE_MODE:
            prefix = "" if path == "." else path + "/"
            pending += [
                prefix + name
                for name, (child_mode, _) in root.listing(path).items()
                if child_mode in (_LINK_MODE, _TREE_MODE)
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


def _changed_files(repo: git.Repo, paths: Sequence[str]) -> list[str]:
    if not paths:
        return []
    try:
        out = repo.git.status("--porcelain=v1", "-z", "--untracked-files=all", "--", *paths)
    except git.GitCommandError as exc:
        raise _git_failed("checking the inputs for uncommitted changes", exc) from None
    changed: list[str] = []
    records = iter(out.split("\0"))
    for record in records:
        if len(record) < 4:
            continue
        changed.append(record[3:])
        if record[0] in "RC":
            next(records, None)  # the rename source follows as its own record
    return sorted(changed)


def _worktree_tree(
    repo: git.Repo, commit: git.Commit, committed: TreeIndex, paths: Sequence[str]
) -> str:
    """The tree SHA of `commit` with `paths` replaced by their working-tree content."""
    root = repo.working_tree_dir
    assert root is not None
    existing = [
        p
        for p in paths
        if os.path.lexists(os.path.join(root, p)) or committed.lookup(p) is not None
    ]
    with tempfile.TemporaryDirectory(prefix="ami-bridge-index-") as tmp:
        env = {"GIT_INDEX_FILE": os.path.join(tmp, "index")}
        try:
            repo.git.read_tree(commit.hexsha, env=env)
            if existing:
                repo.git.add("-A", "--", *existing, env=env)
            sha: str = repo.git.write_tree(env=env)
        except git.GitCommandError as exc:
            raise _git_failed("hashing the working tree's inputs (allow_dirty)", exc) from None
    return sha


def _git_failed(doing: str, exc: git.GitCommandError) -> FingerprintError:
    detail = " ".join(str(exc.stderr or "").split()).removeprefix("stderr: ").strip("'")
    return FingerprintError(
        f"git failed while {doing}: {detail or exc.status}. An input may name a path git "
        "ignores (.gitignore): track it, or take it out of the inputs and the template."
    )
