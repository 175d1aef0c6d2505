"""Where a Packer template's variables take their values from, as layers, lowest precedence
first, as Packer reads them: the template's defaults, the var files Packer loads itself (an HCL2
directory's `*.auto.pkrvars.hcl`, then `*.auto.pkrvars.json`, each in lexical order), var files
given to it, and `-var` arguments (the catalog's `variables`, then the variables the bridge sets
per build). variables.py gathers a definition's layers; evaluate.HclScope and
jsontemplate.JsonScope evaluate expressions over them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bridge.templates.hcl import (
    Document,
    Node,
    attributes,
    block_body,
    block_labels,
    blocks,
    parse,
    value_of,
)
from bridge.templates.unknowable import UnknownKind


@dataclass(frozen=True)
class Expr:
    """An HCL2 expression as written: in a variable's default (`functions`: Packer evaluates
    defaults with functions but without variables) or a var file (neither)."""

    document: Document
    node: Node
    functions: bool = False


@dataclass(frozen=True)
class Argument:
    """A `-var name=text` value: Packer reads it as a string for a string, number or untyped
    variable, and as an HCL2 expression for any other type."""

    text: str


@dataclass(frozen=True)
class Unknown:
    """A value only the build knows (a variable the bridge sets per build)."""

    expression: str
    kind: UnknownKind
    detail: str = ""


@dataclass(frozen=True)
class Layer:
    """Values of a template's variables from one place; in a list, later layers win."""

    origin: str  # "base/base.json's defaults", "img/a.auto.pkrvars.hcl", "the catalog's ..."
    values: Mapping[str, Any]  # Expr, Argument, Unknown, or a plain value (str, list, ...)


def arguments(values: Mapping[str, object], origin: str) -> Layer:
    """`-var` values: strings as Packer reads them (Argument), other JSON values as they are."""
    return Layer(origin, {k: Argument(v) if isinstance(v, str) else v for k, v in values.items()})


def unknown(values: Mapping[str, Unknown]) -> Layer:
    """`-var` values only the build knows: the variables the bridge sets per build."""
    return Layer("the bridge", values)


# -- HCL2 -----------------------------------------------------------------------------------------


def hcl_defaults(documents: Sequence[Document]) -> Layer:
    """The `default`s of an HCL2 template's `variable` blocks (and `variables` blocks)."""
    values: dict[str, Any] = {}
    for doc in documents:
        for block in blocks(doc.body, "variable"):
            default = attributes(block_body(block)).get("default")
            if default is not None:
                values[block_labels(block)[0]] = Expr(doc, value_of(default), functions=True)
        for block in blocks(doc.body, "variables"):
            for name, attr in attributes(block_body(block)).items():
                values[name] = Expr(doc, value_of(attr), functions=True)
    where = documents[0].path if len(documents) == 1 else "the template"
    return Layer(f"the defaults in {where}", values)


def hcl_var_file(path: str, text: str) -> Layer:
    """The values in an HCL2 var file (`name = value` lines)."""
    doc = parse(path, text)
    return Layer(path, {n: Expr(doc, value_of(a)) for n, a in attributes(doc.body).items()})


def json_var_file(path: str, data: Mapping[str, Any]) -> Layer:
    """The values in a JSON var file (an object), for an HCL2 or a JSON template."""
    return Layer(path, dict(data))


def hcl_var_file_order(loaded: Sequence[str], given: Sequence[str]) -> list[str]:
    """The order Packer applies var files in (later wins): the HCL ones it loads itself, the HCL
    ones it is given, then the JSON ones likewise. `loaded` are the directory's
    `*.auto.pkrvars.*` file names in lexical order, `given` the `-var-file`s in their order."""
    files = [*loaded, *given]
    return [f for f in files if not f.endswith(".json")] + [f for f in files if f.endswith(".json")]
