"""The bridge's model of an image: Image, Build, Revocation, the tag names, time parsing, and
whether an image is revoked now. No I/O; every other module builds on this one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Literal

TAG_PREFIX = "ami-chain:"
TAG_DEFINITION = TAG_PREFIX + "definition"
# The catalog whose build an image is (ownership.py): gc, revoke and lookups count only their own.
TAG_CATALOG = TAG_PREFIX + "catalog"
TAG_COMMIT = TAG_PREFIX + "git-commit"
TAG_PARENT_AMI = TAG_PREFIX + "parent-ami"
TAG_PARENT_FINGERPRINT = TAG_PREFIX + "parent-fingerprint"
# The build ID of the parent image: the same for the parent's build and all its regional copies.
TAG_PARENT_BUILD_ID = TAG_PREFIX + "parent-build-id"
# The AMI Packer made for a build, in the region it was built in: on every image of the build
# (its copies too), so it names the build event; a rebuild under the same build ID has another.
TAG_ORIGIN = TAG_PREFIX + "origin-ami"
# On a child: its parent build's origin AMI, which links it to every copy of that build.
TAG_PARENT_ORIGIN = TAG_PREFIX + "parent-origin-ami"
TAG_PACKER_VERSION = TAG_PREFIX + "packer-version"
# The upstream image(s) a root was built on, chosen by its tracked source filters.
TAG_SOURCE_AMI = TAG_PREFIX + "source-ami"
TAG_BUILD_URL = TAG_PREFIX + "build-url"
# Known before the build (plan.predicted_build_id), so a Terraform plan can name the build to come.
TAG_BUILD_ID = TAG_PREFIX + "build-id"
# When the bridge started the build, to the microsecond (ISO 8601 UTC). EC2's CreationDate is in
# whole seconds: of two builds of one fingerprint made within a second (a quick build and its
# forced rebuild), this says which is the newer (`recency`).
TAG_BUILT_AT = TAG_PREFIX + "built-at"
# Put on once the image's manifest is written: an image without it may lack its manifest.
TAG_MANIFEST = TAG_PREFIX + "manifest"
# A revocation (revoke.py): from this time (ISO 8601 UTC) the image is not used, for this reason,
# because the image with this build ID was revoked (its own, or an ancestor's).
TAG_REVOKED_AT = TAG_PREFIX + "revoked-at"
TAG_REVOKE_REASON = TAG_PREFIX + "revoke-reason"
TAG_REVOKED_BY = TAG_PREFIX + "revoked-by"
REVOCATION_TAGS = (TAG_REVOKED_AT, TAG_REVOKE_REASON, TAG_REVOKED_BY)
# Who may launch the image, as the catalog said when it was last shared (share.py).
TAG_SHARED = TAG_PREFIX + "shared"
# A shared build gc is retiring, in steps other accounts can see: "deprecated <time>", then
# "disabled <time>" (retention.py), then it is deleted.
TAG_RETIRING = TAG_PREFIX + "retiring"
# Snapshots of an image gc deregistered carry this tag (the AMI's ID) until they are deleted,
# so a run cut short between the two steps leaves nothing a later run cannot find.
TAG_GC = TAG_PREFIX + "gc-deregistered"
# An image whose tests (gates.py) run: the build ID; removed when they pass. An image that failed
# them and is kept (keep_rejected): "<test> failed <time>". The names of the tests it passed,
# comma-separated (promote --require checks them).
TAG_CANDIDATE = TAG_PREFIX + "candidate"
TAG_REJECTED = TAG_PREFIX + "rejected"
TAG_TESTS = TAG_PREFIX + "tests"
# Where the build's signed provenance is (provenance.py): its s3:// URI.
TAG_PROVENANCE = TAG_PREFIX + "provenance"
# A build kept only for rollback whose snapshots gc moved to EBS's archive tier: "archived <time>"
# (set before the first snapshot moves), or "restoring <time>" once `ami-bridge unarchive` asked
# for them back. Not launchable, so never resolved, until unarchive removes the tag.
TAG_ARCHIVED = TAG_PREFIX + "archived"
# Every tag above: what the bridge may put on an image or its snapshots over its life, besides
# the catalog's fingerprint tag. EC2 allows TAGS_PER_RESOURCE, so a definition's own tags must
# leave room for them (catalog.py).
BRIDGE_TAGS = tuple(
    sorted(v for k, v in dict(globals()).items() if k.startswith("TAG_") and k != "TAG_PREFIX")
)
TAGS_PER_RESOURCE = 50

# DescribeImages' ImageState values.
ImageState = Literal[
    "available", "pending", "invalid", "deregistered", "transient", "failed", "error", "disabled"
]


@dataclass(frozen=True)
class Image:
    """One AMI as DescribeImages reports it."""

    ami_id: str
    region: str
    state: ImageState
    creation_date: str
    owner_id: str
    tags: Mapping[str, str]
    snapshot_ids: tuple[str, ...]
    name: str = ""
    # EC2's deprecation time (ISO 8601, as DescribeImages gives it; "" for none).
    deprecation_time: str = ""
    # The KMS keys of its encrypted snapshots (none when unencrypted).
    kms_key_ids: tuple[str, ...] = ()
    # Another account's image, found through its manifest: never tagged, shared or copied here.
    foreign: bool = False
    # EC2's DeregistrationProtection ("disabled", "enabled", "enabled-with-cooldown"; "" when
    # not reported).
    protection: str = ""

    def tag(self, key: str) -> str | None:
        """The value of tag `key`, or None."""
        return self.tags.get(key)

    @property
    def recency(self) -> tuple[str, str, str]:
        """Its place in time among images, the newest highest: EC2's creation date, then within
        that second its build's built-at tag (an image without one, built before the bridge set
        it or by hand, counts as older), then its AMI ID so that the order is total."""
        return (self.creation_date, self.tag(TAG_BUILT_AT) or "", self.ami_id)


@dataclass(frozen=True)
class Revocation:
    """An image's revocation, as its tags and its manifest record it (revoke.py)."""

    at: str  # ISO 8601 UTC: from when the image is not used
    reason: str
    by: str  # the build ID of the image the revocation was issued on (this one or an ancestor)


@dataclass(frozen=True)
class Build:
    """One build of a definition: its image in each region (the build and its copies), which
    share a build ID."""

    definition: str
    fingerprint: str
    build_id: str
    images: Mapping[str, Image]  # region -> image, by region

    @property
    def key(self) -> tuple[str, str]:
        return (self.definition, self.build_id)

    @property
    def created(self) -> str:
        """When it was built: its oldest image's creation date (a copy is younger)."""
        return min(i.creation_date for i in self.images.values())

    @property
    def recency(self) -> tuple[str, str, str]:
        """Its place in time among builds, the newest highest: when it was built, then within
        that second its built-at tag (Image.recency), then its build ID."""
        built_at = max((i.tag(TAG_BUILT_AT) or "" for i in self.images.values()), default="")
        return (self.created, built_at, self.build_id)

    @property
    def amis(self) -> dict[str, str]:
        """Region -> AMI ID."""
        return {r: i.ami_id for r, i in sorted(self.images.items())}

    @property
    def parents(self) -> frozenset[str]:
        """The parent AMIs its images were built on (any region)."""
        return frozenset(
            p for i in self.images.values() if (p := i.tag(TAG_PARENT_AMI) or "") != ""
        )

    @property
    def revocation(self) -> Revocation | None:
        """The revocation its images carry (the first region's), or None."""
        for _, image in sorted(self.images.items()):
            revocation = revocation_of(image)
            if revocation is not None:
                return revocation
        return None


def builds_of(images: Iterable[Image], *, tag_key: str) -> tuple[Build, ...]:
    """`images` grouped into builds by definition and build ID (an image without a build ID is
    a build of its own), ordered by definition and build ID."""
    groups: dict[tuple[str, str], dict[str, Image]] = {}
    for image in sorted(images, key=lambda i: (i.region, i.ami_id), reverse=True):
        key = (image.tag(TAG_DEFINITION) or "", image.tag(TAG_BUILD_ID) or image.ami_id)
        # Two images of one build in one region (tagged by hand): the first by AMI ID counts.
        groups.setdefault(key, {})[image.region] = image
    builds = []
    for (definition, build_id), regional in sorted(groups.items()):
        ordered = dict(sorted(regional.items()))
        first = next(iter(ordered.values()))
        builds.append(
            Build(definition, first.tag(tag_key) or "", build_id, MappingProxyType(ordered))
        )
    return tuple(builds)


def revocation_of(image: Image) -> Revocation | None:
    """The revocation `image`'s tags record, or None."""
    at = image.tag(TAG_REVOKED_AT)
    if at is None:
        return None
    return Revocation(at, image.tag(TAG_REVOKE_REASON) or "", image.tag(TAG_REVOKED_BY) or "")


def parse_time(text: str | None, *, assume_utc: bool = True) -> datetime | None:
    """An ISO 8601 time (EC2's CreationDate 2026-01-01T00:00:00.000Z, a tag, a flag) as an
    aware datetime; None when absent or unreadable. A time without a zone is UTC (EC2's and the
    bridge's are), or None when not `assume_utc`."""
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=timezone.utc) if assume_utc else None
    return parsed


def timestamp(at: datetime) -> str:
    """The bridge's form of a time in tags and manifests: ISO 8601 UTC, whole seconds, `Z`."""
    return at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def precise_timestamp(at: datetime) -> str:
    """`timestamp` to the microsecond (TAG_BUILT_AT), so that such values sort as times do."""
    return at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def revocation_time(text: str) -> datetime:
    """A revoked-at value as an aware datetime (one without a zone is UTC); one that does not
    parse counts as long past: someone meant to withdraw the image."""
    return parse_time(text) or datetime.min.replace(tzinfo=timezone.utc)


def revoked_at(image: Image) -> datetime | None:
    """When `image` is (or will be) revoked; None when it is not."""
    text = image.tag(TAG_REVOKED_AT)
    return None if text is None else revocation_time(text)


def is_revoked(image: Image, now: datetime) -> bool:
    """Whether `image` is revoked at `now` (a revocation scheduled for later is not yet)."""
    at = revoked_at(image)
    return at is not None and at <= now
