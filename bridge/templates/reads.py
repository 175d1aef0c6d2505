"""What a Packer template makes Packer read, from its files in one git tree.

A template is a JSON file, an HCL2 file, or a directory of `*.pkr.hcl` files, read from a tree
(files.py), never from the working tree, for: the repository files its builders,
provisioners and post-processors name (_PROVISIONER_FILES, _BUILDER_FILES; `{{template_dir}}`
and `${path.root}` expanded), those of the build a definition's `only` selects (its blocks and
builds are in blocks.py), and the files its functions read (their paths evaluated with the
template's variables, variables.py). What it reads from the environment is environment.py's.
"""

from __future__ import annotations

import logging
import posixpath
import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from bridge.catalog import Definition
from bridge.errors import FingerprintError
from bridge.git import TREE_MODE, TreeIndex
from bridge.repopaths import normalize
from bridge.templates import hcl
from bridge.templates.blocks import applies, hcl2_blocks, json_blocks, selected, template_builds
from bridge.templates.evaluate import HclScope
from bridge.templates.files import (
    hcl2_documents,
    hcl2_values,
    strings,
)
from bridge.templates.unknowable import Unknowable
from bridge.templates.variables import hcl2_layers

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
        builders, provisioners, post_processors = json_blocks(root, d, commit)
    else:
        builders, provisioners, post_processors = hcl2_blocks(root, d, commit)
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
        first = hcl.first_argument(node)
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


def template_reads(root: TreeIndex, d: Definition, commit: str) -> Reads:
    """What Packer reads for `d` and the builds it runs (README: precise inputs).

    Without `only`, every block of the template counts (template_paths). With it, the selected
    build's source and the provisioners and post-processors that apply to it (their only and
    except); in an HCL2 directory, the directory then counts through its Packer files, unless
    something in them may read what the bridge cannot name.
    """
    builds, steps = template_builds(root, d, commit)
    if d.only is None:
        paths = [d.directory, *d.var_files, *template_paths(root, d, commit)]
        return Reads(tuple(paths), tuple(b.name for b in builds))
    build = selected(d, builds)
    unknown: list[str] = []
    block = "builder" if d.template_format == "json" else "source"
    found = _paths(d, f"{block} {build.source}", build.body, _BUILDER_FILES, unknown)
    if build.type not in _PRECISE_BUILDERS:
        unknown.append(f"its source is of type {build.type!r}")
    for step in (s for s in steps if applies(s, build)):
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


def _unreadable(root: TreeIndex, d: Definition, commit: str) -> list[str]:
    """What in an HCL2 directory may make Packer read files the bridge cannot name: HCL2 in
    JSON (`.pkr.json`, which it does not parse), and calls of file functions."""
    found = [
        f"{name} is HCL2 in JSON, which the bridge does not read"
        for name in sorted(root.listing(d.directory))
        if name.endswith(".pkr.json")
    ]
    for path, data in hcl2_values(root, d, commit):
        # python-hcl2 writes an expression as a `${...}` string.
        expressions = [text for text in strings(data) if "${" in text]
        calls = sorted({m.group(1) for text in expressions for m in _FILE_FUNCTION.finditer(text)})
        if calls:
            found.append(f"{path} calls {', '.join(calls)}")
    return found


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
