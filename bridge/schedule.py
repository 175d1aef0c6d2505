"""Running one step per definition along the chain, parents first, several at a time.

A definition's step starts as soon as its parent's has finished (roots at once), with at most
`jobs` running together: siblings build concurrently. A step that fails takes its descendants
with it (they are skipped, with the reason) and leaves its siblings alone, unless `fail_fast`,
which stops everything. No I/O here beyond the threads: the steps are the caller's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from bridge.catalog import Definition
from bridge.errors import BridgeError, Cancelled

T = TypeVar("T")


@dataclass
class Results(Generic[T]):
    """What became of each definition: its result, its error, or why it was skipped."""

    results: dict[str, T] = field(default_factory=dict)
    failures: dict[str, BridgeError] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def run(
    definitions: Sequence[Definition],
    step: Callable[[Definition, T | None], T],
    *,
    jobs: int,
    fail_fast: bool = False,
    cancel: Callable[[], None] = lambda: None,
) -> Results[T]:
    """Run `step(d, parent_result)` for every definition (parents listed before children).

    `cancel` asks running steps to stop (it is called on Ctrl-C, and with `fail_fast` on the first
    failure); a Ctrl-C is raised again once every running step has returned.
    """
    names = {d.name for d in definitions}
    children: dict[str, list[Definition]] = {}
    for d in definitions:
        if d.parent in names:
            children.setdefault(str(d.parent), []).append(d)
    ready = [d for d in definitions if d.parent not in names]
    outcome: Results[T] = Results()
    stopping = False

    def skip(d: Definition, reason: str) -> None:
        for child in children.get(d.name, []):
            outcome.skipped[child.name] = reason
            skip(child, reason)

    with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="build") as pool:
        running: dict[Future[T], Definition] = {}
        try:
            while ready or running:
                while ready and not stopping:
                    d = ready.pop(0)
                    parent = outcome.results.get(d.parent) if d.parent in names else None
                    running[pool.submit(step, d, parent)] = d
                if stopping:
                    for d in ready:
                        outcome.skipped[d.name] = "the run was stopped (--fail-fast)"
                    ready.clear()
                if not running:
                    break
                done, _ = wait(running, timeout=0.5, return_when=FIRST_COMPLETED)
                for future in done:
                    d = running.pop(future)
                    error = future.exception()
                    if error is None:
                        outcome.results[d.name] = future.result()
                        ready.extend(children.get(d.name, []))
                    elif isinstance(error, Cancelled) and stopping:
                        outcome.skipped[d.name] = "the run was stopped (--fail-fast)"
                        skip(d, "the run was stopped (--fail-fast)")
                    elif isinstance(error, BridgeError):
                        outcome.failures[d.name] = error
                        skip(d, f"its ancestor {d.name!r} failed")
                        if fail_fast and not stopping:
                            stopping = True
                            cancel()
                    else:
                        raise error
        except BaseException:
            cancel()
            for future in running:
                future.cancel()
            wait(running)
            raise
    return outcome
