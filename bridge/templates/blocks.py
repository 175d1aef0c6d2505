"""A Packer template's blocks, read from its files in one git tree (files.py): its
builders or sources, provisioners and post-processors as JSON-like blocks (an HCL2 template's
`${path.root}` expanded), the builds `packer build` runs, and the one a definition's `only`
selects with the provisioners and post-processors that apply to it (their `only` and `except`).
reads.py reads what these make Packer read.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

from bridge.catalog import Definition
from bridge.errors import FingerprintError
from bridge.git import TreeIndex
from bridge.templates.files import dicts, hcl2_values, hcl_string, json_template

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TemplateBuild:
    """One build `packer build` runs: a source (or JSON builder) in a build block."""

    name: str  # as `packer build -only` names it
    source: str  # as provisioners' and post-processors' only/except name it
    block: int  # the build block it is in (0 in a JSON template)
    type: str
    body: dict[str, Any]  # its builder or source block
    # The top-level block it builds from: an HCL2 source's `<type>.<name>` before a build
    # block renames it, or a JSON builder's name.
    origin: str = ""


@dataclass(frozen=True)
class Step:
    """A provisioner or post-processor, in the build block it belongs to."""

    kind: Literal["provisioner", "post-processor"]
    index: int  # among the template's blocks of its kind, for messages
    block: int  # the build block it is in (0 in a JSON template)
    body: dict[str, Any]  # with its "type"


def template_builds(
    root: TreeIndex, d: Definition, commit: str
) -> tuple[list[TemplateBuild], list[Step]]:
    """`d`'s template's builds and its steps (provisioners and post-processors)."""
    if d.template_format == "json":
        return _json_builds(root, d, commit)
    return _hcl2_builds(root, d, commit)


def selected_origin(root: TreeIndex, d: Definition, commit: str) -> str | None:
    """The top-level block the build `d.only` selects builds from (an HCL2 source's
    `<type>.<name>`, a JSON builder's name); None without `only` (every block counts)."""
    if d.only is None:
        return None
    builds, _ = template_builds(root, d, commit)
    return selected(d, builds).origin


def selected(d: Definition, builds: list[TemplateBuild]) -> TemplateBuild:
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


def applies(step: Step, build: TemplateBuild) -> bool:
    """Whether Packer runs `step` in `build`: its build block's, and its only/except lists let
    it. A list the bridge cannot read (an expression) lets it: the step may run."""
    if step.block != build.block:
        return False
    return lets(_names(step.body.get("only")), _names(step.body.get("except")), build)


def lets(only: list[str] | None, excepted: list[str] | None, build: TemplateBuild) -> bool:
    """Whether a step's `only` and `except` lists let it run in `build` (None: a list the bridge
    cannot read, which lets it)."""
    if only and build.source not in only and build.name not in only:
        return False
    return not (excepted and build.source in excepted)


def _names(value: Any) -> list[str] | None:
    """The build names of an only/except list, or None when it is not a list of literals."""
    if not isinstance(value, list) or not all(isinstance(v, str) and "{{" not in v for v in value):
        return None
    return value


def _json_builds(
    root: TreeIndex, d: Definition, commit: str
) -> tuple[list[TemplateBuild], list[Step]]:
    """A JSON template's builds (one per builder, named by `name` or type) and steps."""
    builders, provisioners, post_processors = json_blocks(root, d, commit)
    builds: list[TemplateBuild] = []
    for builder in builders:
        name = str(builder.get("name") or builder.get("type", ""))
        builds.append(TemplateBuild(name, name, 0, str(builder.get("type", "")), builder, name))
    steps = [Step("provisioner", i, 0, p) for i, p in enumerate(provisioners)]
    steps += [Step("post-processor", i, 0, p) for i, p in enumerate(post_processors)]
    return builds, steps


def _hcl2_builds(
    root: TreeIndex, d: Definition, commit: str
) -> tuple[list[TemplateBuild], list[Step]]:
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
    builds: list[TemplateBuild] = []
    steps: list[Step] = []
    blocks = [build for _, data in files for build in dicts(data.get("build"))]
    for block, build in enumerate(blocks):
        name = hcl_string(build.get("name"), d.directory)
        prefix = f"{name}." if isinstance(name, str) and name else ""
        refs = build.get("sources")
        for ref in refs if isinstance(refs, list) else []:
            label = str(hcl_string(ref, d.directory)).removeprefix("source.")
            kind, body = sources.get(label, (label.partition(".")[0], {}))
            builds.append(TemplateBuild(prefix + label, label, block, kind, body, label))
        for nested in dicts(build.get("source")):
            for ref, body in nested.items():
                origin = label = str(hcl_string(ref, d.directory)).removeprefix("source.")
                kind, base = sources.get(label, (label.partition(".")[0], {}))
                override = _hcl_block(body, d.directory)
                renamed = override.pop("name", None)
                if isinstance(renamed, str):
                    label = f"{kind}.{renamed}"
                builds.append(
                    TemplateBuild(prefix + label, label, block, kind, {**base, **override}, origin)
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
                steps.append(Step(key, index, block, typed))
    return builds, steps


Blocks = tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]


def json_blocks(root: TreeIndex, d: Definition, commit: str) -> Blocks:
    """Builders, provisioners and post-processors of a JSON template."""
    template = json_template(root, d, commit)
    if not isinstance(template, dict):
        return [], [], []
    return (
        _blocks(template.get("builders")),
        _blocks(template.get("provisioners")),
        _blocks(template.get("post-processors"), nested=True),
    )


def hcl2_blocks(root: TreeIndex, d: Definition, commit: str) -> Blocks:
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
