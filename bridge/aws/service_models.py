"""Slim botocore service models: only the operations the bridge calls.

botocore parses a service's whole model whenever it creates a client. EC2's is 4 MB of JSON,
about 80 ms of a 0.5 s cache-hit `external` call, and Terraform makes that call on every plan.
The first client writes a copy of each service's model holding only OPERATIONS, and every
shape they reach, unchanged, under the cache directory (settings.cache_dir; keyed by botocore's
version, the API versions and the operation list), beside the other data a client reads,
copied unchanged (endpoint rules, waiters, paginators, partitions, retry and default settings)
but for endpoints.json, cut to these services. Later processes read only that tree: listing
botocore's 400 service directories and parsing its 1 MB endpoints.json took a third of a
client's creation. When the tree cannot be written (a read-only cache directory), clients use
botocore's own data.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# Every AWS operation the bridge calls. A call to one missing here fails with AttributeError,
# and tests/aws/test_service_models.py checks the bridge's sources against this list.
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
    """A botocore Loader that reads only the slim tree under `cache` (written on demand), or
    botocore's own Loader when that tree cannot be written.

    One per tree and process: a Loader keeps every file it has parsed, so the clients of every
    region (and every `main` a long-running program calls) parse each model once.
    """
    from botocore.loaders import Loader

    full = Loader()  # botocore's search path as it is now (~/.aws/models may change)
    root = cache / _key(full)
    with _LOADERS_LOCK:
        if not (root / _COMPLETE).is_file():
            _LOADERS.pop(root, None)
            try:
                _write_tree(full, root)
            except OSError as exc:
                log.debug("cannot write the slim models under %s (%s); using botocore's", root, exc)
                return full
        if root not in _LOADERS:
            _LOADERS[root] = Loader(
                extra_search_paths=[str(root)], include_default_search_paths=False
            )
        return _LOADERS[root]


def botocores() -> Any:
    """botocore's own Loader (its whole data directory), one per process: for clients made
    without a slim tree, each of which would otherwise parse the service models again."""
    from botocore.loaders import Loader

    with _LOADERS_LOCK:
        if _FULL not in _LOADERS:
            _LOADERS[_FULL] = Loader()
        return _LOADERS[_FULL]


_FULL = Path("-")  # botocore's own, in _LOADERS
# The Loaders of the slim trees made so far.
_LOADERS: dict[Path, Any] = {}
_LOADERS_LOCK = threading.Lock()


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


def _write_tree(full: Any, root: Path) -> None:
    """Write under `root` everything a client of OPERATIONS' services reads: each slim model
    and its service's other files (endpoint rules, waiters, paginators), and botocore's
    top-level files, with endpoints.json cut to those services. The marker goes last: a tree
    without it is written again (every file is replaced atomically, with the same content)."""
    prefixes = set()
    for service in sorted(OPERATIONS):
        version = full.determine_latest_version(service, "service-2")
        model = full.load_service_model(service, "service-2", version)  # with its sdk-extras
        prefixes.add(model["metadata"]["endpointPrefix"])
        _write_json(root / service / version / "service-2.json", slim(model, OPERATIONS[service]))
        for name in _companions(full, f"{service}/{version}"):
            data = full.load_data(f"{service}/{version}/{name}")
            _write_json(root / service / version / f"{name}.json", data)
    for name in _TOP_LEVEL:
        data = full.load_data(name)
        if name == "endpoints":
            data = _endpoints_for(data, prefixes)
        _write_json(root / f"{name}.json", data)
    _write_json(root / _COMPLETE, {"complete": True})


# botocore's own files beside the service directories that clients read.
_TOP_LEVEL = ("endpoints", "partitions", "sdk-default-configuration", "_retry")
_COMPLETE = "complete.json"


def _companions(full: Any, directory: str) -> list[str]:
    """The data a client may read from a service's `directory` besides its model (merged into
    the slim one with its sdk-extras) and the documentation examples, in every directory of
    that name on the search path (~/.aws/models may hold some of a service's files, botocore
    the rest); `load_data` then takes each from where botocore would."""
    names = {
        re.sub(r"\.json(\.gz)?$", "", p.name)
        for base in full.search_paths
        if (Path(base) / directory).is_dir()
        for p in (Path(base) / directory).iterdir()
    }
    return sorted(n for n in names if not n.startswith(("service-2", "examples-")))


def _endpoints_for(endpoints: Mapping[str, Any], prefixes: set[str]) -> dict[str, Any]:
    """botocore's endpoints.json with each partition's services cut to `prefixes`; every other
    key (regions, defaults, variants) unchanged."""
    partitions = [
        {**p, "services": {k: v for k, v in p["services"].items() if k in prefixes}}
        for p in endpoints["partitions"]
    ]
    return {**endpoints, "partitions": partitions}


def _write_json(path: Path, data: Any) -> None:
    temporary: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(
            "w", dir=path.parent, prefix=f".{path.stem}.", delete=False
        ) as out:
            temporary = out.name
            json.dump(data, out, separators=(",", ":"))
        os.replace(temporary, path)  # atomic: concurrent processes write the same content
    except OSError:
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
        raise
