"""Promotion channels, the workflow: which build a promotion or a rollback names, checked
(available, unrevoked, not archived, this catalog's, passed its tests) in every region before
any parameter is written (aws/parameters.py keeps the channels in SSM), and the check that a
channel query never answers a revoked or vanished image.

A channel always holds one build in every region: a promotion checks that the build has an
available, unrevoked image in each region before it writes any parameter.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from bridge import model, ownership
from bridge.aws import registry
from bridge.aws.clients import AwsClients
from bridge.aws.fanout import each_region
from bridge.aws.parameters import Promotion, Version, current, history, promote
from bridge.errors import AwsError, QueryError
from bridge.model import Build, Image
from bridge.pipeline import gates

if TYPE_CHECKING:
    from bridge.context import Context
    from bridge.pipeline.result import ResolvedAmi


def find_build(
    clients: AwsClients,
    definition: str,
    build_id: str,
    regions: Sequence[str],
    *,
    tag_key: str,
    catalog: str,
) -> Build:
    """The images of one build of `catalog` (by its build-ID tag) in `regions`; each must be
    there, available and not revoked. Another catalog's build of the same content has the same
    build ID: its images are never this build's."""

    def newest(region: str) -> Image | None:
        found = [
            i
            for i in registry.find_tagged(
                clients.ec2(region), region, model.TAG_BUILD_ID, [build_id], owners=["self"]
            )
            if i.state == "available"
            and i.tag(model.TAG_DEFINITION) == definition
            and not ownership.foreign(i, catalog)
            # Never a candidate or a rejected image (gates.py), whatever shares its build ID.
            and i.tag(model.TAG_CANDIDATE) is None
            and not i.tag(model.TAG_REJECTED)
        ]
        return max(found, key=lambda i: i.recency) if found else None

    images = {r: i for r, i in each_region(regions, newest).items() if i is not None}
    missing = [r for r in regions if r not in images]
    if missing:
        raise AwsError(
            f"Build {build_id[:12]} of {definition!r} has no available image in "
            f"{', '.join(missing)}, so a channel cannot point at it there. Distribute it first "
            f"(`ami-bridge build {definition}` copies a partial image), then promote again."
        )
    now = datetime.now(timezone.utc)
    revoked = sorted(
        f"{i.ami_id} in {r} (since {i.tag(model.TAG_REVOKED_AT)})"
        for r, i in images.items()
        if model.is_revoked(i, now)
    )
    if revoked:
        raise QueryError(
            f"Build {build_id[:12]} of {definition!r} is revoked ({'; '.join(revoked)}), so it "
            "cannot be promoted. Promote another build, or restore it first (`ami-bridge "
            "restore`)."
        )
    archived = sorted(f"{i.ami_id} in {r}" for r, i in images.items() if i.tag(model.TAG_ARCHIVED))
    if archived:
        raise QueryError(
            f"Build {build_id[:12]} of {definition!r} has its snapshots archived "
            f"({'; '.join(archived)}), so nobody could launch it from a channel. Restore them "
            f"first (`ami-bridge unarchive {definition} --ami {images[regions[0]].ami_id}`), or "
            "promote another build."
        )
    return Build(
        definition=definition,
        fingerprint=images[regions[0]].tag(tag_key) or "",
        build_id=build_id,
        images=images,
    )


def chosen_build(
    ctx: Context,
    definition: str,
    regions: Sequence[str],
    resolved: Callable[[], ResolvedAmi],
    *,
    fingerprint: str | None = None,
    ami: str | None = None,
    from_channel: str | None = None,
    require: Sequence[str] = (),
) -> Build:
    """The build a promotion names: the image of `definition` at the commit (`resolved`), or the
    newest image with `fingerprint`, the build of the image `ami` (any of its regional copies),
    or what `from_channel` holds (a gate: staging -> prod). `regions`: where `definition`'s
    image must exist, the first where it is built. It must have passed the definition's tests
    and the checks `require` names (gates.py)."""
    d = ctx.catalog.get(definition)
    clients, settings = ctx.clients, ctx.settings
    build_id = ""
    if from_channel is not None:
        held = current(clients, ctx.catalog.channel_prefix, d.name, from_channel, regions[0])
        build_id = held.build_id or _build_of(ctx, d.name, held.ami_id, regions)
    elif ami is not None:
        build_id = _build_of(ctx, d.name, ami, regions)
    elif fingerprint is not None:
        found = registry.find_images(
            clients.ec2(regions[0]),
            regions[0],
            [fingerprint],
            tag_key=settings.tag_key,
            owners=["self"],
        ).get(fingerprint, [])
        ours = [
            i
            for i in found
            if i.tag(model.TAG_DEFINITION) == d.name
            and not ownership.foreign(i, settings.catalog_id)
        ]
        if not ours:
            raise QueryError(
                f"No image of {d.name!r} carries the fingerprint {fingerprint} in {regions[0]}. "
                f"List its images with `ami-bridge status`, or promote by --ami."
            )
        build_id = ours[0].tag(model.TAG_BUILD_ID) or ours[0].ami_id
    else:
        result = resolved()
        if result.state != "found":
            raise QueryError(
                f"{d.name!r} has no usable image at commit {result.commit[:12]} (it is "
                f"{result.state}), so there is nothing to promote. Build it first "
                f"(`ami-bridge build {d.name}`), or name the image with --fingerprint or --ami."
            )
        build_id = result.build_id
    build = find_build(
        clients, d.name, build_id, regions, tag_key=settings.tag_key, catalog=settings.catalog_id
    )
    gates.check_passed(build, [t.name for t in d.tests], require)
    return build


def _build_of(ctx: Context, definition: str, ami: str, regions: Sequence[str]) -> str:
    """The build ID of the image `ami`, looked up in `regions` (AMI IDs are regional)."""
    for region in regions:
        try:
            image = registry.describe_image(ctx.clients.ec2(region), region, ami)
        except AwsError:
            continue
        if image.tag(model.TAG_DEFINITION) != definition:
            raise QueryError(
                f"{ami} is not an image of {definition!r} (its definition tag says "
                f"{image.tag(model.TAG_DEFINITION) or 'nothing'}). Name an image the bridge "
                f"built for {definition!r}."
            )
        rejected = image.tag(model.TAG_REJECTED)
        if rejected or image.tag(model.TAG_CANDIDATE) is not None:
            raise QueryError(
                f"{ami} is "
                + (f"an image its tests rejected ({rejected})" if rejected else "a candidate")
                + f" of {definition!r}, never published, so it cannot be put in a channel; "
                "nothing was changed. Promote a published build (`ami-bridge status` lists "
                "them)."
            )
        catalog = ctx.settings.catalog_id
        if ownership.foreign(image, catalog):
            raise QueryError(
                f"{ami} is an image of another catalog ({image.tag(model.TAG_CATALOG)}), not of "
                f"this one ({catalog}), so it cannot be put in this catalog's channels; nothing "
                "was changed. Promote it from the repository whose catalog built it, or name an "
                "image of this catalog."
            )
        return image.tag(model.TAG_BUILD_ID) or image.ami_id
    raise QueryError(
        f"No image {ami} exists in the regions of {definition!r} ({', '.join(regions)}). "
        "Check the AMI ID."
    )


def rollback(
    ctx: Context, definition: str, channel: str, to: int | None, regions: Sequence[str]
) -> tuple[Build, Promotion]:
    """Point `channel` back at the build its version `to` held (default: the version before the
    current one), as a new version; the history keeps everything."""
    d = ctx.catalog.get(definition)
    versions = history(ctx.clients, ctx.catalog.channel_prefix, d.name, channel, regions[0])
    latest = versions[-1]
    if to is None:
        if len(versions) < 2:
            raise QueryError(
                f"Channel {channel!r} of {d.name!r} has one version only, so there is nothing "
                "to roll back to. Promote another build instead."
            )
        to = versions[-2].version
    target = next((v for v in versions if v.version == to), None)
    if target is None or to == latest.version:
        known = ", ".join(str(v.version) for v in versions)
        raise QueryError(
            f"Channel {channel!r} of {d.name!r} has no earlier version {to} (its versions: "
            f"{known}; {latest.version} is current). Pass --to with one of the earlier ones."
        )
    build_id = target.build_id or _build_of(ctx, d.name, target.ami_id, regions)
    build = find_build(
        ctx.clients,
        d.name,
        build_id,
        regions,
        tag_key=ctx.settings.tag_key,
        catalog=ctx.settings.catalog_id,
    )
    return build, promote(ctx.clients, ctx.catalog.channel_prefix, build, channel)


def check_not_revoked(
    clients: AwsClients, region: str, definition: str, channel: str, held: Version
) -> None:
    """Refuse a channel whose image is revoked (or gone): a consumer must never launch it."""
    try:
        image = registry.describe_image(clients.ec2(region), region, held.ami_id)
    except AwsError:
        raise QueryError(
            f"Channel {channel!r} of {definition!r} holds {held.ami_id} (version "
            f"{held.version}), which does not exist in {region} any more. Roll the channel back "
            f"(`ami-bridge rollback {definition} {channel}`) or promote another build."
        ) from None
    if model.is_revoked(image, datetime.now(timezone.utc)):
        reason = image.tag(model.TAG_REVOKE_REASON)
        raise QueryError(
            f"Channel {channel!r} of {definition!r} holds {held.ami_id} (version "
            f"{held.version}), which is revoked since {image.tag(model.TAG_REVOKED_AT)}"
            f"{': ' + reason if reason else ''}. "
            f"Roll the channel back (`ami-bridge rollback {definition} {channel}`) or promote "
            "another build."
        )
