"""What a Packer template makes Packer read, from its files in one git tree.

A template is a JSON file, an HCL2 file, or a directory of `*.pkr.hcl` files. It is read from a
tree (git.TreeIndex), never from the working tree, for: the repository files its builders,
provisioners and post-processors name (_PROVISIONER_FILES, _BUILDER_FILES; `{{template_dir}}`
and `${path.root}` expanded), the builds `packer build` runs and the one a definition's `only`
selects (with the provisioners and post-processors that apply to it), the filters that choose a
root's upstream image (sources.py), and whether a definition's directory holds other templates
than its own.
"""

from __future__ import annotations

import json
import logging
import posixpath
import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Literal

from bridge.catalog import Definition, normalize
from bridge.errors import FingerprintError
from bridge.git import TREE_MODE, TreeIndex
from bridge.sources import SourceFilter, filter_from

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
    for index, pp in enumerate(post_processors):
        if pp.get("type") == "shell-local":
            found += _paths(d, f"post-processor {index}", pp, _PROVISIONER_FILES["shell-local"])
    return found


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
    for path, data in _hcl2_files(root, d, commit):
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
    builds = []
    for builder in builders:
        name = str(builder.get("name") or builder.get("type", ""))
        builds.append(_Build(name, name, 0, str(builder.get("type", "")), builder))
    steps = [_Step("provisioner", i, 0, p) for i, p in enumerate(provisioners)]
    steps += [_Step("post-processor", i, 0, p) for i, p in enumerate(post_processors)]
    return builds, steps


def _hcl2_builds(root: TreeIndex, d: Definition, commit: str) -> tuple[list[_Build], list[_Step]]:
    """An HCL2 template's builds (one per source of each build block, named
    `[<build name>.]<type>.<name>`) and steps (chained post-processors included)."""
    files = _hcl2_files(root, d, commit)
    sources: dict[str, tuple[str, dict[str, Any]]] = {}
    for _, data in files:
        for source in _dicts(data.get("source")):
            for type_label, named in source.items():
                kind = _hcl_string(type_label, d.directory)
                for name, body in named.items() if isinstance(named, dict) else ():
                    label = f"{kind}.{_hcl_string(name, d.directory)}"
                    sources[label] = (kind, _hcl_block(body, d.directory))
    builds: list[_Build] = []
    steps: list[_Step] = []
    blocks = [build for _, data in files for build in _dicts(data.get("build"))]
    for block, build in enumerate(blocks):
        name = _hcl_string(build.get("name"), d.directory)
        prefix = f"{name}." if isinstance(name, str) and name else ""
        refs = build.get("sources")
        for ref in refs if isinstance(refs, list) else []:
            label = str(_hcl_string(ref, d.directory)).removeprefix("source.")
            kind, body = sources.get(label, (label.partition(".")[0], {}))
            builds.append(_Build(prefix + label, label, block, kind, body))
        for nested in _dicts(build.get("source")):
            for ref, body in nested.items():
                label = str(_hcl_string(ref, d.directory)).removeprefix("source.")
                kind, base = sources.get(label, (label.partition(".")[0], {}))
                override = _hcl_block(body, d.directory)
                renamed = override.pop("name", None)
                if isinstance(renamed, str):
                    label = f"{kind}.{renamed}"
                builds.append(_Build(prefix + label, label, block, kind, {**base, **override}))
        chained = [
            pp
            for chain in _dicts(build.get("post-processors"))
            for pp in _dicts(chain.get("post-processor"))
        ]
        items: list[tuple[Literal["provisioner", "post-processor"], dict[str, Any]]] = [
            *(("provisioner", p) for p in _dicts(build.get("provisioner"))),
            *(("post-processor", p) for p in _dicts(build.get("post-processor"))),
            *(("post-processor", p) for p in chained),
        ]
        for key, item in items:
            for kind, body in item.items():
                index = sum(1 for s in steps if s.kind == key)
                typed = {**_hcl_block(body, d.directory), "type": _hcl_string(kind, d.directory)}
                steps.append(_Step(key, index, block, typed))
    return builds, steps


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


def other_templates(root: TreeIndex, d: Definition) -> bool:
    """Whether the definition's directory holds a template file besides its own: one another
    definition, catalog or pipeline may build, whose images the tree SHA would name too. An HCL2
    directory template counts every file as another's, so it never takes the tree SHA."""
    own = posixpath.basename(d.template)
    return any(
        name != own and name.endswith((".json", ".pkr.hcl"))
        for name, (mode, _) in root.listing(d.directory).items()
        if mode != TREE_MODE
    )
