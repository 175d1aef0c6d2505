"""The DAG scheduler (schedule.py) with plain steps: concurrency, order, failure isolation."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from bridge.catalog import Definition
from bridge.errors import BuildError, Cancelled
from bridge.pipeline import schedule

Release = Callable[[str], None] | None


def definition(name: str, parent: str | None = None) -> Definition:
    return Definition(name, f"{name}/t.json", "json", name, (), parent=parent)


# base -> a, b, c; a -> a1
CHAIN = [
    definition("base"),
    definition("a", "base"),
    definition("b", "base"),
    definition("c", "base"),
    definition("a1", "a"),
]


class Recorder:
    """Steps that wait (for `seconds`, or until cancelled), recording when each ran and what its
    parent gave it. Steps named in `together` also wait for each other at a barrier: they pass
    it only if they all run at once, whatever the machine's load."""

    def __init__(
        self,
        seconds: float = 0.05,
        fail: frozenset[str] = frozenset(),
        together: frozenset[str] = frozenset(),
    ) -> None:
        self.seconds, self.fail, self.together = seconds, fail, together
        self.barrier = threading.Barrier(len(together) or 1, timeout=60)
        self.spans: dict[str, tuple[float, float]] = {}
        self.parents: dict[str, str | None] = {}
        self.cancelled = threading.Event()
        self.lock = threading.Lock()

    def step(self, d: Definition, parent: str | None, release: Release = None) -> str:
        start = time.monotonic()
        if d.name in self.together:
            self.barrier.wait()  # BrokenBarrierError unless every one of them is running
        if self.cancelled.wait(self.seconds):
            raise Cancelled(f"{d.name} cancelled")
        with self.lock:
            self.spans[d.name] = (start, time.monotonic())
            self.parents[d.name] = parent
        if d.name in self.fail:
            raise BuildError(f"{d.name} broke")
        return f"ami-{d.name}"

    def overlap(self, x: str, y: str) -> bool:
        (s1, e1), (s2, e2) = self.spans[x], self.spans[y]
        return s1 < e2 and s2 < e1


def test_siblings_run_at_once_each_after_its_parent():
    rec = Recorder(together=frozenset({"a", "b", "c"}))
    outcome = schedule.run(CHAIN, rec.step, jobs=4)
    assert outcome.results == {d.name: f"ami-{d.name}" for d in CHAIN}
    assert rec.overlap("a", "b") and rec.overlap("b", "c")
    for d in CHAIN[1:]:
        assert rec.spans[d.name][0] >= rec.spans[str(d.parent)][1]  # parent first
        assert rec.parents[d.name] == f"ami-{d.parent}"
    assert rec.parents["base"] is None


def test_one_job_runs_one_step_at_a_time():
    rec = Recorder(seconds=0.05)
    schedule.run(CHAIN, rec.step, jobs=1)
    spans = sorted(rec.spans.values())
    assert all(spans[i][1] <= spans[i + 1][0] for i in range(len(spans) - 1))


def test_a_failure_skips_its_descendants_not_its_siblings():
    rec = Recorder(seconds=0.05, fail=frozenset({"a"}))
    outcome = schedule.run(CHAIN, rec.step, jobs=4)
    assert set(outcome.results) == {"base", "b", "c"}
    assert list(outcome.failures) == ["a"] and "a broke" in str(outcome.failures["a"])
    assert outcome.skipped == {"a1": "its ancestor 'a' failed"}


def test_fail_fast_cancels_what_runs_and_starts_nothing_more():
    # base's step would run for 60 s, and succeed, unless it is cancelled.
    rec = Recorder(seconds=60.0)
    chain = [definition("base"), definition("x"), definition("y", "x")]
    rec_fast = Recorder(fail=frozenset({"x"}))

    def step(d: Definition, parent: str | None, release: Release) -> str:
        return (rec_fast if d.name == "x" else rec).step(d, parent)

    outcome = schedule.run(chain, step, jobs=2, fail_fast=True, cancel=rec.cancelled.set)
    assert "base" not in outcome.results and rec.cancelled.is_set()
    assert list(outcome.failures) == ["x"]
    assert outcome.skipped == {
        "y": "its ancestor 'x' failed",
        "base": "the run was stopped (--fail-fast)",
    }


def test_a_bug_in_a_step_is_raised_after_cancelling_the_rest():
    rec = Recorder(seconds=2.0)

    def step(d: Definition, parent: str | None, release: Release) -> str:
        if d.name == "x":
            raise ZeroDivisionError("a bug")
        return rec.step(d, parent)

    with pytest.raises(ZeroDivisionError):
        schedule.run([definition("base"), definition("x")], step, jobs=2, cancel=rec.cancelled.set)
    assert rec.cancelled.is_set()


def test_a_step_releases_the_children_it_is_ready_for_before_it_ends():
    # base releases its children half way; a and b may start on what it released, c only on
    # its result. a's barrier with base passes only while base still runs.
    meet = threading.Barrier(2, timeout=60)
    parents: dict[str, str | None] = {}
    lock = threading.Lock()

    def step(d: Definition, parent: str | None, release: Callable[[str], None]) -> str:
        with lock:
            parents[d.name] = parent
        if d.name == "base":
            release("ami-base (here)")
            meet.wait()  # a is running now
        if d.name == "a":
            meet.wait()
        return f"ami-{d.name}"

    outcome = schedule.run(
        CHAIN, step, jobs=4, early=lambda child, result: child.name in ("a", "a1", "b")
    )
    assert outcome.results == {d.name: f"ami-{d.name}" for d in CHAIN}
    assert parents == {
        "base": None,
        "a": "ami-base (here)",
        "b": "ami-base (here)",
        "c": "ami-base",
        "a1": "ami-a",  # a released nothing: its child waits for its result
    }


def test_a_child_released_early_stands_when_its_parent_then_fails():
    def step(d: Definition, parent: str | None, release: Callable[[str], None]) -> str:
        if d.name == "base":
            release("ami-base (here)")
            time.sleep(0.2)
            raise BuildError("base's copies failed")
        return f"ami-{d.name} on {parent}"

    outcome = schedule.run(
        CHAIN, step, jobs=4, early=lambda child, result: child.name in ("a", "a1")
    )
    assert list(outcome.failures) == ["base"]
    assert outcome.results == {
        "a": "ami-a on ami-base (here)",
        "a1": "ami-a1 on ami-a on ami-base (here)",
    }
    assert outcome.skipped == {"b": "its ancestor 'base' failed", "c": "its ancestor 'base' failed"}
