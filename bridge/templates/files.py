"""A Packer template's files in one git tree (git.TreeIndex), each read and parsed once per
tree: a JSON template; an HCL2 file or directory, as python-hcl2's values (what its blocks say)
and as syntax trees (hcl.py, for the expressions evaluate.py evaluates); the plugins it
requires; and whether its directory holds other templates than its own.

reads.py reads what these files make Packer read; variables.py, their variables.
"""

from __future__ import annotations

import json
import logging
import posixpath
from typing import Any

from bridge.catalog import Definition
from bridge.errors import FingerprintError
from bridge.git import TREE_MODE, TreeIndex
from bridge.packer import Plugin
from bridge.templates import hcl

log = logging.getLogger(__name__)


def template_text(root: TreeIndex, path: str, d: Definition, commit: str) -> bytes:
    """The content of `path`, a file `d`'s template needs, at `commit`."""
    data = root.read(path)
    if data is None:
        raise FingerprintError(
            f"The template {path} of definition {d.name!r} is not in commit {commit[:12]}. "
            "Commit it (git add, git commit) or fix the `template` path in the catalog."
        )
    return data


def json_template(root: TreeIndex, d: Definition, commit: str) -> Any:
    """A JSON template, parsed once per tree."""
    if d.template not in root.parsed:
        data = template_text(root, d.template, d, commit)
        try:
            root.parsed[d.template] = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise FingerprintError(
                f"The JSON template {d.template} of definition {d.name!r} cannot be parsed: "
                f"{exc}. Check it with `packer validate`."
            ) from None
        _warn_comments(d, root.parsed[d.template])
    return root.parsed[d.template]


def _warn_comments(d: Definition, template: Any) -> None:
    """Packer 1.5 and later refuse a root-level comment (a key starting with `_`) that is not a
    string ("Failed to cast root level comment value"), as older templates wrote `_readme`
    lists: said when the catalog loads, not when the build fails."""
    if not isinstance(template, dict):
        return
    for key, value in template.items():
        if key.startswith("_") and not isinstance(value, str):
            log.warning(
                "%s: the JSON template %s has the root-level comment %r as a %s, which Packer "
                '1.5 and later refuse ("Failed to cast root level comment value"): write it as '
                "one string",
                d.name,
                d.template,
                key,
                type(value).__name__,
            )


def hcl2_paths(root: TreeIndex, d: Definition) -> list[str]:
    """A template's HCL2 files: the file, or every *.pkr.hcl of its directory."""
    if d.template.endswith(".pkr.hcl"):
        return [d.template]
    prefix = "" if d.directory == "." else d.directory + "/"
    return [prefix + n for n in sorted(root.listing(d.directory)) if n.endswith(".pkr.hcl")]


def hcl2_values(root: TreeIndex, d: Definition, commit: str) -> list[tuple[str, dict[str, Any]]]:
    """The HCL2 files of a template (a file, or every *.pkr.hcl of a directory) with their
    values as python-hcl2 reads them, each parsed once per tree."""
    import hcl2

    parsed = []
    for path in hcl2_paths(root, d):
        if path not in root.parsed:
            text = template_text(root, path, d, commit)
            try:
                root.parsed[path] = hcl2.loads(text.decode("utf-8"))
            except Exception as exc:  # the parser raises its own lark errors
                raise FingerprintError(
                    f"The HCL2 file {path} of definition {d.name!r} cannot be parsed "
                    f"({type(exc).__name__}). Check it with `packer validate`."
                ) from None
        parsed.append((path, root.parsed[path]))
    return parsed


def hcl2_documents(root: TreeIndex, d: Definition, commit: str) -> list[hcl.Document]:
    """The HCL2 files of a template with their syntax trees (hcl.py), each parsed once."""
    documents = []
    for path in hcl2_paths(root, d):
        key = path + "#syntax"  # beside python-hcl2's values of the same file
        if key not in root.parsed:
            text = template_text(root, path, d, commit).decode("utf-8")
            try:
                root.parsed[key] = hcl.parse(path, text)
            except hcl.HclSyntaxError as exc:
                raise FingerprintError(
                    f"The HCL2 file {path} of definition {d.name!r} cannot be parsed "
                    f"({exc}). Check it with `packer validate`."
                ) from None
        documents.append(root.parsed[key])
    return documents


def dicts(value: Any) -> list[dict[str, Any]]:
    """The blocks in a python-hcl2 value (a list of dicts), ignoring other shapes."""
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def strings(*values: Any) -> list[str]:
    """Every string in JSON-like values (a JSON template's, python-hcl2's), keys included."""
    found: list[str] = []
    pending = list(values)
    while pending:
        value = pending.pop()
        if isinstance(value, str):
            found.append(value)
        elif isinstance(value, dict):
            pending += [*value.keys(), *value.values()]
        elif isinstance(value, list):
            pending += value
    return found


def hcl_string(value: Any, template_dir: str) -> Any:
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


def required_plugins(root: TreeIndex, d: Definition, commit: str) -> dict[str, Plugin]:
    """The plugins `d`'s template requires, by local name: the `required_plugins` of the
    `packer` blocks of its HCL2 files (what `packer init` installs). A JSON template has none."""
    if d.template_format == "json":
        return {}
    found: dict[str, Plugin] = {}
    for _, data in hcl2_values(root, d, commit):
        for packer in dicts(data.get("packer")):
            for block in dicts(packer.get("required_plugins")):
                for name, spec in block.items():
                    if name == "__is_block__" or not isinstance(spec, dict):
                        continue
                    found[hcl_string(name, d.directory)] = Plugin(
                        source=str(hcl_string(spec.get("source", ""), d.directory)),
                        version=str(hcl_string(spec.get("version", ""), d.directory)),
                    )
    return found


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
