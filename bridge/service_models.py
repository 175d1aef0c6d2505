"""Slim botocore service models: only the operations the bridge calls.

botocore parses a service's whole model whenever it creates a client. EC2's is 4 MB of JSON,
about 80 ms of a 0.5 s cache-hit `external` call, and Terraform makes that call on every plan.
The first client of a service writes a copy of its model holding only OPERATIONS, and every
shape they reach, unchanged, under the cache directory (settings.cache_dir; keyed by botocore's
version, the API version and the operation list); later processes load that copy through
botocore's own loader search path. Waiters, paginators and endpoint rules still come from
botocore. When the copy cannot be written (a read-only cache directory), clients use the full
model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# Every AWS operation the bridge calls. A call to one missing here fails with AttributeError,
# and tests/test_service_models.py checks the bridge's sources against this list.
OPERATIONS: Mapping[str, frozenset[str]] = {
    "ec2": frozenset(
        {
            "CopyImage",
            "CreateTags",
            "DeleteSnapshot",
            "DeleteTags",
            "DeregisterImage",
            "DescribeImageAttribute",
            "DescribeImageReferences",
            "DescribeImages",
            "DescribeInstanceStatus",
            "DescribeInstances",
            "DescribeLaunchTemplateVersions",
            "DescribeLaunchTemplates",
            "DescribeRegions",
            "DescribeSnapshotAttribute",
            "DescribeSnapshotTierStatus",
            "DescribeSnapshots",
            "DisableImage",
            "DisableImageDeprecation",
            "DisableImageDeregistrationProtection",
            "EnableImage",
            "EnableImageDeprecation",
            "EnableImageDeregistrationProtection",
            "ModifyImageAttribute",
            "ModifySnapshotAttribute",
            "ModifySnapshotTier",
            "RestoreSnapshotTier",
            "RunInstances",
            "TerminateInstances",
        }
    ),
    "s3": frozenset({"DeleteObject", "GetObject", "HeadObject", "PutObject"}),
    "kms": frozenset({"DescribeKey", "Sign", "Verify"}),
    "sts": frozenset({"GetCallerIdentity"}),
    "ssm": frozenset(
        {"GetParameter", "GetParameterHistory", "GetParametersByPath", "PutParameter"}
    ),
    "autoscaling": frozenset({"DescribeAutoScalingGroups", "DescribeLaunchConfigurations"}),
    "rbin": frozenset({"GetRule", "ListRules"}),
}


def loader(cache: Path) -> Any:
    """A botocore Loader that finds the slim models under `cache` first (written on demand)."""
    from botocore.loaders import Loader

    full = Loader()
    root = cache / _key(full)
    for service in OPERATIONS:
        _ensure(full, root, service)
    return Loader(extra_search_paths=[str(root)])


def slim(model: Mapping[str, Any], operations: frozenset[str]) -> dict[str, Any]:
    """`model` with only `operations` and the shapes they reach; everything kept is unchanged."""
    missing = operations - model["operations"].keys()
    if missing:
        raise ValueError(f"the service model has no operation {', '.join(sorted(missing))}")
    ops = {name: model["operations"][name] for name in sorted(operations)}
    shapes: dict[str, Any] = {}
    pending = [ref["shape"] for op in ops.values() for ref in _op_refs(op)]
    while pending:
        name = pending.pop()
        if name in shapes:
            continue
        shapes[name] = model["shapes"][name]
        pending.extend(ref["shape"] for ref in _shape_refs(shapes[name]))
    kept = {k: v for k, v in model.items() if k not in ("operations", "shapes")}
    return {**kept, "operations": ops, "shapes": dict(sorted(shapes.items()))}


def _op_refs(op: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    for key in ("input", "output"):
        if key in op:
            yield op[key]
    yield from op.get("errors", ())


def _shape_refs(shape: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    yield from shape.get("members", {}).values()
    for key in ("member", "key", "value"):
        if key in shape:
            yield shape[key]


def _key(full: Any) -> str:
    import botocore

    versions = {s: full.determine_latest_version(s, "service-2") for s in sorted(OPERATIONS)}
    spec = json.dumps(
        [botocore.__version__, versions, {s: sorted(o) for s, o in OPERATIONS.items()}],
        sort_keys=True,
    )
    return hashlib.sha256(spec.encode()).hexdigest()[:16]


def _ensure(full: Any, root: Path, service: str) -> None:
    version = full.determine_latest_version(service, "service-2")
    path = root / service / version / "service-2.json"
    if path.is_file():
        return
    model = slim(full.load_service_model(service, "service-2"), OPERATIONS[service])
    temporary: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(
            "w", dir=path.parent, prefix=".service-2.", delete=False
        ) as out:
            temporary = out.name
            json.dump(model, out, separators=(",", ":"))
        os.replace(temporary, path)  # atomic: concurrent processes write the same content
    except OSError as exc:
        log.debug(
            "cannot write the slim %s model to %s (%s); using the full one", service, path, exc
        )
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
