"""The planner: from fingerprints and the images seen, a decision per definition. No I/O.

Deciding is separate from looking (fingerprint.py, registry.py) and from acting (resolve.py): every
case here is plain data in, plain data out, so `status`, dry runs and the resolve loop print and
act on the same decision.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from types import MappingProxyType
from typing import Literal

from bridge.catalog import Definition
from bridge.errors import QueryError
from bridge.model import (
    TAG_ARCHIVED,
    TAG_BUILD_ID,
    TAG_DEFINITION,
    TAG_MANIFEST,
    TAG_PARENT_AMI,
    TAG_PARENT_ORIGIN,
    TAG_REVOKE_REASON,
    Image,
    is_revoked,
    parse_time,
    revoked_at,
    timestamp,
)
from bridge.settings import DEFAULT_ON_REVOKED, OnMissing, OnRevoked

# found: every region has a usable image; pending: every region has one, some still pending;
# partial: some regions have the image (a copy of one build), others have none: copied, not built;
# outdated: images with this fingerprint exist but none was built on the parent's current AMI;
# expired: images with this fingerprint exist but all are older than the definition's maximum age;
# revoked: images with this fingerprint exist but none is usable and some are revoked
# (revoke.py), themselves or through an ancestor (this comes before outdated and expired);
# archived: images with this fingerprint exist but their snapshots are in EBS's archive tier
# (archive.py: gc archived a build kept only for rollback); `ami-bridge unarchive` restores them;
# missing: no usable image in any region.
State = Literal[
    "found", "missing", "outdated", "expired", "revoked", "archived", "pending", "partial"
]
# Per region: an available image; one being built (the build region) or copied (the others);
# none.
RegionState = Literal["found", "pending", "copying", "missing"]
# use the image; wait for a pending one; build; copy to the regions that lack it; fail with
# "not found"; report the miss as is.
Step = Literal["use", "wait", "build", "copy", "fail", "report"]
Source = Literal["ec2", "seed-manifest", "none"]


@dataclass(frozen=True)
class Decision:
    """What one definition needs, given what EC2 (or a seed pipeline's manifest) has."""

    definition: str
    fingerprint: str
    state: State
    regions: tuple[str, ...]
    # region -> the image to use (every region for found/pending; otherwise what was usable)
    images: Mapping[str, Image] = field(default_factory=lambda: MappingProxyType({}))
    # region -> further images of the chosen one's build (or of builds without IDs) there, for
    # warnings: an earlier build of the fingerprint is not one
    duplicates: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}))
    source: Source = "none"
    # The build IDs of every image of this definition with this fingerprint, in any of its
    # regions, usable or not (outdated ones too): a build now supersedes them, and its ID says so.
    prior: tuple[str, ...] = ()
    # When the image used expires (ISO 8601, UTC; "" when images never expire).
    expires_at: str = ""
    # Revoked: the reason recorded on the newest revoked image.
    revoke_reason: str = ""
    # When the image used is revoked (a revocation scheduled for later; ISO 8601 UTC; "" when
    # none is).
    revokes_at: str = ""
    # The region the answer is for (one of `regions`; "" for the build region, the first).
    asked: str = ""

    @property
    def usable(self) -> bool:
        """An image exists in every region (possibly still pending)."""
        return self.state in ("found", "pending")

    @property
    def amis(self) -> dict[str, str]:
        """Region -> AMI ID of the images to use (the regions that have one, when partial)."""
        return {r: i.ami_id for r, i in self.images.items()} if self._has_images else {}

    @property
    def primary(self) -> Image | None:
        """The image in the build region, when there is one to use."""
        return self.images.get(self.regions[0]) if self._has_images else None

    @property
    def region(self) -> str:
        """The region the answer is for."""
        return self.asked or self.regions[0]

    @property
    def here(self) -> Image | None:
        """The image to use in the region asked, when it has one: what a resolve answers."""
        return self.images.get(self.region) if self._has_images else None

    @property
    def foreign(self) -> bool:
        """Its images are another account's (found through its manifest)."""
        return any(i.foreign for i in self.images.values())

    @property
    def _has_images(self) -> bool:
        return self.state in ("found", "pending", "partial")

    @property
    def region_states(self) -> dict[str, RegionState]:
        """Each region's image: found, pending (being built), copying or missing."""
        states: dict[str, RegionState] = {}
        for region in self.regions:
            image = self.images.get(region) if self._has_images else None
            if image is None:
                states[region] = "missing"
            else:
                making: RegionState = "pending" if region == self.regions[0] else "copying"
                states[region] = making if image.state == "pending" else "found"
        return states

    @property
    def missing_regions(self) -> tuple[str, ...]:
        """The regions a partial image still has to be copied to."""
        return tuple(r for r, s in self.region_states.items() if s == "missing")


def build_id(decision: Decision, parent_build_id: str | None) -> str:
    """The build ID of the image `decision` uses, or, when it has none to use, of the one a build
    now would make (`predicted_build_id`).

    An image's build ID is its build-ID tag; an image without one (a seed pipeline's, or tagged
    by hand) is identified by its AMI ID.
    """
    primary = decision.primary
    if primary is None and decision.state == "partial":
        # Not in this region yet: its copies elsewhere carry the build's ID.
        primary = next(iter(decision.images.values()), None)
    if primary is not None:
        return primary.tag(TAG_BUILD_ID) or primary.ami_id
    return predicted_build_id(decision, parent_build_id)


def predicted_build_id(decision: Decision, parent_build_id: str | None) -> str:
    """The build ID of an image of `decision`'s definition built now, known before it is built.

    It is derived from the fingerprint, the parent image's build ID (None for a root) and the
    images it supersedes (`Decision.prior`), so it is the same in every process that looks at the
    same images (a Terraform plan, and the apply that builds), and it changes whenever the image
    would be built on something else: a new fingerprint, a rebuilt parent, a forced rebuild.
    The image is tagged with it, so after the build the found image has the ID planned for it.
    """
    text = "\n".join(
        [
            "ami-chain build-id v1",
            f"fingerprint {decision.fingerprint}",
            f"parent {parent_build_id or '-'}",
            *(f"prior {build}" for build in sorted(decision.prior)),
        ]
    )
    return hashlib.sha256(text.encode()).hexdigest()[:40]


def regions_for(
    d: Definition, *, catalog_regions: Sequence[str], region: str, explicit: bool = False
) -> tuple[str, ...]:
    """Regions the image of `d` must exist in; the first is where it is built.

    The definition's regions, else the catalog's, else `region`; `region` goes first when listed.
    A region asked for (`explicit`) that the definition does not list is an error: an AMI from
    another region would be useless there.
    """
    regions = tuple(d.regions or catalog_regions or (region,))
    if region in regions:
        return (region, *[r for r in regions if r != region])
    if explicit:
        raise QueryError(
            f"Definition {d.name!r} is not distributed to {region} (its regions: "
            f"{', '.join(regions)}), so it has no AMI there. Resolve it in one of its regions "
            "(--region, the query's `region`, AWS_REGION; in the ami_chain module its `region` "
            "or the AWS provider's), or add the region to its `regions` in the catalog."
        )
    return regions


def decide(
    d: Definition,
    fingerprint: str,
    regions: Sequence[str],
    seen: Mapping[str, Sequence[Image]],
    *,
    parent_amis: Collection[str] | None,
    parent_origin: str | None = None,
    seeded: Mapping[str, Image] | None = None,
    max_age_days: float | None = None,
    now: datetime | None = None,
    asked: str | None = None,
) -> Decision:
    """Classify `d` from the images seen with its fingerprint (region -> images, newest first).

    `parent_amis` are the AMIs of the parent's image, one per region (empty when the parent has
    none yet; None for a root), and `parent_origin` the origin AMI their build's images carry
    (None when unknown). A child's image counts only if it was built on that build: its
    parent-AMI tag names one of them (the child may be built in another region than the parent,
    on its copy there), or its parent-origin tag names the build's origin (the copy it was built
    on may be gone while the build's other copies remain, and are copied back; a parent rebuilt
    after all its images went has another origin, whatever its build ID). `seeded` is a root
    image a seed pipeline built in the same workflow (its manifest), used only when EC2 has no
    complete image by fingerprint and every region's copy is available. `asked` is the region
    the answer is for (the first of `regions` by default).
    """
    regions = tuple(regions)
    region_asked = asked if asked in regions else regions[0]
    # As build IDs, from every region: a copy carries its original's, so the same images are
    # counted whichever region is resolved first.
    prior = tuple(
        sorted(
            {
                i.tag(TAG_BUILD_ID) or i.ami_id
                for region in regions
                for i in seen.get(region, ())
                if i.tag(TAG_DEFINITION) in (None, d.name, *d.formerly)
            }
        )
    )
    # An image's age counts from its build: the first creation date among the images with its
    # build ID (a copy made later is as old as its build).
    born: dict[str, datetime] = {}
    for region in regions:
        for i in seen.get(region, ()):
            created = parse_time(i.creation_date)
            if created is not None:
                build = i.tag(TAG_BUILD_ID) or i.ami_id
                born[build] = min(born.get(build, created), created)
    lifetime = None if max_age_days is None else timedelta(days=max_age_days)
    now = now or datetime.now(timezone.utc)

    def expiry(i: Image) -> datetime | None:
        start = born.get(i.tag(TAG_BUILD_ID) or i.ami_id)
        return None if lifetime is None or start is None else start + lifetime

    chosen: dict[str, Image] = {}
    duplicates: dict[str, tuple[str, ...]] = {}
    outdated = expired = False
    withdrawn: list[Image] = []
    archived: list[Image] = []
    for region in regions:
        # An image whose provenance names another definition is that definition's, whatever
        # fingerprint it carries (a name this one had before a rename is its own).
        candidates = [
            i for i in seen.get(region, ()) if i.tag(TAG_DEFINITION) in (None, d.name, *d.formerly)
        ]
        # A revoked image is never used again, whatever its parent or age; a revocation
        # scheduled for later leaves it usable until then.
        withdrawn += [i for i in candidates if is_revoked(i, now) or i.state == "disabled"]
        candidates = [i for i in candidates if not is_revoked(i, now) and i.state != "disabled"]
        # An image whose snapshots are archived cannot be launched until they are restored.
        archived += [i for i in candidates if i.tag(TAG_ARCHIVED)]
        candidates = [i for i in candidates if not i.tag(TAG_ARCHIVED)]
        if parent_amis is not None:
            matching = [
                i
                for i in candidates
                if i.tag(TAG_PARENT_AMI) in parent_amis
                or (parent_origin is not None and i.tag(TAG_PARENT_ORIGIN) == parent_origin)
            ]
            outdated = outdated or (bool(candidates) and not matching)
            candidates = matching
        fresh = [i for i in candidates if (expiry(i) or now) >= now]
        expired = expired or (bool(candidates) and not fresh)
        candidates = fresh
        if candidates:
            chosen[region] = candidates[0]
            # Another build of the fingerprint (a forced rebuild's predecessor) is expected
            # until gc; two images of one build in a region (or of builds without IDs) are not.
            own = candidates[0].tag(TAG_BUILD_ID)
            doubled = [
                i for i in candidates[1:] if own is None or i.tag(TAG_BUILD_ID) in (None, own)
            ]
            if doubled:
                duplicates[region] = tuple(i.ami_id for i in doubled)
    complete = all(r in chosen for r in regions)
    if (
        not complete
        and parent_amis is None
        and seeded is not None
        and all(r in seeded and seeded[r].state == "available" for r in regions)
    ):
        return Decision(
            d.name,
            fingerprint,
            "found",
            regions,
            MappingProxyType({r: seeded[r] for r in regions}),
            source="seed-manifest",
            prior=prior,
            asked=region_asked,
        )
    state: State
    if complete:
        state = "pending" if any(i.state == "pending" for i in chosen.values()) else "found"
    elif chosen:
        # One build, not distributed everywhere: regions are not in the fingerprint, so the
        # missing ones get copies of it.
        state = "partial"
    else:
        # Revoked first: it says why the image went, which "outdated" (its parent was revoked
        # too) or "expired" would hide.
        state = (
            "revoked"
            if withdrawn
            else "archived"
            if archived
            else "outdated"
            if outdated
            else "expired"
            if expired
            else "missing"
        )
    used = chosen.get(region_asked) or chosen.get(regions[0]) or next(iter(chosen.values()), None)
    ends = None if used is None else expiry(used)
    newest = max(withdrawn, key=lambda i: i.recency, default=None)
    reason = (newest.tag(TAG_REVOKE_REASON) or "") if newest and state == "revoked" else ""
    scheduled = None if used is None else revoked_at(used)
    return Decision(
        d.name,
        fingerprint,
        state,
        regions,
        MappingProxyType(chosen),
        MappingProxyType(duplicates),
        source="ec2" if chosen else "none",
        prior=prior,
        expires_at="" if ends is None else timestamp(ends),
        revoke_reason=reason,
        revokes_at="" if scheduled is None else timestamp(scheduled),
        asked=region_asked,
    )


def expires_at(creation_date: str, max_age_days: float | None) -> str:
    """When an image built at `creation_date` expires (ISO 8601 UTC; "" when never)."""
    created = parse_time(creation_date)
    if created is None or max_age_days is None:
        return ""
    return timestamp(created + timedelta(days=max_age_days))


def next_step(
    decision: Decision,
    *,
    on_missing: OnMissing,
    forced: bool,
    parent_ready: bool,
    on_revoked: OnRevoked = DEFAULT_ON_REVOKED,
) -> Step:
    """What to do about a decision.

    `forced` rebuilds whatever is there; `parent_ready` says the parent (if any) has an image to
    build on. Without one, a child can only be reported as it is. A revoked image is like a
    missing one (`on_missing` decides), except that `on_revoked=fail` fails whatever
    `on_missing` says: neither rebuilt nor reported as a mere miss.
    """
    if forced:
        return "build" if parent_ready else "report"
    if decision.state == "found":
        return "use"
    here = decision.here
    if decision.state == "pending":
        # Only copies elsewhere are still being made: the image in the region asked serves a
        # look.
        if on_missing != "build" and here is not None and here.state == "available":
            return "use"
        return "wait"
    if decision.state == "partial":
        if on_missing == "build" and not decision.foreign:
            return "copy"
        if here is not None:
            # The region asked has its image; the others are copied by a build run (by the
            # owner).
            return "use" if here.state == "available" else "wait"
        # Not in the region asked: whichever other region has a copy, the answer here is a miss.
        return "fail" if on_missing == "fail" else "report"
    if decision.state == "archived":
        # Its build exists, archived: restored by `ami-bridge unarchive`, never built again.
        return "report" if on_missing == "report" else "fail"
    if not parent_ready:
        return "report"
    if decision.state == "revoked" and on_revoked == "fail":
        return "fail"
    if on_missing == "build":
        return "build"
    if on_missing == "fail":
        return "fail"
    return "report"


def renamed(decision: Decision, d: Definition) -> bool:
    """A found image of this account's whose provenance names one of `d`'s former names
    (`formerly`): to be adopted (retagged with the new name) rather than rebuilt."""
    return (
        decision.state == "found"
        and decision.source == "ec2"
        and not decision.foreign
        and any(i.tag(TAG_DEFINITION) in d.formerly for i in decision.images.values())
    )


def needs_manifest(decision: Decision, definition: str) -> bool:
    """A found image this tool built (its provenance names `definition`) that is not marked as
    having its manifest: the manifest write may have failed after tagging."""
    return (
        decision.state == "found"
        and decision.source == "ec2"
        and not decision.foreign
        and all(
            i.tag(TAG_DEFINITION) == definition and i.tag(TAG_MANIFEST) is None
            for i in decision.images.values()
        )
    )
