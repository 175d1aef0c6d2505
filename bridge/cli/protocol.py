"""Terraform's external data-source protocol: the query on stdin, the result on stdout.

The query is one JSON object of strings (schemas/query.schema.json): a definition and the options
that CLI flags also set (settings.py checks both alike). The result is one JSON object
whose values are all strings; anything else on stdout breaks Terraform's parsing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bridge.errors import QueryError
from bridge.ownership import default_channel_prefix
from bridge.settings import OPTIONS_SCHEMA, Options, Spell, parse_options, query_key
from bridge.validation import load_schema

if TYPE_CHECKING:
    from bridge.aws.parameters import Version
    from bridge.pipeline.result import ResolvedAmi

MAX_QUERY_BYTES = 1 << 20


@dataclass(frozen=True)
class Query:
    """A validated query: the definitions to resolve and the options that go with them.

    `many` is a `definitions` query, answered with one result per definition."""

    definitions: tuple[str, ...]
    options: Options
    many: bool = False
    # Resolve through this promotion channel (channels.py) instead of the repository.
    channel: str | None = None
    channel_prefix: str = "ami-chain"


def parse_query(text: str, *, cache_dir: Path | None = None, spell: Spell = query_key) -> Query:
    """Parse and validate the stdin text of an external data source; `spell` names its keys in
    messages."""
    if len(text) > MAX_QUERY_BYTES:
        raise QueryError(
            f"The query is {len(text)} bytes; a query is a small JSON object of strings. "
            "Check what is piped to `ami-bridge external`."
        )
    if not text.strip():
        raise QueryError(
            "The query on stdin is empty. `ami-bridge external` expects the JSON object that "
            'Terraform\'s external data source writes, e.g. {"definition": "base"}.'
        )
    try:
        data: Any = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        where = (
            f" at line {exc.lineno}, column {exc.colno}"
            if isinstance(exc, json.JSONDecodeError)
            else ""
        )
        raise QueryError(
            f"The query on stdin is not valid JSON{where}. Pass a JSON object of strings, e.g. "
            '{"definition": "base"}.'
        ) from None
    if not isinstance(data, dict):
        raise QueryError(
            f"The query must be a JSON object of strings, not a JSON {_json_type(data)}. Pass "
            'e.g. {"definition": "base"}.'
        )
    for key, value in data.items():
        if not isinstance(value, str):
            raise QueryError(
                f"Query key {key!r} is a JSON {_json_type(value)}; every query value must be a "
                "string (Terraform's external data source only sends strings). Quote it, or "
                "jsonencode() structured values."
            )
    known = load_schema(OPTIONS_SCHEMA)["properties"]
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise QueryError(
            f"Unknown query key(s): {', '.join(unknown)}. The bridge accepts "
            f"{', '.join(known)}. Remove or rename the key."
        )
    if bool(data.get("definition")) == bool(data.get("definitions")):
        raise QueryError(
            'The query needs exactly one of "definition" (one catalog definition, e.g. '
            '{"definition": "base"}) and "definitions" (several, comma-separated, e.g. '
            '{"definitions": "base,snowflake"}).'
        )
    options = parse_options(data, spell=spell, cache_dir=cache_dir)
    if data.get("channel"):
        if data.get("definitions"):
            raise QueryError(
                'A "channel" query resolves one definition: pass "definition", not "definitions".'
            )
        return Query(
            definitions=(data["definition"],),
            options=options,
            channel=data["channel"],
            channel_prefix=data.get("channel_prefix")
            or default_channel_prefix(data.get("catalog_id") or None),
        )
    if data.get("definitions"):
        names = tuple(dict.fromkeys(data["definitions"].split(",")))
        return Query(definitions=names, options=options, many=True)
    return Query(definitions=(data["definition"],), options=options)


def result(resolved: ResolvedAmi) -> dict[str, str]:
    """The result object for a resolved definition; every value a string."""
    return {
        "ami_id": resolved.ami_id,
        "fingerprint": resolved.fingerprint,
        "definition": resolved.definition,
        "region": resolved.region,
        "parent_ami_id": resolved.parent_ami_id,
        "built": "true" if resolved.built else "false",
        "found": "true" if resolved.found else "false",
        "state": resolved.state,
        "manifest_uri": resolved.manifest_uri,
        "amis_json": json.dumps(dict(resolved.amis), sort_keys=True, separators=(",", ":")),
        "regions_json": json.dumps(
            dict(resolved.region_states), sort_keys=True, separators=(",", ":")
        ),
        "git_commit": resolved.image_commit,
        "commit": resolved.commit,
        "creation_date": resolved.creation_date,
        "build_id": resolved.build_id,
        "expires_at": resolved.expires_at,
        "revoked": "true" if resolved.revoked else "false",
        "revoke_reason": resolved.revoke_reason,
        "revokes_at": resolved.revokes_at,
    }


def channel_result(
    definition: str, channel: str, parameter: str, region: str, held: Version
) -> dict[str, str]:
    """The result object for a definition resolved through a channel; every value a string."""
    return {
        "ami_id": held.ami_id,
        "definition": definition,
        "channel": channel,
        "channel_version": str(held.version),
        "parameter": parameter,
        "region": region,
        "build_id": held.build_id,
        "fingerprint": held.fingerprint,
        "modified": held.modified,
    }


def results(resolved: dict[str, ResolvedAmi]) -> dict[str, str]:
    """The result object of a `definitions` query: each definition's result, JSON-encoded (an
    external data source's result is a flat map of strings)."""
    return {
        name: json.dumps(result(r), sort_keys=True, separators=(",", ":"))
        for name, r in resolved.items()
    }


def encode_result(values: dict[str, str]) -> str:
    """The exact stdout text: one JSON object and a newline."""
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in values.items()):
        raise TypeError("external results must map strings to strings")
    return json.dumps(values, sort_keys=True) + "\n"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "string"
