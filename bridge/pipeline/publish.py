"""The publish step: fingerprint and provenance tags on a built image, then its S3 manifest.

The fingerprint tag goes on in the same CreateTags call as the provenance tags, so an image is
never findable without them; the manifest is written after tagging, so no manifest points at an
image that cannot be found.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from types import MappingProxyType
from typing import TYPE_CHECKING

from bridge import model
from bridge.aws import manifests, registry
from bridge.catalog import Definition
from bridge.errors import BuildError
from bridge.model import Image
from bridge.record import BuildRecord, Parent

if TYPE_CHECKING:
    from bridge.aws.clients import AwsClients

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Published:
    """A tagged image in every region, and its manifest's URI ("" without a bucket)."""

    images: Mapping[str, Image]
    manifest_uri: str


def image_tags(d: Definition, record: BuildRecord, *, tag_key: str) -> dict[str, str]:
    """Every tag a built image and its snapshots get: the definition's own, then the record's
    (the fingerprint tag last, so a definition's tag can never replace it)."""
    parent = record.parent
    recorded = {
        model.TAG_DEFINITION: d.name,
        model.TAG_COMMIT: record.commit,
        model.TAG_PACKER_VERSION: record.packer_version,
        model.TAG_BUILD_ID: record.build_id,
        model.TAG_BUILT_AT: record.built_at,
        model.TAG_BUILD_URL: record.build_url,
        model.TAG_PARENT_AMI: parent.ami if parent else "",
        model.TAG_PARENT_FINGERPRINT: parent.fingerprint if parent else "",
        model.TAG_PARENT_BUILD_ID: parent.build_id if parent else "",
        model.TAG_SOURCE_AMI: ",".join(record.source_amis),
        model.TAG_CATALOG: record.catalog,
        model.TAG_ORIGIN: record.origin,
        model.TAG_PARENT_ORIGIN: parent.origin if parent else "",
        model.TAG_TESTS: ",".join(record.passed),
    }
    # The definition, commit, Packer version and build ID always; the rest when known.
    always = {model.TAG_DEFINITION, model.TAG_COMMIT, model.TAG_PACKER_VERSION, model.TAG_BUILD_ID}
    tags = {**d.tags, **{k: v for k, v in recorded.items() if v or k in always}}
    tags[tag_key] = record.fingerprint
    return tags


def publish(
    clients: AwsClients,
    d: Definition,
    record: BuildRecord,
    *,
    tag_key: str,
    owners: Sequence[str],
    bucket: str | None,
    prefix: str | None,
) -> Published:
    """Tag the images of a build (one CreateTags per region) and write its manifest.

    Images that `owners` would not count are refused before anything is tagged.
    """
    amis = record.amis
    tags = image_tags(d, record, tag_key=tag_key)
    images = {
        region: registry.describe_image(clients.ec2(region), region, ami)
        for region, ami in amis.items()
    }
    for image in images.values():
        if not registry.owned_by(image, owners):
            raise BuildError(
                f"The image {image.ami_id} of {d.name!r} in {image.region} belongs to account "
                f"{image.owner_id}, which is not among the owners the bridge searches "
                f"({', '.join(owners)}): it would never be found, and every resolve would build "
                f"again. Add {image.owner_id} or self to `owners`, or build with credentials of "
                "one of those accounts. The image was left untagged."
            )
    for image in images.values():
        registry.tag_image(clients.ec2(image.region), image, tags)
        # Published: no longer a candidate (gates.hold), so lookups count it from now.
        if image.tag(model.TAG_CANDIDATE) is not None:
            registry.untag_image(clients.ec2(image.region), image, (model.TAG_CANDIDATE,))
    # As EC2 now has them: what a later lookup would find.
    images = {
        r: replace(
            i,
            tags=MappingProxyType(
                {k: v for k, v in {**i.tags, **tags}.items() if k != model.TAG_CANDIDATE}
            ),
        )
        for r, i in images.items()
    }
    uri = ""
    if bucket:
        manifest = manifests.Manifest.of(
            record, build_time=model.timestamp(datetime.now(timezone.utc))
        )
        uri = manifests.publish(clients.s3(next(iter(amis))), bucket, prefix, manifest)
        _mark_published(clients, images.values(), uri)
    return Published(images, uri)


def claim(clients: AwsClients, catalog: str, images: Mapping[str, Image]) -> dict[str, Image]:
    """Images built before catalogs were told apart (no catalog tag), tagged as `catalog`'s: a
    build run that uses one makes it its own (gc then counts it)."""
    claimed: dict[str, Image] = {}
    for region, image in sorted(images.items()):
        if catalog and image.tag(model.TAG_CATALOG) is None and not image.foreign:
            registry.tag_image(clients.ec2(region), image, {model.TAG_CATALOG: catalog})
            image = replace(
                image, tags=MappingProxyType({**image.tags, model.TAG_CATALOG: catalog})
            )
        claimed[region] = image
    return claimed


def adopt(clients: AwsClients, d: Definition, images: Mapping[str, Image]) -> dict[str, Image]:
    """The images of a renamed definition (tagged with a name in `d.formerly`) retagged with its
    name, their manifest mark removed so that the manifest is written under the new name
    (restore_manifest); the images as they are now."""
    adopted: dict[str, Image] = {}
    for region, image in sorted(images.items()):
        if image.tag(model.TAG_DEFINITION) in d.formerly:
            ec2 = clients.ec2(region)
            registry.tag_image(ec2, image, {model.TAG_DEFINITION: d.name})
            registry.untag_image(ec2, image, [model.TAG_MANIFEST])
            log.info(
                "%s: %s was built as %s; now tagged %s",
                d.name,
                image.ami_id,
                image.tag(model.TAG_DEFINITION),
                d.name,
            )
            tags = {**image.tags, model.TAG_DEFINITION: d.name}
            tags.pop(model.TAG_MANIFEST, None)
            image = replace(image, tags=MappingProxyType(tags))
        adopted[region] = image
    return adopted


def restore_manifest(
    clients: AwsClients,
    d: Definition,
    fingerprint: str,
    images: Mapping[str, Image],
    *,
    parent: Parent | None,
    bucket: str,
    prefix: str | None,
) -> str:
    """Write the missing manifest of a built image from its tags; returns its URI.

    For an image whose manifest write failed after tagging (or that predates the manifest tag):
    the manifest is written only when S3 has none, then the images are marked.
    """
    primary = next(iter(images.values()))
    s3 = clients.s3(primary.region)
    uri = manifests.manifest_uri(bucket, prefix, d.name, fingerprint)
    amis = {r: i.ami_id for r, i in sorted(images.items())}
    if manifests.exists(s3, bucket, prefix, d.name, fingerprint):
        found = manifests.fetch(s3, bucket, prefix, d.name, fingerprint)
        if found is not None and dict(found.amis) != amis:
            log.warning(
                "%s: %s describes other images (%s), not %s; left as it is",
                d.name,
                uri,
                dict(found.amis),
                amis,
            )
            return ""
    else:
        manifest = manifests.Manifest(
            definition=d.name,
            fingerprint=fingerprint,
            amis=amis,
            parent=parent,
            commit=primary.tag(model.TAG_COMMIT) or "",
            packer_version=primary.tag(model.TAG_PACKER_VERSION) or "unknown",
            build_time=primary.creation_date,
            build_url=primary.tag(model.TAG_BUILD_URL) or "",
            catalog=primary.tag(model.TAG_CATALOG) or "",
        )
        manifests.publish(s3, bucket, prefix, manifest)
        log.warning("%s: wrote the missing manifest %s from the image's tags", d.name, uri)
    _mark_published(clients, images.values(), uri)
    return uri


def add_regions(
    clients: AwsClients,
    d: Definition,
    fingerprint: str,
    copies: Mapping[str, str],
    *,
    bucket: str,
    prefix: str | None,
) -> None:
    """Record the regional copies just made (region -> AMI) in the image's manifest, when it has
    one (its build wrote it). A region just copied to had no image, so whatever the manifest
    listed there is gone: the copy replaces it."""
    s3 = clients.s3(next(iter(sorted(copies))))
    found = manifests.fetch(s3, bucket, prefix, d.name, fingerprint)
    if found is None:
        return
    amis = dict(sorted({**found.amis, **copies}.items()))
    if amis != dict(found.amis):
        manifests.publish(s3, bucket, prefix, replace(found, amis=amis))


def _mark_published(clients: AwsClients, images: Iterable[Image], uri: str) -> None:
    for image in images:
        registry.tag_image(clients.ec2(image.region), image, {model.TAG_MANIFEST: uri})
