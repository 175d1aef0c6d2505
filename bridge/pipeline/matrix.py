"""Builds spread over CI runners: the definitions a build run would build, as CI matrix waves.

No I/O: from the planner's states (what `build --dry-run` shows) and the catalog's parents. A
definition is in the matrix when its image is not found (missing, outdated, expired, revoked,
partial: copied, pending: waited for); its wave is 0 when no ancestor is in the matrix, else one
more than its nearest such ancestor's, so a CI job per wave, each needing the one before, builds
every child after its parent. Each entry's job runs `ami-bridge build DEF`: the build leases keep
every image exactly-once however the jobs overlap, and a re-run builds nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from bridge.catalog import Catalog
from bridge.pipeline.result import ResolvedAmi

# States whose image a build run would not touch (`archived` fails a build: never in a matrix).
SETTLED = frozenset({"found", "built", "archived"})

Format = Literal["github", "circleci"]


def waves(catalog: Catalog, results: Mapping[str, ResolvedAmi]) -> list[list[str]]:
    """The definitions of `results` a build run would build, wave by wave (catalog order)."""
    wanted = [n for n, r in results.items() if r.state not in SETTLED]
    wave: dict[str, int] = {}

    def of(name: str) -> int:
        if name not in wave:
            parent = catalog.get(name).parent
            while parent is not None and parent not in wanted:
                parent = catalog.get(parent).parent
            wave[name] = 0 if parent is None else of(parent) + 1
        return wave[name]

    order = [d.name for d in catalog.all()]
    found: list[list[str]] = []
    for name in sorted(wanted, key=order.index):
        n = of(name)
        while len(found) <= n:
            found.append([])
        found[n].append(name)
    return found


def encoded(batches: Sequence[Sequence[str]], fmt: Format, wave: int | None) -> dict[str, Any]:
    """The matrix as GitHub Actions' `strategy.matrix` (`{"include": [{"definition": …}]}`) or
    CircleCI's matrix parameters (`{"definition": […]}`), every wave or one."""

    def one(names: Sequence[str]) -> dict[str, Any]:
        if fmt == "github":
            return {"include": [{"definition": n} for n in names]}
        return {"definition": list(names)}

    if wave is not None:
        return one(batches[wave] if wave < len(batches) else [])
    return {"waves": [one(b) for b in batches], "count": len(batches)}
