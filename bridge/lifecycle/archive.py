"""Snapshot archiving: the builds gc keeps only for rollback need not sit in EBS's standard tier.

gc (with the catalog's `archive_after_days`, or --archive-after) archives the snapshots of a build
kept only as one of the newest --keep, never a current, used or channel build
(`retention._archived` decides). An image whose snapshot is archived cannot be launched until the
snapshot is restored (hours in AWS), so the build is tagged first (TAG_ARCHIVED) and is never
resolved while the tag is there: the planner reports it `archived`. `ami-bridge unarchive DEF`
asks for the snapshots back (a permanent restore) and removes the tag once every one is in the
standard tier again; run it again while AWS is still restoring.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Literal

from bridge import model, ownership
from bridge.aws import registry
from bridge.aws.clients import aws_call
from bridge.aws.fanout import each_region
from bridge.errors import QueryError

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client

    from bridge.aws.clients import AwsClients
    from bridge.catalog import Definition
    from bridge.context import Context
    from bridge.model import Build

log = logging.getLogger(__name__)


def archive(clients: AwsClients, build: Build) -> None:
    """Tag every regional image of `build` archived, then move its snapshots to the archive
    tier (a run cut short leaves the tag, so the build is never resolved half-archived)."""
    now = model.timestamp(datetime.now(timezone.utc))
    for image in build.images.values():
        ec2 = clients.ec2(image.region)
        if not image.tag(model.TAG_ARCHIVED):
            registry.tag_image(ec2, image, {model.TAG_ARCHIVED: f"archived {now}"})
        for snapshot in image.snapshot_ids:
            if _tier(ec2, image.region, snapshot)[0] == "archive":
                continue
            with aws_call(
                f"archiving the snapshot {snapshot} of {image.ami_id} in {image.region}",
                "ec2:ModifySnapshotTier",
            ):
                ec2.modify_snapshot_tier(SnapshotId=snapshot, StorageTier="archive")
        log.info(
            "%s build %s in %s: snapshots archived", build.definition, build.build_id, image.region
        )


Unarchived = Literal["restored", "restoring"]


def unarchive(clients: AwsClients, build: Build) -> Unarchived:
    """Ask for the archived snapshots of `build` back for good; once every snapshot is in the
    standard tier again, remove TAG_ARCHIVED (`restored`); until then, `restoring`."""
    now = model.timestamp(datetime.now(timezone.utc))
    done = True
    for image in build.images.values():
        ec2 = clients.ec2(image.region)
        for snapshot in image.snapshot_ids:
            tier, status = _tier(ec2, image.region, snapshot)
            if tier == "archive" and not status.endswith("restore-in-progress"):
                with aws_call(
                    f"restoring the archived snapshot {snapshot} in {image.region}",
                    "ec2:RestoreSnapshotTier",
                ):
                    ec2.restore_snapshot_tier(SnapshotId=snapshot, PermanentRestore=True)
                tier, status = _tier(ec2, image.region, snapshot)
            done = done and tier == "standard"
    for image in build.images.values():
        ec2 = clients.ec2(image.region)
        if done:
            registry.untag_image(ec2, image, (model.TAG_ARCHIVED,))
        elif not (image.tag(model.TAG_ARCHIVED) or "").startswith("restoring"):
            registry.tag_image(ec2, image, {model.TAG_ARCHIVED: f"restoring {now}"})
    return "restored" if done else "restoring"


def _tier(ec2: EC2Client, region: str, snapshot: str) -> tuple[str, str]:
    """The snapshot's storage tier and its last tiering operation's status."""
    with aws_call(
        f"reading the storage tier of {snapshot} in {region}", "ec2:DescribeSnapshotTierStatus"
    ):
        found = ec2.describe_snapshot_tier_status(
            Filters=[{"Name": "snapshot-id", "Values": [snapshot]}]
        )["SnapshotTierStatuses"]
    if not found:
        return "", ""
    return str(found[0].get("StorageTier", "")), str(found[0].get("LastTieringOperationStatus", ""))


def archived_builds(
    ctx: Context, d: Definition, regions: tuple[str, ...], *, fingerprint: str, ami: str | None
) -> list[Build]:
    """This catalog's archived builds of `d` with `fingerprint` (or the build of `ami`), in
    `regions`; a QueryError when there is none."""
    settings = ctx.settings
    key, values = settings.tag_key, [fingerprint]
    if ami is not None:
        # The AMI is one region's copy: its build ID finds the build's copies in every region.

        def build_of(region: str) -> str:
            found = registry.image_by_id(
                ctx.clients.ec2(region), region, ami, owners=settings.owners
            )
            return (found.tag(model.TAG_BUILD_ID) or "") if found else ""

        key = model.TAG_BUILD_ID
        values = sorted({b for b in each_region(regions, build_of).values() if b})

    def candidates(region: str) -> list[model.Image]:
        ec2 = ctx.clients.ec2(region)
        return (
            registry.find_tagged(ec2, region, key, values, owners=settings.owners) if values else []
        )

    images = [i for found in each_region(regions, candidates).values() for i in found]
    builds = [
        b
        for b in model.builds_of(
            (
                i
                for i in images
                if i.tag(model.TAG_DEFINITION) == d.name
                and not ownership.foreign(i, settings.catalog_id)
            ),
            tag_key=settings.tag_key,
        )
        if any(i.tag(model.TAG_ARCHIVED) for i in b.images.values())
    ]
    if not builds:
        named = f"the build of {ami}" if ami else f"fingerprint {fingerprint[:12]}"
        raise QueryError(
            f"No archived build of {d.name!r} ({named}) in {', '.join(regions)}, so there is "
            "nothing to restore. `ami-bridge status` shows the definition's state; gc's table "
            "says which builds it archived."
        )
    return builds
