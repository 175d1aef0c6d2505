"""JSON Schema validation of the catalog, the query and manifests (schemas in bridge/schemas/).

A document that passed once is remembered by the SHA-256 of schema and document bytes in the
cache directory (settings.cache_dir), so the resolve path Terraform runs on every plan does not
even import jsonschema when neither the catalog nor the query changed. Invalid documents are
always validated afresh, for their messages.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@cache
def schema_text(name: str) -> str:
    """The text of a schema shipped in bridge/schemas."""
    return resources.files("bridge").joinpath("schemas", name).read_text(encoding="utf-8")


@cache
def load_schema(name: str) -> dict[str, Any]:
    """A schema shipped in bridge/schemas, parsed once per process."""
    schema: dict[str, Any] = json.loads(schema_text(name))
    return schema


def first_error(schema: str, data: Any, raw: bytes, cache_dir: Path | None = None) -> Any | None:
    """The first validation error (a jsonschema ValidationError), or None when `data` is valid.

    `raw` is the document's bytes as read; it keys the cache of documents known to be valid.
    """
    marker = None
    if cache_dir is not None:
        key = hashlib.sha256(schema_text(schema).encode() + b"\0" + raw).hexdigest()
        marker = cache_dir / "validated" / key
        if marker.exists():
            return None
    errors = list(_validator(schema).iter_errors(data))
    if errors:
        return min(errors, key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if marker is not None:
        try:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
        except OSError as exc:
            log.debug("cannot remember a validated document: %s", exc)
    return None


def count_errors(schema: str, data: Any) -> int:
    """How many validation errors `data` has (for "N more problems" in messages)."""
    return sum(1 for _ in _validator(schema).iter_errors(data))


def warm_up(schema: str) -> None:
    """Load jsonschema and `schema`'s validator in the background (about 0.1 s), e.g. while
    Packer builds, so validating the manifest afterwards does not add to the build's time."""
    threading.Thread(target=_validator, args=(schema,), name="warm-up").start()


_validators_lock = threading.Lock()


@cache
def _validator_locked(schema: str) -> Any:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(load_schema(schema))


def _validator(schema: str) -> Any:
    with _validators_lock:
        return _validator_locked(schema)
