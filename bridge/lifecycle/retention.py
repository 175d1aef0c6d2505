"""The retention decision, no I/O: which of the bridge's builds gc keeps and which it deletes,
and why, given the builds, what uses their images and gc's options (`policy`, checked once here
with their defaults). `references.scan` gathers its inputs; gc.py acts on its verdicts.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Literal

from bridge import model
from bridge.errors import QueryError
from bridge.model import Build, Image
from bridge.settings import (
    DEFAULT_GC_CHANNEL_VERSIONS,
    DEFAULT_GC_KEEP,
    DEFAULT_GC_LAUNCHED_WITHIN_DAYS,
    DEFAULT_GC_MIN_AGE_HOURS,
    DEFAULT_GC_RETIRE_DAYS,
)

# keep; delete; or, for a shared build, a step of its retirement: deprecate, then disable; or,
# for a build kept only for rollback, archive its snapshots.
Action = Literal["keep", "delete", "deprecate", "disable", "archive", "reinstate"]

DEFAULT_KEEP = DEFAULT_GC_KEEP
DEFAULT_MIN_AGE_HOURS = DEFAULT_GC_MIN_AGE_HOURS
DEFAULT_KEEP_CHANNEL_VERSIONS = DEFAULT_GC_CHANNEL_VERSIONS
# States of an image still being made: never deleted under the builder's feet.
IN_PROGRESS = frozenset({"pending", "transient"})


@dataclass(frozen=True)
class Policy:
    """What gc may delete: its options, checked (see `policy`)."""

    keep: int = DEFAULT_KEEP
    older_than_days: float | None = None
    min_age_hours: float = DEFAULT_MIN_AGE_HOURS
    keep_channel_versions: int = DEFAULT_KEEP_CHANNEL_VERSIONS
    # A shared image launched (by any account) within this many days is kept.
    launched_within_days: float = DEFAULT_GC_LAUNCHED_WITHIN_DAYS
    # Days between the steps of a shared build's retirement (0: deleted at once).
    retire_days: float = DEFAULT_GC_RETIRE_DAYS
    # A build kept only as one of the newest --keep (for rollback) this many days old has its
    # snapshots archived (None: never; the catalog's archive_after_days).
    archive_after_days: float | None = None
    # Only these definitions' builds may be deleted (None: every definition's).
    definitions: frozenset[str] | None = None


def policy(
    *,
    keep: str | None = None,
    older_than: str | None = None,
    min_age_hours: str | None = None,
    keep_channel_versions: str | None = None,
    launched_within: str | None = None,
    retire_days: str | None = None,
    archive_after: str | None = None,
    archive_after_days: float | None = None,
    definitions: Iterable[str] = (),
) -> Policy:
    """The gc options as given (strings, None when not given), checked: a QueryError names the
    option and what it takes. `archive_after_days`: the catalog's, which --archive-after
    overrides."""
    chosen = tuple(definitions)
    return Policy(
        keep=_whole("--keep", keep, DEFAULT_KEEP, "builds to keep per definition"),
        older_than_days=None
        if older_than is None
        else _number("--older-than", older_than, "days: only older builds are deleted"),
        min_age_hours=DEFAULT_MIN_AGE_HOURS
        if min_age_hours is None
        else _number("--min-age-hours", min_age_hours, "hours: younger builds are kept"),
        keep_channel_versions=_whole(
            "--keep-channel-versions",
            keep_channel_versions,
            DEFAULT_KEEP_CHANNEL_VERSIONS,
            "versions of each channel parameter whose images are kept",
        ),
        launched_within_days=DEFAULT_GC_LAUNCHED_WITHIN_DAYS
        if launched_within is None
        else _number(
            "--launched-within",
            launched_within,
            "days: a shared image launched by any account since is kept",
        ),
        retire_days=DEFAULT_GC_RETIRE_DAYS
        if retire_days is None
        else _number("--retire-days", retire_days, "days between the retirement steps"),
        archive_after_days=archive_after_days
        if archive_after is None
        else _number(
            "--archive-after", archive_after, "days: older rollback builds' snapshots are archived"
        ),
        definitions=frozenset(chosen) if chosen else None,
    )


def _whole(flag: str, raw: str | None, default: int, meaning: str) -> int:
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise QueryError(f"{flag} is {raw!r}; it takes a whole number, 0 or more: {meaning}.")
    return value


def _number(flag: str, raw: str, meaning: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise QueryError(f"{flag} is {raw!r}; it takes a number, 0 or more, of {meaning}.")
    return value


@dataclass(frozen=True)
class Verdict:
    """Keep or delete one build, and why."""

    build: Build
    action: Action
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class World:
    """What `references.scan` saw: the bridge's builds, what uses images (AMI -> uses), leftover
    snapshots."""

    builds: tuple[Build, ...]
    uses: Mapping[str, tuple[str, ...]]
    # region -> snapshots of images gc deregistered, still to delete
    leftovers: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}))


def bridged(image: Image, tag_key: str) -> bool:
    """One of the bridge's images: a definition's, and published (the fingerprint tag), rejected
    by its tests, or a candidate (a build that has not finished, or never will)."""
    return bool(image.tag(model.TAG_DEFINITION)) and bool(
        image.tag(tag_key)
        or image.tag(model.TAG_REJECTED)
        or image.tag(model.TAG_CANDIDATE) is not None
    )


def builds_of(images: Iterable[Image], *, tag_key: str) -> tuple[Build, ...]:
    """The bridge's images (bridged), grouped by definition and build ID (an image without a
    build ID is a build of its own)."""
    return model.builds_of((i for i in images if bridged(i, tag_key)), tag_key=tag_key)


def abandoned(b: Build) -> bool:
    """A candidate neither published nor rejected: its build was interrupted (Packer or its
    tests killed), or runs now (then its lease, under which gc deletes, protects it)."""
    return rejected(b) is None and all(
        i.tag(model.TAG_CANDIDATE) is not None for i in b.images.values()
    )


def rejected(b: Build) -> str | None:
    """Why the build's images were rejected by their tests (gates.py), or None."""
    return next(
        (i.tag(model.TAG_REJECTED) for i in b.images.values() if i.tag(model.TAG_REJECTED)), None
    )


def decide(
    builds: Sequence[Build],
    *,
    current: Mapping[str, str],
    uses: Mapping[str, Sequence[str]],
    policy: Policy,
    now: datetime,
) -> list[Verdict]:
    """Keep or delete each build, newest first.

    `current`: AMI -> why it is current (the image a definition resolves to at the commit);
    `uses`: AMI -> what uses it (launch templates, instances, Auto Scaling, channels). A build is
    kept when any of its regional images is current or used, when it is still being made, younger
    than the minimum age or than --older-than, among the newest `keep` builds of its definition,
    of a definition not selected, or the parent of a kept build (transitively); every regional
    copy of a build goes with it.
    """
    reasons: dict[tuple[str, str], list[str]] = {b.key: [] for b in builds}
    by_ami = {ami: b for b in builds for ami in b.amis.values()}
    ranked: dict[str, list[Build]] = defaultdict(list)
    for b in sorted(builds, key=lambda b: b.recency, reverse=True):
        # A build rejected by its tests, or never finished, is no rollback: it counts toward
        # no --keep.
        ranked[b.definition if rejected(b) is None and not abandoned(b) else ""].append(b)
    min_age = timedelta(hours=policy.min_age_hours)
    for definition, newest_first in ranked.items():
        for rank, b in enumerate(newest_first):
            why = reasons[b.key]
            for region, ami in sorted(b.amis.items()):
                if ami in current:
                    why.append(current[ami])
                why.extend(f"{u} ({ami} in {region})" for u in uses.get(ami, ()))
            if any(i.state in IN_PROGRESS for i in b.images.values()):
                why.append("still being made")
            age = _age(b.created, now)
            if age < min_age:
                why.append(f"younger than {policy.min_age_hours:g}h (--min-age-hours)")
            if rank < policy.keep and definition:
                why.append(f"one of the newest {policy.keep} builds of {definition} (--keep)")
            if policy.older_than_days is not None and age < timedelta(days=policy.older_than_days):
                why.append(f"younger than {policy.older_than_days:g} days (--older-than)")
            if policy.definitions is not None and b.definition not in policy.definitions:
                why.append("its definition is not selected (--definition)")
    # A kept build's parent build is kept in every region, and so on up the chain.
    todo = [b for b in builds if reasons[b.key]]
    while todo:
        child = todo.pop()
        for ami in sorted(child.parents):
            parent = by_ami.get(ami)
            if parent is None or parent.key == child.key:
                continue
            why = reasons[parent.key]
            newly = not why
            why.append(f"the parent of the kept {child.definition} build {child.build_id}")
            if newly:
                todo.append(parent)
    verdicts = []
    for b in sorted(builds, key=lambda b: b.recency, reverse=True):
        why = reasons[b.key]
        if why and retirement(b)[0] == "deprecated":
            # Back in use (current again after a revert, say) while gc was retiring it: the
            # retirement is undone, or other accounts keep seeing it as going.
            kept = tuple(dict.fromkeys(why))
            verdicts.append(
                Verdict(b, "reinstate", (*kept, "back in use: its deprecation is lifted"))
            )
        elif why:
            verdicts.append(_archived(Verdict(b, "keep", tuple(dict.fromkeys(why))), policy, now))
        else:
            verdicts.append(_retired(b, _deletable(b, policy, now), policy, now))
    return verdicts


def _retired(b: Build, deletable: str, policy: Policy, now: datetime) -> Verdict:
    """A build to delete; when it is shared with other accounts (which gc cannot look into),
    the step of its retirement now: deprecated first (visible to them), disabled
    `retire_days` later (nobody can launch it), deleted `retire_days` after that."""
    stage, since = retirement(b)
    shared = any(i.tag(model.TAG_SHARED) for i in b.images.values())
    if policy.retire_days == 0 or not (shared or stage):
        return Verdict(b, "delete", (deletable,))
    grace = timedelta(days=policy.retire_days)
    if stage is None or since is None:
        return Verdict(b, "deprecate", (deletable, "shared: deprecated first"))
    due = since + grace
    if now < due:
        nxt = "disabled" if stage == "deprecated" else "deleted"
        return Verdict(
            b,
            "keep",
            (f"retiring: {stage} at {model.timestamp(since)}, {nxt} from "
             f"{model.timestamp(due)} (--retire-days)",),
        )  # fmt: skip
    if stage == "deprecated":
        return Verdict(b, "disable", (deletable, f"shared: deprecated at {model.timestamp(since)}"))
    return Verdict(b, "delete", (deletable, f"shared: disabled at {model.timestamp(since)}"))


def _archived(kept: Verdict, policy: Policy, now: datetime) -> Verdict:
    """A kept build whose only reason is rollback (one of the newest --keep), older than
    `archive_after_days`: its snapshots go to the archive tier. A build current, used, in a
    channel, the parent of a kept build or still being made is never archived."""
    b = kept.build
    archived = [i.tag(model.TAG_ARCHIVED) for i in b.images.values()]
    if all(archived):
        return Verdict(b, "keep", (*kept.reasons, f"snapshots {archived[0]}"))
    after = policy.archive_after_days
    rollback = f"one of the newest {policy.keep} builds of {b.definition} (--keep)"
    if after is None or kept.reasons != (rollback,) or _age(b.created, now) < timedelta(after):
        return kept
    return Verdict(
        b,
        "archive",
        (
            *kept.reasons,
            f"kept only for rollback and older than {after:g} days (archive_after_days): its "
            "snapshots go to the archive tier",
        ),
    )


def retirement(b: Build) -> tuple[str | None, datetime | None]:
    """The step a build's retirement is at (its TAG_RETIRING: "deprecated" or "disabled") and
    since when; (None, None) when it is not retiring."""
    for image in b.images.values():
        value = image.tag(model.TAG_RETIRING)
        if value:
            stage, _, when = value.partition(" ")
            return stage, model.parse_time(when)
    return None, None


def _deletable(b: Build, policy: Policy, now: datetime) -> str:
    failed = rejected(b)
    if failed is not None:
        return f"rejected by its tests ({failed}), kept for debugging (keep_rejected)"
    if abandoned(b):
        return (
            "a candidate whose build never finished (interrupted while it was built or tested), "
            f"{how_old(b.created, now)} old"
        )
    why = f"not current, used by nothing, {how_old(b.created, now)} old"
    if policy.keep:
        why += f", not one of the newest {policy.keep} builds of {b.definition}"
    return why


def how_old(created: str, now: datetime) -> str:
    """How old a build created at `created` is at `now`, as gc shows it (3d4h, 5h, 12m)."""
    return _span(_age(created, now))


def _age(created: str, now: datetime) -> timedelta:
    when = model.parse_time(created)
    if when is None:
        return timedelta(0)  # an unreadable date counts as new: kept
    return now - when


def _span(age: timedelta) -> str:
    hours = int(age.total_seconds() // 3600)
    if hours >= 48:
        return f"{hours // 24}d{hours % 24}h"
    if hours >= 1:
        return f"{hours}h"
    return f"{max(int(age.total_seconds() // 60), 0)}m"
