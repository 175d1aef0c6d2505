"""Distributing an image: waiting for it, copying it to the regions that lack it (recorded in its
manifest), and sharing it exactly as the catalog says."""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from types import MappingProxyType

from bridge import model
from bridge.aws import registry, share
from bridge.aws.fanout import each_region
from bridge.catalog import Definition
from bridge.context import Context
from bridge.errors import AwsError, BuildError, ManifestError
from bridge.model import Image
from bridge.pipeline import plan, publish

log = logging.getLogger(__name__)


def distribute(
    ctx: Context, d: Definition, images: dict[str, Image], regions: Sequence[str]
) -> dict[str, Image]:
    """`images` copied to every one of `regions` that lacks one, all available."""
    pending = {r: i for r, i in images.items() if i.state == "pending"}
    images.update(each_region(list(pending), lambda region: available(ctx, pending[region])))
    missing = [r for r in regions if r not in images]
    if not missing:
        return images
    source = next(images[r] for r in regions if r in images)
    tags = {k: v for k, v in source.tags.items() if not k.startswith("aws:")}
    # EC2 copies no launch permissions: a copy is not shared until share_image shares it.
    shared = bool(tags.get(model.TAG_SHARED))
    if model.TAG_SHARED in tags:
        tags[model.TAG_SHARED] = ""

    def copy(region: str) -> Image:
        ec2 = ctx.clients.ec2(region)
        # CopyImageTags: the copy carries the source's tags from its first moment, so another
        # process sees a copy in progress, not a region to copy to.
        ami = registry.copy_image(
            ec2,
            source,
            region,
            encrypted=ctx.catalog.encrypted_for(d),
            kms_key_id=ctx.catalog.kms_key_for(d, region),
        )
        log.info(
            "%s: copying %s from %s to %s: %s",
            d.name,
            source.ami_id,
            source.region,
            region,
            ami,
        )
        if shared:  # at once: the source's shared tag came with the copy
            registry.tag_image(
                ec2, registry.describe_image(ec2, region, ami), {model.TAG_SHARED: ""}
            )
        made = registry.wait_available(ec2, region, ami, timeout=ctx.settings.wait_timeout)
        registry.tag_image(ec2, made, tags)  # its snapshots, known now
        return replace(made, tags=MappingProxyType({**made.tags, **tags}))

    # Every region at once: each copied, waited for and tagged (each region paces its own
    # CopyImage).
    images.update(each_region(missing, copy))
    return images


def share_image(
    ctx: Context, d: Definition, images: Mapping[str, Image], *, fresh: Collection[str] = ()
) -> None:
    """Launch permissions on every regional image exactly as the catalog's `share` says
    (nothing to do when the images' shared tag says it is so already). The images of the
    regions in `fresh` are copies just made, which EC2 shares with nobody."""
    entries = ctx.catalog.share_for(d)
    todo = {
        r: i for r, i in sorted(images.items()) if not i.foreign and share.needs_update(i, entries)
    }
    for region, image in todo.items():  # all or none
        managed = [
            key
            for key in image.kms_key_ids
            if entries and share.key_manager(ctx.clients.kms(region), key) == "AWS"
        ]
        share.check(image, entries, aws_managed=managed)
    each_region(
        list(todo),
        lambda r: share.apply(ctx.clients.ec2(r), todo[r], entries, fresh=r in fresh),
    )


def available(ctx: Context, image: Image) -> Image:
    """`image` once available (bounded wait)."""
    if image.state == "available":
        return image
    return registry.wait_available(
        ctx.clients.ec2(image.region),
        image.region,
        image.ami_id,
        timeout=ctx.settings.wait_timeout,
    )


def update_manifest(
    ctx: Context,
    d: Definition,
    fp: str,
    images: Mapping[str, Image],
    *,
    before: Mapping[str, Image],
) -> None:
    """The manifest of a copied image lists the copies made (`images` not in `before`)."""
    bucket = ctx.settings.manifest_bucket
    copies = {r: i.ami_id for r, i in images.items() if r not in before}
    if not bucket or not copies:
        return
    try:
        publish.add_regions(
            ctx.clients,
            d,
            fp,
            copies,
            bucket=bucket,
            prefix=ctx.settings.manifest_prefix,
        )
    except (AwsError, ManifestError) as exc:
        log.warning("%s: the manifest could not be updated with the copies: %s", d.name, exc)


def wait(ctx: Context, decision: plan.Decision) -> plan.Decision:
    """The decision once its pending images are available (bounded wait)."""
    pending = {r: i for r, i in decision.images.items() if i.state == "pending"}
    images = {
        **decision.images,
        **each_region(list(pending), lambda region: available(ctx, pending[region])),
    }
    state: plan.State = "found" if decision.state == "pending" else decision.state
    return replace(decision, state=state, images=MappingProxyType(images))


def protect(ctx: Context, images: Mapping[str, Image]) -> None:
    """Deregistration protection on each image of this account, when the catalog asks (its
    default); one call per image."""
    if not ctx.catalog.protect:
        return
    mine = {r: i for r, i in sorted(images.items()) if not i.foreign}
    each_region(list(mine), lambda r: registry.protect(ctx.clients.ec2(r), mine[r], True))


def check_everywhere(
    ctx: Context,
    d: Definition,
    fingerprint: str,
    images: Mapping[str, Image],
    regions: Sequence[str],
) -> None:
    """The post-condition of a build or repair: every region `d` needs holds an image of the
    build, available or pending and carrying its fingerprint, as the build and the copies (each
    waited for in EC2) left them. A BuildError names each region that does not."""
    tag_key = ctx.settings.tag_key
    lacking = [
        f"{region} ({image.ami_id if image else 'no image'})"
        for region in regions
        if (image := images.get(region)) is None
        or image.state not in ("available", "pending")
        or image.tag(tag_key) != fingerprint
    ]
    if lacking:
        raise BuildError(
            f"After building or copying {d.name!r} ({fingerprint[:12]}), EC2 has no image of the "
            f"build in {', '.join(lacking)}, though the definition needs one in every region of "
            f"{', '.join(regions)}. Run the build again: it copies the build where it is missing "
            "(an image deregistered meanwhile is copied again)."
        )
