"""Running one step per definition along the chain, parents first, several at a time.

A definition's step starts as soon as its parent's has finished (roots at once), with at most
`jobs` running together: siblings build concurrently. A step may also release its children
before it finishes, with a result they can start from (a parent built and published in the
region its children are built in, while its copies to other regions are still being made).
A step that fails takes its descendants with it (those not started yet are skipped, with the
reason) and leaves its siblings alone, unless `fail_fast`, which stops everything. No I/O here
beyond the threads: the steps are the caller's.
"""

from __future__ import annotations

import queue
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Generic, TypeVar, cast

from bridge.catalog import Definition
from bridge.errors import BridgeError, Cancelled

T = TypeVar("T")

# A step: (its definition, its parent's result or None, a function that releases its children
# early with a result of its own) -> its result.
Step = Callable[[Definition, "T | None", Callable[[T], None]], T]


@dataclass
class Results(Generic[T]):
    """What became of each definition: its result, its error, or why it was skipped."""

    results: dict[str, T] = field(default_factory=dict)
    failures: dict[str, BridgeError] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def run(
    definitions: Sequence[Definition],
    step: Step[T],
    *,
    jobs: int,
    fail_fast: bool = False,
    cancel: Callable[[], None] = lambda: None,
    early: Callable[[Definition, T], bool] = lambda child, result: False,
) -> Results[T]:
    """Run `step(d, parent_result, release)` for every definition (parents listed before
    children).

    A step that calls `release(result)` before it ends starts each child for which
    `early(child, result)` holds, with `result` as its parent's; the other children start when
    the step ends, with its final result. `cancel` asks running steps to stop (it is called on
    Ctrl-C, and with `fail_fast` on the first failure); a Ctrl-C is raised again once every
    running step has returned.
    """
    names = {d.name for d in definitions}
    children: dict[str, list[Definition]] = {}
    for d in definitions:
        if d.parent in names:
            children.setdefault(str(d.parent), []).append(d)
    waiting: list[tuple[Definition, T | None]] = [
        (d, None) for d in definitions if d.parent not in names
    ]
    queued = {d.name for d, _ in waiting}
    outcome: Results[T] = Results()
    # What the steps report, in order: (definition, its finished future) or (definition, None,
    # the result it released its children with).
    events: queue.SimpleQueue[tuple[Definition, Future[T] | None, T | None]] = queue.SimpleQueue()
    stopping = False

    def skip(d: Definition, reason: str) -> None:
        for child in children.get(d.name, []):
            if child.name not in queued:  # a child released early stands on its own
                outcome.skipped[child.name] = reason
                skip(child, reason)

    def start(d: Definition, result: T, *, released: bool = False) -> None:
        for child in children.get(d.name, []):
            if child.name not in queued and (not released or early(child, result)):
                queued.add(child.name)
                waiting.append((child, result))

    def releaser(d: Definition) -> Callable[[T], None]:
        return lambda result: events.put((d, None, result))

    def reporter(d: Definition) -> Callable[[Future[T]], None]:
        return lambda future: events.put((d, future, None))

    with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="build") as pool:
        running: dict[Future[T], Definition] = {}
        try:
            while waiting or running:
                while waiting and not stopping:
                    d, parent = waiting.pop(0)
                    future = pool.submit(step, d, parent, releaser(d))
                    running[future] = d
                    future.add_done_callback(reporter(d))
                if stopping:
                    for d, _ in waiting:
                        outcome.skipped[d.name] = "the run was stopped (--fail-fast)"
                    waiting.clear()
                if not running:
                    break
                try:
                    # A timeout, so a Ctrl-C reaches this thread while steps run.
                    d, finished, released = events.get(timeout=0.5)
                except queue.Empty:
                    continue
                if finished is None:
                    if not stopping:
                        start(d, cast(T, released), released=True)
                    continue
                running.pop(finished)
                error = finished.exception()
                if error is None:
                    outcome.results[d.name] = finished.result()
                    start(d, finished.result())
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
