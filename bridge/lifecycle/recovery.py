"""Whether what gc deletes can be undone: EC2's Recycle Bin.

A deregistered image (and a deleted snapshot) that an `available` Recycle Bin retention rule of
its region covers stays in the bin for the rule's retention period, restorable under its ID
(`aws ec2 restore-snapshot-from-recycle-bin`, then `restore-image-from-recycle-bin`). An image is
recoverable only when its snapshots are too: an `EC2_IMAGE` rule must cover the image and an
`EBS_SNAPSHOT` rule each of its snapshots. A tag-level rule covers resources carrying one of its
tags; a region-level rule covers every resource except those carrying one of its excluded tags.

`look` reads the rules of the regions gc would delete in (ListRules and GetRule for each; the
snapshots' tags only when a tag-level snapshot rule needs them) and says, for each build and each
leftover snapshot, for how long the bin keeps it, or why nothing does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bridge.aws.clients import aws_call
from bridge.aws.fanout import each_region
from bridge.errors import QueryError

if TYPE_CHECKING:
    from bridge.aws.clients import AwsClients
    from bridge.model import Build

# (key, value); a value of None matches the key with any value.
Tag = tuple[str, "str | None"]


@dataclass(frozen=True)
class Rule:
    """One available retention rule."""

    identifier: str
    resource_type: str  # EC2_IMAGE or EBS_SNAPSHOT
    days: int
    tags: tuple[Tag, ...] = ()  # tag-level rule: resources with one of these
    excluded: tuple[Tag, ...] = ()  # region-level rule: every resource but those with one of these

    def covers(self, tags: Mapping[str, str]) -> bool:
        if self.tags:
            return any(_has(tags, t) for t in self.tags)
        return not any(_has(tags, t) for t in self.excluded)


def _has(tags: Mapping[str, str], tag: Tag) -> bool:
    key, value = tag
    return key in tags and (value is None or tags[key] == value)


def _kept_for(rules: Iterable[Rule], kind: str, tags: Mapping[str, str]) -> int | None:
    days = [r.days for r in rules if r.resource_type == kind and r.covers(tags)]
    return max(days) if days else None


@dataclass(frozen=True)
class Recovery:
    """For how long the Recycle Bin keeps each build and leftover snapshot gc would delete."""

    # build key -> days the bin keeps every image and snapshot of the build, or None
    builds: Mapping[tuple[str, str], int | None]
    # build key -> why nothing keeps it (when days is None)
    gaps: Mapping[tuple[str, str], str]
    # region -> leftover snapshots no rule covers
    bare_leftovers: Mapping[str, tuple[str, ...]]

    def says(self, key: tuple[str, str]) -> str:
        """The build's recoverability, as gc shows it."""
        days = self.builds.get(key)
        if days is not None:
            return f"the Recycle Bin keeps it {days} days"
        return f"not recoverable: {self.gaps.get(key, 'no Recycle Bin rule covers it')}"

    def unrecoverable(self) -> list[str]:
        """What would be deleted for good, one phrase each."""
        found = [
            f"{' build '.join(k)} ({self.gaps[k]})" for k, d in self.builds.items() if d is None
        ]
        found += [
            f"leftover snapshots in {region} ({' '.join(snapshots)})"
            for region, snapshots in sorted(self.bare_leftovers.items())
        ]
        return found


def look(
    clients: AwsClients, builds: Sequence[Build], leftovers: Mapping[str, Sequence[str]]
) -> Recovery:
    """Whether the Recycle Bin would keep `builds` (every regional image and its snapshots) and
    the `leftovers` (region -> snapshots), were gc to delete them now."""
    regions = sorted({i.region for b in builds for i in b.images.values()} | set(leftovers))
    rules = each_region(regions, lambda region: _rules(clients, region))
    snapshot_tags = _snapshot_tags(clients, rules, builds, leftovers)
    days: dict[tuple[str, str], int | None] = {}
    gaps: dict[tuple[str, str], str] = {}
    for build in builds:
        kept: list[int] = []
        for image in sorted(build.images.values(), key=lambda i: i.region):
            held = _kept_for(rules[image.region], "EC2_IMAGE", image.tags)
            if held is None:
                gaps[build.key] = f"no EC2_IMAGE rule covers {image.ami_id} in {image.region}"
                break
            kept.append(held)
            snapshots = {
                s: _kept_for(rules[image.region], "EBS_SNAPSHOT", snapshot_tags.get(s, {}))
                for s in image.snapshot_ids
            }
            bare = [s for s, d in snapshots.items() if d is None]
            if bare:
                gaps[build.key] = (
                    f"no EBS_SNAPSHOT rule covers {' '.join(bare)} of {image.ami_id} in "
                    f"{image.region}"
                )
                break
            kept.extend(d for d in snapshots.values() if d is not None)
        days[build.key] = None if build.key in gaps else min(kept, default=0)
    bare_leftovers = {
        region: tuple(
            s
            for s in snapshots
            if _kept_for(rules[region], "EBS_SNAPSHOT", snapshot_tags.get(s, {})) is None
        )
        for region, snapshots in leftovers.items()
    }
    return Recovery(days, gaps, {r: s for r, s in bare_leftovers.items() if s})


def _rules(clients: AwsClients, region: str) -> tuple[Rule, ...]:
    """The available image and snapshot retention rules of `region`."""
    rbin = clients.rbin(region)
    found = []
    for kind in ("EC2_IMAGE", "EBS_SNAPSHOT"):
        with aws_call(f"listing the Recycle Bin rules in {region}", "rbin:ListRules"):
            pages = rbin.get_paginator("list_rules").paginate(ResourceType=kind)
            identifiers = [r["Identifier"] for page in pages for r in page.get("Rules", [])]
        for identifier in identifiers:
            with aws_call(f"reading the Recycle Bin rule {identifier} in {region}", "rbin:GetRule"):
                rule = rbin.get_rule(Identifier=identifier)
            if rule.get("Status") != "available":
                continue
            found.append(
                Rule(
                    identifier,
                    kind,
                    int(rule["RetentionPeriod"]["RetentionPeriodValue"]),
                    _tags(rule.get("ResourceTags")),
                    _tags(rule.get("ExcludeResourceTags")),
                )
            )
    return tuple(found)


def _tags(listed: Any) -> tuple[Tag, ...]:
    return tuple((t["ResourceTagKey"], t.get("ResourceTagValue") or None) for t in listed or ())


def _snapshot_tags(
    clients: AwsClients,
    rules: Mapping[str, Sequence[Rule]],
    builds: Sequence[Build],
    leftovers: Mapping[str, Sequence[str]],
) -> dict[str, dict[str, str]]:
    """The tags of the snapshots to delete, read only in regions where a snapshot rule is
    tag-level or excludes tags (a region-level rule without exclusions covers any snapshot)."""
    wanted: dict[str, set[str]] = {}
    for build in builds:
        for image in build.images.values():
            wanted.setdefault(image.region, set()).update(image.snapshot_ids)
    for region, snapshots in leftovers.items():
        wanted.setdefault(region, set()).update(snapshots)
    tags: dict[str, dict[str, str]] = {}
    for region, ids in sorted(wanted.items()):
        if not ids or not any(
            r.resource_type == "EBS_SNAPSHOT" and (r.tags or r.excluded) for r in rules[region]
        ):
            continue
        with aws_call(f"reading the tags of snapshots in {region}", "ec2:DescribeSnapshots"):
            pages = clients.ec2(region).get_paginator("describe_snapshots")
            for page in pages.paginate(Filters=[{"Name": "snapshot-id", "Values": sorted(ids)}]):
                for snapshot in page.get("Snapshots", []):
                    tags[snapshot["SnapshotId"]] = {
                        t["Key"]: t["Value"] for t in snapshot.get("Tags", [])
                    }
    return tags


def require(recovery: Recovery, *, unrecoverable: bool) -> None:
    """Refuse to delete for good, unless `unrecoverable` (--unrecoverable, or the catalog's
    `require_recycle_bin: false`) says so."""
    lost = recovery.unrecoverable()
    if not lost or unrecoverable:
        return
    regions = sorted(
        {gap.rsplit(" in ", 1)[-1] for gap in recovery.gaps.values()} | set(recovery.bare_leftovers)
    )
    raise QueryError(
        f"gc --apply would delete {len(lost)} things no Recycle Bin retention rule covers, so "
        f"nobody could undo it: {'; '.join(lost)}. Nothing was deleted. Create retention rules "
        f"in {', '.join(regions)} for EC2_IMAGE and for EBS_SNAPSHOT (for example `aws rbin "
        "create-rule --resource-type EC2_IMAGE --retention-period "
        "RetentionPeriodValue=7,RetentionPeriodUnit=DAYS --region REGION`, and the same with "
        "EBS_SNAPSHOT), or pass --unrecoverable (or set `require_recycle_bin: false` in the "
        "catalog) to delete for good."
    )
