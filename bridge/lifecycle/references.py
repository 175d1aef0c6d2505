"""What uses an image: every scanner gc trusts before deleting one, and `scan`, which runs them
in each region and returns the bridge's builds with every use of their images (a `World`).

In each region: every version of every launch template, instances not terminated, Auto Scaling
groups and launch configurations, the promotion channels' SSM parameters (the current value and
recent history), launch template images given as `resolve:ssm:`, EC2's own
DescribeImageReferences, and the snapshots an earlier gc left. A scan that fails stops gc
(`launchers.check`): an image whose use cannot be checked is never deleted.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from bridge import model, ownership
from bridge.aws import parameters, registry
from bridge.aws.clients import AwsClients, aws_call
from bridge.aws.fanout import each_region
from bridge.errors import AwsError
from bridge.lifecycle.launchers import (
    LIVE_INSTANCE_STATES,
    Template,
    auto_scaling,
    check,
    instances,
    launch_templates,
    listed_pages,
)
from bridge.lifecycle.retention import World, builds_of
from bridge.lifecycle.retention import bridged as is_bridged
from bridge.model import Image

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client

log = logging.getLogger(__name__)

# DescribeImageReferences: at most this many image IDs per call.
REFERENCE_BATCH = 100
_RESOLVE_SSM = re.compile(r"^resolve:ssm:(.+)$")


def scan(
    clients: AwsClients,
    regions: Sequence[str],
    *,
    tag_key: str,
    channel_prefix: str,
    keep_channel_versions: int,
    catalog: str = "",
    launched_since: datetime | None = None,
) -> World:
    """This catalog's builds in `regions` (every bridge build, when `catalog` is ""), and every
    use of an image there. Another catalog's images are never candidates; an image without a
    catalog tag (built before catalogs were told apart) is left alone, and counted. An image
    shared with other accounts, whose instances gc cannot see, is in use when any account
    launched it after `launched_since` (None: always), or when EC2 cannot say."""

    def look(region: str) -> tuple[list[Image], dict[str, list[str]], tuple[str, ...], int]:
        """One region's part: its images of this catalog, their uses, leftover snapshots."""
        uses: dict[str, list[str]] = defaultdict(list)
        ec2 = clients.ec2(region)
        found = _own_images(ec2, region)
        # The bridge's builds, images that failed their tests (kept for debugging), and the
        # candidates of builds that never finished (interrupted while built or tested).
        bridged = [i for i in found if is_bridged(i, tag_key)]
        ours = [i for i in bridged if not catalog or ownership.own(i, catalog)]
        unclaimed = sum(1 for i in bridged if catalog and i.tag(model.TAG_CATALOG) is None)
        templates = launch_templates(ec2, region, uses)
        instances(ec2, region, uses)
        auto_scaling(clients.autoscaling(region), region, templates, uses)
        ssm = clients.ssm(region)
        _channels(ssm, region, channel_prefix, keep_channel_versions, uses)
        _ssm_launch_references(ssm, region, templates, uses)
        _image_references(ec2, region, [i.ami_id for i in ours], uses)
        shared = [(i, str(i.tag(model.TAG_SHARED))) for i in ours if i.tag(model.TAG_SHARED)]
        shared += _shared_by_hand(ec2, region, [i for i in ours if not i.tag(model.TAG_SHARED)])
        _launched(ec2, region, shared, launched_since, uses)
        return ours, uses, _leftover_snapshots(ec2, region), unclaimed

    images: list[Image] = []
    uses: dict[str, list[str]] = defaultdict(list)
    leftovers: dict[str, tuple[str, ...]] = {}
    unclaimed = 0
    # Every region at once, each with its own client (and pacing); merged in region order.
    for region, (ours, used, left, loose) in each_region(regions, look).items():
        images += ours
        for ami, why in used.items():
            uses[ami].extend(why)
        leftovers[region] = left
        unclaimed += loose
    if unclaimed:
        log.info(
            "%d images carry no catalog ID (built before catalogs were told apart): gc leaves "
            "them alone; a build run that uses one claims it for its catalog",
            unclaimed,
        )
    return World(
        builds_of(images, tag_key=tag_key),
        MappingProxyType({ami: tuple(dict.fromkeys(u)) for ami, u in uses.items()}),
        MappingProxyType({r: s for r, s in leftovers.items() if s}),
    )


def regions_holding(
    clients: AwsClients, known: Sequence[str], catalog: str, *, asked_in: str
) -> tuple[str, ...]:
    """`known`, and every other enabled region holding an image of `catalog` (a copy made by
    hand, a region dropped from the catalog): one DescribeRegions, and one DescribeImages per
    other region. A build is kept when any copy of it is in use, wherever that copy is."""
    if not catalog:
        return tuple(known)
    with check("listing the account's regions", asked_in, "ec2:DescribeRegions"):
        listed = clients.ec2(asked_in).describe_regions()["Regions"]
    others = [r for r in sorted(str(r["RegionName"]) for r in listed) if r not in known]

    def holds(region: str) -> bool:
        with check("looking for this catalog's images", region, "ec2:DescribeImages"):
            page = clients.ec2(region).describe_images(
                Owners=["self"],
                Filters=[{"Name": f"tag:{model.TAG_CATALOG}", "Values": [catalog]}],
                IncludeDisabled=True,
                MaxResults=5,
            )
        return bool(page.get("Images"))

    found = list(known)
    for region, held in each_region(others, holds).items():  # every other region at once
        if held:
            log.info("%s holds images of this catalog outside its regions: scanned too", region)
            found.append(region)
    return tuple(found)


def _own_images(ec2: EC2Client, region: str) -> list[Image]:
    """Every image this account owns that carries the bridge's definition tag."""
    pages = listed_pages(
        ec2,
        "describe_images",
        ("listing this account's images", region, "ec2:DescribeImages"),
        Owners=["self"],
        Filters=[{"Name": "tag-key", "Values": [model.TAG_DEFINITION]}],
        # Disabled ones too (revoked with on_revoke=disable): gc may delete them.
        IncludeDisabled=True,
    )
    return [registry.parse_image(raw, region) for page in pages for raw in page.get("Images", [])]


def _channels(ssm: Any, region: str, prefix: str, keep: int, uses: dict[str, list[str]]) -> None:
    """The promotion channels (channels.py): each parameter's current value and its `keep`
    newest versions."""
    path = "/" + prefix.strip("/")  # every /<prefix>/<definition>/<channel> (channels.py)
    with check(f"listing the channels under {path}", region, "ssm:GetParametersByPath"):
        names = parameters.listed(ssm, prefix)
    for name in sorted(names):
        with check(f"reading the history of {name}", region, "ssm:GetParameterHistory"):
            history = parameters.versions(ssm, name)
        newest = sorted(history, key=lambda v: v.version, reverse=True)
        for rank, version in enumerate(newest):
            if rank == 0 or rank < keep:
                what = "current value" if rank == 0 else f"version {version.version}"
                uses[version.ami_id].append(f"channel {name} {what}")


def _ssm_launch_references(
    ssm: Any, region: str, templates: Mapping[str, Template], uses: dict[str, list[str]]
) -> None:
    """Launch template versions whose image is `resolve:ssm:NAME[:VERSION|:LABEL]`: the image
    that parameter (version) holds now."""
    for template in templates.values():
        for version, image in sorted(template.images.items()):
            match = _RESOLVE_SSM.match(image)
            if match is None:
                continue
            with check(
                f"reading {match[1]} (launch template {template.id} version {version})",
                region,
                "ssm:GetParameter",
            ):
                value = ssm.get_parameter(Name=match[1])["Parameter"]["Value"]
            uses[str(value)].append(
                f"launch template {template.name} ({template.id}) version {version} "
                f"through {match[1]}"
            )


def _image_references(
    ec2: EC2Client, region: str, amis: Sequence[str], uses: dict[str, list[str]]
) -> None:
    """EC2's own view (DescribeImageReferences): also Image Builder recipes."""
    resource_types: list[Any] = [
        {
            "ResourceType": "ec2:Instance",
            "ResourceTypeOptions": [
                {"OptionName": "state-name", "OptionValues": list(LIVE_INSTANCE_STATES)}
            ],
        },
        {
            "ResourceType": "ec2:LaunchTemplate",
            "ResourceTypeOptions": [{"OptionName": "version-depth", "OptionValues": ["10000"]}],
        },
        {"ResourceType": "ssm:Parameter"},
        {"ResourceType": "imagebuilder:ImageRecipe"},
        {"ResourceType": "imagebuilder:ContainerRecipe"},
    ]
    wanted = sorted(set(amis))
    for start in range(0, len(wanted), REFERENCE_BATCH):
        pages = listed_pages(
            ec2,
            "describe_image_references",
            ("asking EC2 for image references", region, "ec2:DescribeImageReferences"),
            ImageIds=wanted[start : start + REFERENCE_BATCH],
            ResourceTypes=resource_types,
            MaxResults=1000,
        )
        for ref in (r for page in pages for r in page.get("ImageReferences", [])):
            uses[str(ref.get("ImageId", ""))].append(
                f"{ref.get('ResourceType')} {ref.get('Arn')} (DescribeImageReferences)"
            )


def _shared_by_hand(
    ec2: EC2Client, region: str, images: Sequence[Image]
) -> list[tuple[Image, str]]:
    """Images the catalog did not share (no TAG_SHARED) that someone shared by hand (a launch
    permission added with the console or the CLI, or made public), with whom: gc cannot see
    those accounts' instances either. One DescribeImageAttribute per image; an image whose
    permissions cannot be read counts as shared."""
    found = []
    for image in images:
        try:
            with aws_call(
                f"reading who may launch {image.ami_id} in {region}", "ec2:DescribeImageAttribute"
            ):
                permissions = ec2.describe_image_attribute(
                    ImageId=image.ami_id, Attribute="launchPermission"
                ).get("LaunchPermissions", [])
        except AwsError:
            found.append((image, "accounts its launch permissions, which cannot be read, may name"))
            continue
        whom = sorted(
            str(
                p.get("UserId")
                or p.get("Group")
                or p.get("OrganizationArn")
                or p.get("OrganizationalUnitArn")
            )
            for p in permissions
        )
        if whom:
            found.append((image, ",".join(whom) + " (by hand, not through the catalog)"))
    return found


def _launched(
    ec2: EC2Client,
    region: str,
    shared: Sequence[tuple[Image, str]],
    since: datetime | None,
    uses: dict[str, list[str]],
) -> None:
    """Images shared with other accounts (and with whom): in use when EC2's lastLaunchedTime
    (launches by any account) is after `since`, or cannot be read. One DescribeImageAttribute
    per image."""
    for image, whom in shared:
        try:
            with aws_call(
                f"reading when {image.ami_id} was last launched in {region}",
                "ec2:DescribeImageAttribute",
            ):
                found = ec2.describe_image_attribute(
                    ImageId=image.ami_id, Attribute="lastLaunchedTime"
                )
        except AwsError as exc:
            uses[image.ami_id].append(
                f"shared with {whom}, whose instances gc cannot see, and its last launch cannot "
                f"be read ({exc})"
            )
            continue
        value = str(found.get("LastLaunchedTime", {}).get("Value") or "")
        at = model.parse_time(value) if value else None
        if at is not None and (since is None or at >= since):
            uses[image.ami_id].append(
                f"shared with {whom} and launched at {model.timestamp(at)} by some account "
                "(EC2's lastLaunchedTime)"
            )


def _leftover_snapshots(ec2: EC2Client, region: str) -> tuple[str, ...]:
    """Snapshots of images gc deregistered (TAG_GC) whose deletion did not happen: their image is
    gone (asked by ID, whatever its tags)."""
    marked: dict[str, str] = {}
    pages = listed_pages(
        ec2,
        "describe_snapshots",
        ("listing snapshots gc left", region, "ec2:DescribeSnapshots"),
        OwnerIds=["self"],
        Filters=[{"Name": "tag-key", "Values": [model.TAG_GC]}],
    )
    for snapshot in (s for page in pages for s in page.get("Snapshots", [])):
        tags = {t["Key"]: t["Value"] for t in snapshot.get("Tags", [])}
        marked[snapshot["SnapshotId"]] = tags.get(model.TAG_GC, "")
    amis = sorted(set(marked.values()) - {""})
    registered: set[str] = set()
    for start in range(0, len(amis), registry.FILTER_BATCH):
        with check("looking up the images of marked snapshots", region, "ec2:DescribeImages"):
            page_images = ec2.describe_images(
                Owners=["self"],
                Filters=[
                    {"Name": "image-id", "Values": amis[start : start + registry.FILTER_BATCH]}
                ],
            )
        registered |= {
            i["ImageId"] for i in page_images.get("Images", []) if i.get("State") != "deregistered"
        }
    return tuple(sorted(s for s, ami in marked.items() if ami and ami not in registered))
