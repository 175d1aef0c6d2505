"""What a Packer template reads from the environment, with Packer's variable layers applied.

Packer reads the environment in two ways: `{{env `X`}}` (JSON) and `env("X")` (HCL2), which it
allows only in a variable's default, and `PKR_VAR_<name>` (HCL2 only), a layer between the
defaults and the var files. A variable's value comes from the last layer that sets it (README:
the variable layers; layers.py, variables.py):

    defaults < PKR_VAR_<name> (HCL2) < var files (HCL2: *.auto.pkrvars.* first) < -var
    (the catalog's `variables`, then the bridge's own: ami_sha, ami_name, region, ami_base)

so an environment read in a default is dead when a later layer sets the variable, and a value
is read at all only when something that reaches the build uses the variable: the selected
build's builder or source, the provisioners and post-processors that apply to it, and the
locals, data sources and variables (JSON: whose values are templates too) those use.

Credentials are never identity: every spelling AWS tools read them by (CREDENTIALS) may be read
without the catalog's `env`, and their values are masked wherever the bridge writes
(masking.py).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bridge.catalog import Definition
from bridge.git import TreeIndex
from bridge.packer import VARIABLE_ENV_PREFIX
from bridge.templates import hcl
from bridge.templates.blocks import Step, TemplateBuild, applies, lets, selected, template_builds
from bridge.templates.files import hcl2_documents, json_template, strings
from bridge.templates.jsontemplate import called
from bridge.templates.layers import Argument, Expr, Layer, Unknown
from bridge.templates.variables import declared_variables, hcl2_layers, json_layers

# The builder's credentials, in every spelling AWS's tools and Packer's amazon plugin read them
# by: they choose who builds, not what is built.
CREDENTIALS = frozenset(
    {
        "AWS_ACCESS_KEY",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_KEY",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
    }
)


@dataclass(frozen=True)
class Variable:
    """A template variable's value as Packer would take it: from which layer, and whether
    anything that reaches the build uses it."""

    name: str
    origin: str  # the layer's: "the defaults in base/base.json", "PKR_VAR_flavor", "the bridge"
    value: str  # as written there (an expression, a template, or what only the build knows)
    used: bool


@dataclass(frozen=True)
class Read:
    """Where a build reads one environment variable: `where` for a message, and the template
    variable whose value reads it (None: a builder or step reads it itself)."""

    where: str
    variable: str | None = None


@dataclass(frozen=True)
class EnvironmentReads:
    """What the build of one definition reads from the environment."""

    # By environment variable name ("*" for a name the template computes).
    reads: Mapping[str, Read]
    variables: tuple[Variable, ...]

    def unlisted(self, d: Definition) -> list[str]:
        """The reads neither the catalog's `env` lists nor credentials explain."""
        return sorted(n for n in self.reads if n not in CREDENTIALS and n not in d.env)


def environment_reads(
    root: TreeIndex, d: Definition, commit: str, environment: Mapping[str, str]
) -> EnvironmentReads:
    """What `d`'s build reads from the environment (`environment`: the one it builds in, for
    `PKR_VAR_*`), and its template's variables with their layers."""
    builds, steps = template_builds(root, d, commit)
    chosen = [selected(d, builds)] if d.only is not None else builds
    if d.template_format == "json":
        return _json_reads(root, d, commit, chosen, steps)
    return _hcl2_reads(root, d, commit, chosen, environment)


# -- JSON -----------------------------------------------------------------------------------------


def _json_reads(
    root: TreeIndex,
    d: Definition,
    commit: str,
    chosen: Sequence[TemplateBuild],
    steps: Sequence[Step],
) -> EnvironmentReads:
    template = json_template(root, d, commit)
    declared = template.get("variables") if isinstance(template, dict) else None
    defaults = declared if isinstance(declared, dict) else {}
    layers = json_layers(root, d, commit, defaults)
    reached: list[Any] = [b.body for b in chosen]
    reached += [s.body for s in steps if any(applies(s, b) for b in chosen)]
    texts = strings(*reached)
    reads: dict[str, Read] = {}
    for text in texts:
        for name in called(text, "env"):
            reads.setdefault(name, Read("in a builder or step of the template"))
    # Packer renders the value of every variable it has (default, var file or -var) as a
    # template; `{{user}}` reaches one only from what the build uses, and a default only when
    # no later layer sets the variable.
    pending = sorted({n for text in texts for n in called(text, "user")})
    used: set[str] = set()
    while pending:
        name = pending.pop()
        if name in used:
            continue
        used.add(name)
        if name == "*":
            pending += [n for la in layers for n in la.values if n not in used]
            continue
        layer = _live(layers, name)
        value = None if layer is None else _text(layer.values[name])
        if layer is None or value is None:
            continue
        for read in called(value, "env"):
            reads.setdefault(read, Read(f"in variable `{name}`'s value from {layer.origin}", name))
        pending += [n for n in called(value, "user") if n not in used]
    return EnvironmentReads(reads, _variables(layers, used))


# -- HCL2 -----------------------------------------------------------------------------------------


def _hcl2_reads(
    root: TreeIndex,
    d: Definition,
    commit: str,
    chosen: Sequence[TemplateBuild],
    environment: Mapping[str, str],
) -> EnvironmentReads:
    documents = hcl2_documents(root, d, commit)
    declared = declared_variables(root, d, commit)
    layers = hcl2_layers(root, d, commit, documents)
    from_env = {
        name: Argument(environment[VARIABLE_ENV_PREFIX + name])
        for name in sorted(declared)
        if VARIABLE_ENV_PREFIX + name in environment
    }
    layers.insert(1, Layer("the environment (PKR_VAR_*)", from_env))
    blocks = _HclBlocks(documents)
    reads: dict[str, Read] = {}
    for doc in documents:  # Packer allows env() only in defaults: anywhere else, it is read
        for block in hcl.blocks(doc.body):
            if hcl.block_type(block) not in ("variable", "variables"):
                where = f"in a `{hcl.block_type(block)}` block of {doc.path}"
                for name in _env_calls(doc, block):
                    reads.setdefault(name, Read(where))
    used = blocks.used_variables(chosen)
    for name in sorted(used):
        layer = _live(layers, name)
        if layer is None:
            continue
        value = layer.values[name]
        if layer is layers[1]:
            reads[VARIABLE_ENV_PREFIX + name] = Read(f"as the value of variable `{name}`", name)
        elif isinstance(value, Expr) and value.functions:  # a default
            for read in _env_calls(value.document, value.node):
                where = f"in variable `{name}`'s default in {value.document.path}"
                reads.setdefault(read, Read(where, name))
    return EnvironmentReads(reads, _variables(layers, used))


class _HclBlocks:
    """An HCL2 template's top-level blocks, for what a build reaches through references."""

    def __init__(self, documents: Sequence[hcl.Document]) -> None:
        self.sources: dict[str, list[hcl.Node]] = {}
        self.data: dict[str, list[hcl.Node]] = {}
        self.locals: dict[str, list[hcl.Node]] = {}
        self.builds: list[hcl.Node] = []
        for doc in documents:
            for block in hcl.blocks(doc.body):
                kind, labels = hcl.block_type(block), hcl.block_labels(block)
                if kind == "source" and len(labels) == 2:
                    self.sources.setdefault(".".join(labels), []).append(block)
                elif kind == "data" and len(labels) == 2:
                    self.data.setdefault(".".join(labels), []).append(block)
                elif kind == "locals":
                    for name, attr in hcl.attributes(hcl.block_body(block)).items():
                        self.locals.setdefault(name, []).append(attr)
                elif kind == "local" and labels:
                    self.locals.setdefault(labels[0], []).append(block)
                elif kind == "build":
                    self.builds.append(block)

    def used_variables(self, chosen: Sequence[TemplateBuild]) -> set[str]:
        """The variables the chosen builds use, through their sources, build blocks, the steps
        that apply to them, and the locals and data sources those use."""
        pending: list[hcl.Node] = []
        for build in chosen:
            pending += self.sources.get(build.origin, [])
            if build.block < len(self.builds):
                pending += _reached_in_build(self.builds[build.block], build)
        variables: set[str] = set()
        seen: set[str] = set()
        while pending:
            node = pending.pop()
            for names in _references(node):
                key = ".".join(names[:3] if names[0] == "data" else names[:2])
                if key in seen:
                    continue
                seen.add(key)
                if names[0] == "var":
                    variables.add(names[1])
                elif names[0] == "local":
                    pending += self.locals.get(names[1], [])
                elif names[0] == "data" and len(names) >= 3:
                    pending += self.data.get(f"{names[1]}.{names[2]}", [])
        return variables


def _reached_in_build(block: hcl.Node, build: TemplateBuild) -> list[hcl.Node]:
    """The parts of a build block that run for `build`: its attributes, its `source` block for
    it, and the provisioners and post-processors whose only/except let it."""
    body = hcl.block_body(block)
    reached: list[hcl.Node] = list(hcl.attributes(body).values())
    for child in hcl.blocks(body):
        kind = hcl.block_type(child)
        if kind == "source":
            labels = hcl.block_labels(child)
            if labels and labels[0].removeprefix("source.") == build.origin:
                reached.append(child)
        elif kind == "post-processors":
            reached += [
                pp
                for pp in hcl.blocks(hcl.block_body(child), "post-processor")
                if _runs_for(pp, build)
            ]
        elif kind not in ("provisioner", "post-processor") or _runs_for(child, build):
            reached.append(child)
    return reached


def _runs_for(step: hcl.Node, build: TemplateBuild) -> bool:
    """Whether a provisioner or post-processor block of `build`'s build block runs for it
    (blocks.lets, on its only/except lists as literals)."""
    attrs = hcl.attributes(hcl.block_body(step))
    only, excepted = (attrs.get(k) for k in ("only", "except"))
    return lets(
        _literal_list(hcl.value_of(only)) if only is not None else None,
        _literal_list(hcl.value_of(excepted)) if excepted is not None else None,
        build,
    )


def _literal_list(node: hcl.Node) -> list[str] | None:
    """A tuple of string literals as a list; None for any other expression."""
    strings = [n for n in hcl.walk(node) if n.data == "string"]
    if any(n.data == "interpolation" for n in hcl.walk(node)):
        return None
    return [hcl.literal_string(s) for s in strings]


def _references(node: hcl.Node) -> list[list[str]]:
    """The `var.x`, `local.x` and `data.t.n` references in `node`."""
    found = []
    for inner in hcl.walk(node):
        if inner.data != "get_attr_expr_term":
            continue
        names = hcl.traversal(inner)
        if names and names[0] in ("var", "local", "data") and len(names) >= 2:
            found.append(names)
    return found


def _env_calls(doc: hcl.Document, node: hcl.Node) -> set[str]:
    """The environment variables `env(...)` calls in `node` read ("*" for a computed name)."""
    found = set()
    for inner in hcl.walk(node):
        if inner.data == "function_call" and hcl.name_of(inner.children[0]) == "env":
            first = hcl.first_argument(inner)
            found.add(_literal_name(doc.source(first)) if first is not None else "*")
    return found


def _literal_name(source: str) -> str:
    """The variable name a literal string argument spells, or "*" for any other expression."""
    try:
        value = json.loads(source)
    except ValueError:
        return "*"
    return value if isinstance(value, str) and "${" not in value and value else "*"


# -- both -----------------------------------------------------------------------------------------


def _live(layers: Sequence[Layer], name: str) -> Layer | None:
    """The layer Packer takes `name`'s value from: the last that sets it."""
    return next((la for la in reversed(layers) if name in la.values), None)


def _text(value: Any) -> str | None:
    """A JSON variable's value as the template text Packer renders (None: only the build knows
    it)."""
    if isinstance(value, Unknown):
        return None
    if isinstance(value, Argument):
        return value.text
    return value if isinstance(value, str) else None


def _shown(value: Any) -> str:
    if isinstance(value, Unknown):
        return f"({value.detail or value.expression})"
    if isinstance(value, Argument):
        return value.text
    if isinstance(value, Expr):
        return value.document.source(value.node)
    return value if isinstance(value, str) else json.dumps(value)


def _variables(layers: Sequence[Layer], used: set[str]) -> tuple[Variable, ...]:
    names = sorted({n for la in layers for n in la.values})
    found = []
    for name in names:
        layer = _live(layers, name)
        assert layer is not None
        found.append(Variable(name, layer.origin, _shown(layer.values[name]), name in used))
    return tuple(found)
