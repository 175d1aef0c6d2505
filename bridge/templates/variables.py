"""A Packer template's variables: the names it declares (the `-var`s a build may pass), and
where their values come from, as the layers (layers.py) evaluate.py evaluates expressions
with, lowest precedence first: the template's defaults, its var files, the catalog's
`variables`, and the values only the build knows (the bridge's own variables).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from bridge.catalog import BRIDGE_VARIABLES, ENDPOINT_VARIABLE, Definition
from bridge.errors import FingerprintError
from bridge.git import TREE_MODE, TreeIndex
from bridge.templates import hcl
from bridge.templates.files import dicts, hcl2_values, hcl_string, json_template, template_text
from bridge.templates.jsontemplate import json_defaults
from bridge.templates.layers import (
    Layer,
    Unknown,
    arguments,
    hcl_defaults,
    hcl_var_file,
    hcl_var_file_order,
    json_var_file,
    unknown,
)


def declared_variables(root: TreeIndex, d: Definition, commit: str) -> set[str]:
    """The variables `d`'s template declares, read with each format's parser: a JSON template's
    `variables`; the `variable` blocks of its HCL2 files (labels quoted or not) and the names in
    their `variables` blocks, and in a template directory the `variable` objects of its
    `*.pkr.json` files too."""
    if d.template_format == "json":
        template = json_template(root, d, commit)
        declared = template.get("variables") if isinstance(template, dict) else None
        return set(declared) if isinstance(declared, dict) else set()
    names: set[str] = set()
    for _, data in hcl2_values(root, d, commit):
        for block in dicts(data.get("variable")):
            names.update(str(hcl_string(n, d.directory)) for n in block if n != "__is_block__")
        for block in dicts(data.get("variables")):  # `variables { name = default }`
            names.update(n for n in block if n != "__is_block__")
    if not d.template.endswith(".pkr.hcl"):
        prefix = "" if d.directory == "." else d.directory + "/"
        for name in sorted(root.listing(d.directory)):
            if not name.endswith(".pkr.json"):
                continue
            text = template_text(root, prefix + name, d, commit)
            try:
                data = json.loads(text)
            except ValueError:
                raise FingerprintError(
                    f"The Packer JSON file {prefix + name} of definition {d.name!r} is not valid "
                    "JSON. Check it with `packer validate`."
                ) from None
            variables = data.get("variable") if isinstance(data, dict) else None
            if isinstance(variables, dict):
                names.update(variables)
    return names


def hcl2_layers(
    root: TreeIndex, d: Definition, commit: str, documents: list[hcl.Document]
) -> list[Layer]:
    """Where the values of an HCL2 template's variables come from, lowest precedence first:
    the defaults, the var files Packer loads from a template directory (not beside a single
    file), the catalog's `variables`, and the variables the bridge sets per build."""
    layers = [hcl_defaults(documents)]
    loaded: list[str] = []
    if not d.template.endswith(".pkr.hcl"):
        prefix = "" if d.directory == "." else d.directory + "/"
        loaded = sorted(
            prefix + name
            for name, (mode, _) in root.listing(d.directory).items()
            if name.endswith((".auto.pkrvars.hcl", ".auto.pkrvars.json")) and mode != TREE_MODE
        )
    # The catalog's var files are `given` (-var-file), in their order.
    for path in hcl_var_file_order(loaded, given=d.var_files):
        layers.append(var_file(root, d, commit, path))
    layers.append(arguments(d.variables, "the catalog's `variables`"))
    layers.append(bridge_values(d))
    return layers


def var_file(root: TreeIndex, d: Definition, commit: str, path: str) -> Layer:
    """The variable values of one var file (HCL, or JSON by its name)."""
    text = template_text(root, path, d, commit).decode("utf-8", errors="replace")
    try:
        return (
            json_var_file(path, json.loads(text))
            if path.endswith(".json")
            else hcl_var_file(path, text)
        )
    except (ValueError, TypeError) as exc:
        raise FingerprintError(
            f"The var file {path} of definition {d.name!r} cannot be parsed ({exc}). "
            "Check it with `packer validate`."
        ) from None


def json_layers(
    root: TreeIndex, d: Definition, commit: str, defaults: Mapping[str, Any]
) -> list[Layer]:
    """A JSON template's layers, lowest first: its defaults, the var files (whose variables
    Packer uses whether or not the template declares them), the catalog's `variables`, and the
    bridge's own variables, which it passes only where the template declares them."""
    bridge = bridge_values(d)
    return [
        json_defaults(d.template, defaults),
        *(var_file(root, d, commit, path) for path in d.var_files),
        arguments(d.variables, "the catalog's `variables`"),
        Layer(bridge.origin, {k: v for k, v in bridge.values.items() if k in defaults}),
    ]


def bridge_values(d: Definition) -> Layer:
    """The variables the bridge passes to a root's build (build.packer_variables), whose values
    a filter cannot know: they are the build's."""
    values = {
        name: Unknown(name, "build", BRIDGE_VARIABLES[name])
        for name in ("ami_sha", "ami_name", "region")
    }
    values[ENDPOINT_VARIABLE] = Unknown(ENDPOINT_VARIABLE, "environment", "AWS_ENDPOINT_URL")
    if d.parent is not None:
        values["ami_base"] = Unknown("ami_base", "build", BRIDGE_VARIABLES["ami_base"])
    elif d.source is not None:  # the catalog's `source` image, passed as `ami_base`
        values["ami_base"] = Unknown("ami_base", "build", "the catalog's `source` image")
    return unknown(values)
