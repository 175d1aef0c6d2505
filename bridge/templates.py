"""What a Packer template makes Packer read, from its files in one git tree.

A template is a JSON file, an HCL2 file, or a directory of `*.pkr.hcl` files, read from a tree
(templatefiles.py), never from the working tree, for: the repository files its builders,
provisioners and post-processors name (_PROVISIONER_FILES, _BUILDER_FILES; `{{template_dir}}`
and `${path.root}` expanded), the builds `packer build` runs and the one a definition's `only`
selects (with the provisioners and post-processors that apply to it), the files its functions
read (their paths evaluated with the template's variables, templatevars.py) and the environment
variables it reads.
"""

from __future__ import annotations

import json
import logging
import posixpath
import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Literal

from bridge import hcl
from bridge.catalog import Definition, normalize
from bridge.errors import FingerprintError
from bridge.evaluate import HclScope
from bridge.git import TREE_MODE, TreeIndex
from bridge.jsontemplate import env_names
from bridge.templatefiles import (
    dicts,
    hcl2_documents,
    hcl2_values,
    hcl_string,
    json_template,
    template_text,
)
from bridge.templatevars import hcl2_layers
from bridge.unknowable import Unknowable

log = logging.getLogger(__name__)

_TEMPLATE_DIR = re.compile(r"\{\{\s*template_dir\s*\}\}")

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


def template_paths(root: TreeIndex, d: Definition, commit: str) -> list[str]:
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
        # A JSON provisioner's `override` replaces its keys for one builder: those files are
        # read too.
        overrides = prov.get("override")
        for name, changed in sorted(overrides.items() if isinstance(overrides, dict) else []):
            if isinstance(changed, dict):
                where = f"provisioner {index} (override for {name})"
                found += _paths(d, where, {**prov, **changed}, keys)
        if kind == "ansible":
            found += _ansible_reads(d, f"provisioner {index}", prov)
    for index, pp in enumerate(post_processors):
        if pp.get("type") == "shell-local":
            found += _paths(d, f"post-processor {index}", pp, _PROVISIONER_FILES["shell-local"])
    if d.template_format == "hcl2":
        found += function_reads(root, d, commit)
    return found


# Environment variables a template may read without listing them in the catalog's `env`: the
# builder's credentials, which choose who builds, not what is built.
CREDENTIALS = frozenset(
    {
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
    }
)


def env_reads(root: TreeIndex, d: Definition, commit: str) -> set[str]:
    """The environment variables `d`'s template reads: `{{env `X`}}` in any string of a JSON
    template or of the values it is given (Packer renders `-var` and `-var-file` values as
    templates too), `env("X")` anywhere in its HCL2 files; "*" for a name that is not a literal."""
    if d.template_format == "json":
        names: set[str] = set()
        pending: list[Any] = [json_template(root, d, commit), *d.variables.values()]
        for path in d.var_files:
            try:
                pending.append(json.loads(template_text(root, path, d, commit)))
            except ValueError:
                continue  # refused where the var file is read for its values
        while pending:
            value = pending.pop()
            if isinstance(value, str):
                names |= env_names(value)
            elif isinstance(value, dict):
                pending += [*value.keys(), *value.values()]
            elif isinstance(value, list):
                pending += value
        return names
    found: set[str] = set()
    for doc in hcl2_documents(root, d, commit):
        for node in hcl.walk(doc.tree):
            if node.data != "function_call" or hcl.name_of(node.children[0]) != "env":
                continue
            first = _first_argument(node)
            found.add(_literal_name(doc.source(first)) if first is not None else "*")
    return found


def _first_argument(call: hcl.Node) -> hcl.Node | None:
    """The first argument of a function call node, or None when it has none."""
    args = [c for c in call.children if hcl.is_tree(c) and c.data == "arguments"]
    return next((a for a in args[0].children if hcl.is_tree(a)), None) if args else None


def _literal_name(source: str) -> str:
    """The variable name a literal string argument spells, or "*" for any other expression."""
    try:
        value = json.loads(source)
    except ValueError:
        return "*"
    return value if isinstance(value, str) and "${" not in value and value else "*"


# HCL2 functions that read a file (their first argument, relative to where Packer runs: the
# repository root), and fileset, which lists a directory (its first argument).
_FILE_FUNCTIONS = frozenset(
    {"file", "filebase64", "filemd5", "filesha1", "filesha256", "filesha512", "templatefile"}
)
_DIRECTORY_FUNCTIONS = frozenset({"fileset"})


def function_reads(root: TreeIndex, d: Definition, commit: str) -> list[str]:
    """The files and directories an HCL2 template reads through functions (`file`,
    `templatefile`, `fileset`, ...), wherever they are called (sources, provisioners, locals,
    variables' defaults), their path arguments evaluated as Packer would. A path the bridge
    cannot know before the build is refused: the image would change with a file it cannot name.
    """
    documents = hcl2_documents(root, d, commit)
    calls = [
        (doc, node)
        for doc in documents
        for node in hcl.walk(doc.tree)
        if node.data == "function_call"
        and hcl.name_of(node.children[0]) in _FILE_FUNCTIONS | _DIRECTORY_FUNCTIONS
    ]
    if not calls:
        return []
    # Packer joins a relative path to the template's directory (its `path.root`), as the
    # bridge passes the template to Packer by its absolute path (packer.py).
    scope = HclScope(
        documents, hcl2_layers(root, d, commit, documents), template_dir=_REPOSITORY + d.directory
    )
    found = []
    for doc, node in calls:
        function = hcl.name_of(node.children[0])
        first = _first_argument(node)
        if first is None:
            continue
        where = f"`{function}(...)` in {doc.path}"
        try:
            value = scope.evaluate(doc, first)
        except Unknowable as exc:
            raise FingerprintError(
                f"Definition {d.name!r}: {where} reads a path that depends on {exc.reason}, "
                "which the bridge cannot know before the build, so a change to that file would "
                "not change the fingerprint. Write the path as a literal (relative to the "
                "template's directory, as Packer reads it), or from variables whose values are in "
                "the template, its var files or the catalog."
            ) from None
        if isinstance(value, str) and value:
            path = _template_path(d, where, _from_template_dir(d, value))
            if path is not None:
                found.append(path)
    return found


# `path.root` while the bridge evaluates a file function's path: the template's directory below
# a root no real path has, so a path under it is told from one outside the repository.
_REPOSITORY = "/<repository>/"


def _from_template_dir(d: Definition, value: str) -> str:
    """A file function's path as a repository path (or an absolute one, refused as outside)."""
    if value.startswith(_REPOSITORY):
        return value[len(_REPOSITORY) :]
    if value.startswith("/"):
        return value
    return posixpath.join(d.directory, value)


# Precise inputs: a definition that selects its build with `only` from an HCL2 directory counts
# the directory through what Packer reads from it, when the bridge knows all of that. These are
# the block types whose repository reads are exactly the keys above: they run on the machine
# being built, or read nothing. Any other (shell-local and ansible run where the repository is
# and may read any of it; other builders have file keys of their own) keeps the whole directory.
_PRECISE_BUILDERS = frozenset({"amazon-ebs", "null"})
_PRECISE_PROVISIONERS = frozenset(
    {"shell", "powershell", "windows-shell", "file", "breakpoint", "windows-restart"}
)
_PRECISE_POST_PROCESSORS = frozenset({"manifest"})
# The files of an HCL2 directory Packer reads (besides what its blocks name).
_PACKER_FILES = (".pkr.hcl", ".auto.pkrvars.hcl", ".auto.pkrvars.json")
# HCL2 functions that read files (`file`, `filebase64`, `fileset`, `templatefile`, ...), as
# python-hcl2 writes a call in an expression.
_FILE_FUNCTION = re.compile(r"\b(file\w*|templatefile)\(")


@dataclass(frozen=True)
class Reads:
    """What Packer reads and builds for one definition (template_reads)."""

    # Repository paths: the definition's directory (or, with precise inputs, the Packer files
    # in it), its var files, and the files its blocks name.
    paths: tuple[str, ...]
    # The builds `packer build` runs for it (just the one `only` selects), as `-only` names them.
    builds: tuple[str, ...]


@dataclass(frozen=True)
class _Build:
    name: str  # as `packer build -only` names it
    source: str  # as provisioners' and post-processors' only/except name it
    block: int  # the build block it is in (0 in a JSON template)
    type: str
    body: dict[str, Any]  # its builder or source block
    # The top-level block it builds from: an HCL2 source's `<type>.<name>` before a build
    # block renames it, or a JSON builder's name.
    origin: str = ""


@dataclass(frozen=True)
class _Step:
    kind: Literal["provisioner", "post-processor"]
    index: int  # among the template's blocks of its kind, for messages
    block: int  # the build block it is in (0 in a JSON template)
    body: dict[str, Any]  # with its "type"


def template_reads(root: TreeIndex, d: Definition, commit: str) -> Reads:
    """What Packer reads for `d` and the builds it runs (README: precise inputs).

    Without `only`, every block of the template counts (template_paths). With it, the selected
    build's source and the provisioners and post-processors that apply to it (their only and
    except); in an HCL2 directory, the directory then counts through its Packer files, unless
    something in them may read what the bridge cannot name.
    """
    builds, steps = (
        _json_builds(root, d, commit)
        if d.template_format == "json"
        else _hcl2_builds(root, d, commit)
    )
    if d.only is None:
        paths = [d.directory, *d.var_files, *template_paths(root, d, commit)]
        return Reads(tuple(paths), tuple(b.name for b in builds))
    build = _selected(d, builds)
    unknown: list[str] = []
    block = "builder" if d.template_format == "json" else "source"
    found = _paths(d, f"{block} {build.source}", build.body, _BUILDER_FILES, unknown)
    if build.type not in _PRECISE_BUILDERS:
        unknown.append(f"its source is of type {build.type!r}")
    for step in (s for s in steps if _applies(s, build)):
        kind = str(step.body.get("type", ""))
        where = f"{step.kind} {step.index}"
        if step.kind == "post-processor":
            if kind == "shell-local":
                found += _paths(d, where, step.body, _PROVISIONER_FILES[kind], unknown)
            if kind not in _PRECISE_POST_PROCESSORS:
                unknown.append(f"{where} has type {kind!r}")
            continue
        if kind == "file" and step.body.get("direction") == "download":
            continue  # a download writes to the repository; it reads nothing from it
        keys = _PROVISIONER_FILES.get(kind)
        if keys is None:
            log.warning(
                "%s: %s has type %r, whose file references the bridge does not understand; list "
                "the files it reads under the definition's `inputs` so changes to them rebuild "
                "the image",
                d.name,
                where,
                kind,
            )
        else:
            found += _paths(d, where, step.body, keys, unknown)
        if kind not in _PRECISE_PROVISIONERS:
            unknown.append(f"{where} has type {kind!r}")
    if d.template_format == "hcl2" and not d.template.endswith(".pkr.hcl"):
        unknown += _unreadable(root, d, commit)
        if not unknown:
            packer_files = [
                normalize(f"{d.directory}/{name}")
                for name, (mode, _) in sorted(root.listing(d.directory).items())
                if mode != TREE_MODE and name.endswith(_PACKER_FILES)
            ]
            return Reads((*packer_files, *d.var_files, *found), (build.name,))
        log.info(
            "%s: its whole directory %s is an input, since %s",
            d.name,
            d.directory,
            "; ".join(unknown),
        )
    return Reads((d.directory, *d.var_files, *found), (build.name,))


def selected_origin(root: TreeIndex, d: Definition, commit: str) -> str | None:
    """The top-level block the build `d.only` selects builds from (an HCL2 source's
    `<type>.<name>`, a JSON builder's name); None without `only` (every block counts)."""
    if d.only is None:
        return None
    builds, _ = (
        _json_builds(root, d, commit)
        if d.template_format == "json"
        else _hcl2_builds(root, d, commit)
    )
    return _selected(d, builds).origin


def _selected(d: Definition, builds: list[_Build]) -> _Build:
    """The one build `d.only` names."""
    chosen = [b for b in builds if b.name == d.only]
    if len(chosen) == 1:
        return chosen[0]
    names = ", ".join(sorted({b.name for b in builds})) or "none"
    if not chosen:
        raise FingerprintError(
            f"The `only` of definition {d.name!r}, {d.only!r}, names no build of its template "
            f"{d.template} (its builds: {names}). Use one of these names, as `packer build "
            "-only` takes them."
        )
    raise FingerprintError(
        f"The `only` of definition {d.name!r}, {d.only!r}, names {len(chosen)} builds of its "
        f"template {d.template} (build blocks that run the same source), and a definition makes "
        'one image. Name those build blocks (`name = "..."`) and select one as '
        f"<build name>.{d.only}."
    )


def _applies(step: _Step, build: _Build) -> bool:
    """Whether Packer runs `step` in `build`: its build block's, and its only/except lists let
    it. A list the bridge cannot read (an expression) lets it: the step may run."""
    if step.block != build.block:
        return False
    only, excepted = _names(step.body.get("only")), _names(step.body.get("except"))
    if only and build.source not in only and build.name not in only:
        return False
    return not (excepted and build.source in excepted)


def _names(value: Any) -> list[str] | None:
    """The build names of an only/except list, or None when it is not a list of literals."""
    if not isinstance(value, list) or not all(isinstance(v, str) and "{{" not in v for v in value):
        return None
    return value


def _unreadable(root: TreeIndex, d: Definition, commit: str) -> list[str]:
    """What in an HCL2 directory may make Packer read files the bridge cannot name: HCL2 in
    JSON (`.pkr.json`, which it does not parse), and calls of file functions."""
    found = [
        f"{name} is HCL2 in JSON, which the bridge does not read"
        for name in sorted(root.listing(d.directory))
        if name.endswith(".pkr.json")
    ]
    for path, data in hcl2_values(root, d, commit):
        calls = sorted({m.group(1) for text in _texts(data) for m in _FILE_FUNCTION.finditer(text)})
        if calls:
            found.append(f"{path} calls {', '.join(calls)}")
    return found


def _texts(value: Any) -> list[str]:
    """The expressions in a python-hcl2 value (its `${...}` strings, keys included)."""
    found: list[str] = []
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str) and "${" in item:
            found.append(item)
        elif isinstance(item, list):
            pending += item
        elif isinstance(item, dict):
            pending += [*item.keys(), *item.values()]
    return found


def _json_builds(root: TreeIndex, d: Definition, commit: str) -> tuple[list[_Build], list[_Step]]:
    """A JSON template's builds (one per builder, named by `name` or type) and steps."""
    builders, provisioners, post_processors = _json_blocks(root, d, commit)
    builds: list[_Build] = []
    for builder in builders:
        name = str(builder.get("name") or builder.get("type", ""))
        builds.append(_Build(name, name, 0, str(builder.get("type", "")), builder, name))
    steps = [_Step("provisioner", i, 0, p) for i, p in enumerate(provisioners)]
    steps += [_Step("post-processor", i, 0, p) for i, p in enumerate(post_processors)]
    return builds, steps


def _hcl2_builds(root: TreeIndex, d: Definition, commit: str) -> tuple[list[_Build], list[_Step]]:
    """An HCL2 template's builds (one per source of each build block, named
    `[<build name>.]<type>.<name>`) and steps (chained post-processors included)."""
    files = hcl2_values(root, d, commit)
    sources: dict[str, tuple[str, dict[str, Any]]] = {}
    for _, data in files:
        for source in dicts(data.get("source")):
            for type_label, named in source.items():
                kind = hcl_string(type_label, d.directory)
                for name, body in named.items() if isinstance(named, dict) else ():
                    label = f"{kind}.{hcl_string(name, d.directory)}"
                    sources[label] = (kind, _hcl_block(body, d.directory))
    builds: list[_Build] = []
    steps: list[_Step] = []
    blocks = [build for _, data in files for build in dicts(data.get("build"))]
    for block, build in enumerate(blocks):
        name = hcl_string(build.get("name"), d.directory)
        prefix = f"{name}." if isinstance(name, str) and name else ""
        refs = build.get("sources")
        for ref in refs if isinstance(refs, list) else []:
            label = str(hcl_string(ref, d.directory)).removeprefix("source.")
            kind, body = sources.get(label, (label.partition(".")[0], {}))
            builds.append(_Build(prefix + label, label, block, kind, body, label))
        for nested in dicts(build.get("source")):
            for ref, body in nested.items():
                origin = label = str(hcl_string(ref, d.directory)).removeprefix("source.")
                kind, base = sources.get(label, (label.partition(".")[0], {}))
                override = _hcl_block(body, d.directory)
                renamed = override.pop("name", None)
                if isinstance(renamed, str):
                    label = f"{kind}.{renamed}"
                builds.append(
                    _Build(prefix + label, label, block, kind, {**base, **override}, origin)
                )
        chained = [
            pp
            for chain in dicts(build.get("post-processors"))
            for pp in dicts(chain.get("post-processor"))
        ]
        items: list[tuple[Literal["provisioner", "post-processor"], dict[str, Any]]] = [
            *(("provisioner", p) for p in dicts(build.get("provisioner"))),
            *(("post-processor", p) for p in dicts(build.get("post-processor"))),
            *(("post-processor", p) for p in chained),
        ]
        for key, item in items:
            for kind, body in item.items():
                index = sum(1 for s in steps if s.kind == key)
                typed = {**_hcl_block(body, d.directory), "type": hcl_string(kind, d.directory)}
                steps.append(_Step(key, index, block, typed))
    return builds, steps


Blocks = tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]


def _json_blocks(root: TreeIndex, d: Definition, commit: str) -> Blocks:
    """Builders, provisioners and post-processors of a JSON template."""
    template = json_template(root, d, commit)
    if not isinstance(template, dict):
        return [], [], []
    return (
        _blocks(template.get("builders")),
        _blocks(template.get("provisioners")),
        _blocks(template.get("post-processors"), nested=True),
    )


def _hcl2_blocks(root: TreeIndex, d: Definition, commit: str) -> Blocks:
    """Sources (builders), provisioners and post-processors of HCL2 files, as JSON-like blocks
    whose string values are plain paths (`${path.root}` expanded; other expressions left as
    `{{...}}`, which the reference check warns about)."""
    builders: list[dict[str, Any]] = []
    provisioners: list[dict[str, Any]] = []
    post_processors: list[dict[str, Any]] = []
    for path, data in hcl2_values(root, d, commit):
        for source in dicts(data.get("source")):
            for names in dicts(list(source.values())):
                builders += [_hcl_block(body, d.directory) for body in names.values()]
        for build in dicts(data.get("build")):
            for key, into in (("provisioner", provisioners), ("post-processor", post_processors)):
                for block in dicts(build.get(key)):
                    into += [
                        {**_hcl_block(body, d.directory), "type": hcl_string(kind, d.directory)}
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


def _hcl_block(body: Any, template_dir: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        return {}
    return {
        key: [hcl_string(v, template_dir) for v in value]
        if isinstance(value, list)
        else hcl_string(value, template_dir)
        for key, value in body.items()
        if key != "__is_block__"
    }


def _blocks(value: Any, *, nested: bool = False) -> list[dict[str, Any]]:
    """The object blocks of a template list (post-processors may nest one level of lists)."""
    items = value if isinstance(value, list) else []
    if nested:
        items = [b for item in items for b in (item if isinstance(item, list) else [item])]
    return [b for b in items if isinstance(b, dict)]


def _paths(
    d: Definition,
    where: str,
    block: dict[str, Any],
    keys: tuple[tuple[str, ...], tuple[str, ...]],
    unknown: list[str] | None = None,
) -> list[str]:
    """The paths `block` names under `keys`; references it cannot evaluate go to `unknown`."""
    single, lists = keys
    refs: list[Any] = [block.get(k) for k in single]
    for key in lists:
        value = block.get(key)
        refs += value if isinstance(value, list) else []
        if value is not None and not isinstance(value, list) and unknown is not None:
            unknown.append(f"the {where} reads {value!r}")
    found = []
    for ref in refs:
        if isinstance(ref, str) and ref:
            path = _template_path(d, where, ref)
            if path is not None:
                found.append(path)
            elif unknown is not None:
                unknown.append(f"the {where} reads {ref!r}")
        elif ref is not None and unknown is not None:
            unknown.append(f"the {where} reads {ref!r}")
    return found


def _ansible_reads(d: Definition, where: str, prov: dict[str, Any]) -> list[str]:
    """What the remote `ansible` provisioner reads besides its named files: the playbook's
    directory (its roles/, group_vars/, host_vars/ and ansible.cfg, which Ansible finds beside
    the playbook), and the files `--extra-vars @FILE` loads."""
    found: list[str] = []
    playbook = prov.get("playbook_file")
    if isinstance(playbook, str) and playbook:
        path = _template_path(d, where, playbook)
        if path is not None:
            found.append(posixpath.dirname(path) or ".")
    arguments = prov.get("extra_arguments")
    items = [a for a in arguments if isinstance(a, str)] if isinstance(arguments, list) else []
    for previous, item in zip(["", *items][: len(items)], items, strict=True):
        value = item.split("=", 1)[1] if item.startswith("--extra-vars=") else item
        if value.startswith("@") and (
            previous in ("-e", "--extra-vars") or item.startswith("--extra-vars=")
        ):
            path = _template_path(d, f"{where} (--extra-vars)", value[1:])
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
