"""A catalog entry's values: a variable's value checked against its template's format, its tags
against the room EC2 leaves, and the canonical JSON an entry and a value are compared and
fingerprinted by (one value, one spelling).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any, Literal, TypeAlias

from bridge import model
from bridge.errors import CatalogError

TemplateFormat = Literal["json", "hcl2"]
# A catalog variable's value: JSON without null, as Packer's string, number, bool, list and map
# variable types take it (build.py renders it for -var).
VariableValue: TypeAlias = (
    "str | int | float | bool | list[VariableValue] | dict[str, VariableValue]"
)


def check_value(rel: str, name: str, variable: str, value: Any, fmt: TemplateFormat) -> None:
    """A variable's value is one Packer can take: a string for a JSON template; any JSON value
    but null and non-finite numbers for HCL2 (the schema refuses null)."""
    where = f"$.definitions.{name}.variables.{variable}"
    if fmt == "json" and not isinstance(value, str):
        raise CatalogError(
            f"The catalog {rel} is invalid at {where}: {json.dumps(value)} is not a string, and "
            f"definition {name!r} has a JSON template, whose variables are strings. Write it as "
            f"one ({json.dumps(json.dumps(value))}), or use an HCL2 template for typed variables."
        )
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise CatalogError(
                f"The catalog {rel} is invalid at {where}: it holds {item}, which Packer has no "
                "number for. Use a finite number."
            )
        pending += item if isinstance(item, list) else []
        pending += item.values() if isinstance(item, dict) else []


def entry_of(data: Mapping[str, Any], name: str) -> str:
    """The canonical JSON of what the catalog says about definition `name`: its entry, with the
    catalog-wide `var_files` it inherits (they name its image too)."""
    spec = data["definitions"][name]
    if "var_files" in data and isinstance(spec, dict) and "var_files" not in spec:
        spec = {**spec, "var_files": data["var_files"]}
    return canonical_entry(spec)


def canonical_entry(spec: Any) -> str:
    """A catalog entry as canonical JSON, for comparing two versions of it."""
    return json.dumps(spec, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_value(value: VariableValue) -> str:
    """A variable's value as canonical JSON: keys sorted, no spaces, a whole number without a
    fraction (1.0 is 1), so one value has one spelling. A string is `json.dumps` of it."""
    return json.dumps(_plain(value), sort_keys=True, separators=(",", ":"))


def _plain(value: VariableValue) -> VariableValue:
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def check_tag_room(name: str, tags: Mapping[str, str]) -> None:
    """Refuse more tags than an image has room for beside the bridge's own: EC2 would refuse
    them only when the bridge tags the image, after the build."""
    room = model.TAGS_PER_RESOURCE - len(model.BRIDGE_TAGS) - 1
    if len(tags) > room:
        raise CatalogError(
            f"Definition {name!r} has {len(tags)} tags, and EC2 allows "
            f"{model.TAGS_PER_RESOURCE} on an image and on each of its snapshots. The bridge may "
            f"put {len(model.BRIDGE_TAGS) + 1} of its own on them over the image's life (the "
            "fingerprint, provenance, tests, revocation and retention), so a definition can have "
            f"at most {room}, fewer when its template tags the image too. Remove "
            f"{len(tags) - room} of them, or fold several into one tag."
        )
