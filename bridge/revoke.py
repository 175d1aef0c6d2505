"""Revocation: withdrawing an image, and every image built on it, from use; and restoring it.

A revocation is recorded where readers look: tags on each image and its snapshots
(`ami-chain:revoked-at`, `ami-chain:revoke-reason`, `ami-chain:revoked-by`, which the planner
reads), EC2's own deprecation time (which EC2 consoles and other tools show), and the build's S3
manifest (which workload accounts read, since EC2 hides tags from them). An image built on a
revoked one, at any depth, is revoked with it, `revoked-by` naming the build revoked; restoring
that build restores exactly those. Everything is looked up and checked before the first write.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from bridge import distribute, manifests, model, ownership, plan, registry
from bridge.catalog import Definition
from bridge.errors import AwsError, BridgeError, ManifestError, QueryError
from bridge.fanout import each_region
from bridge.model import Build, Image
from bridge.survey import Surveyor

if TYPE_CHECKING:
    from bridge.context import Context

log = logging.getLogger(__name__)

AMI_ID = re.compile(r"ami-[0-9a-f]{8,17}")
FINGERPRINT = re.compile(r"[0-9a-f]{40}")
REASON_MAX = 200


@dataclass(frozen=True)
class Change:
    """What a revoke or restore did to one build."""

    build: Build
    # The revocation written (revoke), or the one removed (restore).
    revocation: model.Revocation
    # A descendant already revoked on its own earlier: left as it was.
    kept: bool = False


def parse_time(text: str | None, now: datetime) -> datetime:
    """--at: ISO 8601 with a time zone (`Z` or an offset), as UTC whole seconds; now when None."""
    if text is None:
        return now.replace(microsecond=0)
    at = model.parse_time(text, assume_utc=False)
    if at is None:
        raise QueryError(
            f"--at is {text[:60]!r}, not an ISO 8601 time with a time zone. Pass e.g. "
            "2026-12-01T09:00:00Z or 2026-12-01T10:00:00+01:00 (a time in the future schedules "
            "the revocation), or leave --at out to revoke now."
        )
    return at.astimezone(timezone.utc).replace(microsecond=0)


def check_reason(reason: str | None) -> str:
    """The reason, stripped: required, one line, at most REASON_MAX characters."""
    text = " ".join((reason or "").split())
    if not text:
        raise QueryError(
            "A revocation needs a reason: pass --reason TEXT (e.g. --reason 'CVE-2026-1234 in "
            "openssl'). It is recorded on every image revoked, and shown by resolve and status."
        )
    if len(text) > REASON_MAX:
        raise QueryError(
            f"The reason is {len(text)} characters; keep it to {REASON_MAX} (it goes into EC2 "
            "tags, which hold 255, with the ancestor's name for descendants). Link to details "
            "instead."
        )
    return text


def deprecate_at(at: datetime, now: datetime) -> datetime:
    """EC2's deprecation time for a revocation at `at`, sent at `now` (the moment of the call):
    EC2 rounds it to the nearest minute and refuses a time in the past, so no earlier than the
    whole minute after next (at least a minute ahead, whatever the rounding and the time the
    request takes). The revocation itself is the revoked-at tag, in force from `at`."""
    soon = now.replace(second=0, microsecond=0) + timedelta(minutes=2)
    return max(at, soon)


class Revoker:
    """Revokes and restores the builds of one catalog's definitions."""

    def __init__(
        self, ctx: Context, *, clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)
    ) -> None:
        self._clock = clock
        self._ctx = ctx
        self.settings = ctx.settings
        self.catalog = ctx.catalog
        self.clients = ctx.clients
        self._surveyor = Surveyor(ctx)

    # -- looking --------------------------------------------------------------------------------

    def regions(self) -> tuple[str, ...]:
        """Every region any definition of the catalog uses (the resolve region first)."""
        found = [self.settings.region]
        for d in self.catalog.all():
            found += plan.regions_for(
                d, catalog_regions=self.settings.regions, region=self.settings.region
            )
        return tuple(dict.fromkeys(found))

    def targets(
        self,
        d: Definition,
        *,
        fingerprint: str | None,
        ami: str | None,
        revoked: bool,
    ) -> list[Build]:
        """The builds named: the one of an AMI (any regional copy), else every build with the
        fingerprint (default: the definition's at the commit), newest first, that is not
        revoked yet (`revoked` False) or revoked by its own revocation (`revoked` True). Every
        build of a fingerprint is built from the same content: what is wrong with one (a CVE in
        it) is wrong with all, and an older one must not take the place of the one revoked."""
        if ami is not None:
            return [self._by_ami(d, ami)]
        fp, builds = self._of_fingerprint(d, fingerprint)
        return self._wanted(d, fp, builds, revoked=revoked)

    def _of_fingerprint(self, d: Definition, fingerprint: str | None) -> tuple[str, list[Build]]:
        """The fingerprint (default: the definition's at the commit) and every build of `d`
        with it, newest first (one lookup per region)."""
        if fingerprint is not None and not FINGERPRINT.fullmatch(fingerprint):
            raise QueryError(
                f"--fingerprint is {fingerprint[:60]!r}, not a fingerprint (40 hexadecimal "
                f"digits). `ami-bridge status` shows each definition's; pass the whole of it."
            )
        fp = fingerprint or self._surveyor.fingerprints([d.name])[d.name]
        images = [
            i
            for found in self._tagged(self.settings.tag_key, [fp])
            for i in found
            if i.tag(model.TAG_DEFINITION) in (None, d.name)
            and not ownership.foreign(i, self.settings.catalog_id)
        ]
        builds = sorted(
            (
                replace(b, definition=b.definition or d.name)
                for b in _builds(images, self.settings.tag_key).values()
            ),
            key=lambda b: max(i.creation_date for i in b.images.values()),
            reverse=True,
        )
        return fp, builds

    def _wanted(self, d: Definition, fp: str, builds: list[Build], *, revoked: bool) -> list[Build]:
        """Of `builds`, those not revoked yet (`revoked` False) or revoked by their own
        revocation (`revoked` True); an error saying why when there are none."""
        now = datetime.now(timezone.utc)
        if revoked:
            wanted = [b for b in builds if _revoked_by_itself(b)]
        else:
            wanted = [b for b in builds if not _in_effect(b, now)]
        if wanted:
            return wanted
        where = ", ".join(self.regions())
        if not builds:
            raise QueryError(
                f"No image of {d.name!r} carries {self.settings.tag_key}={fp} in {where} (owners "
                f"{','.join(self.settings.owners)}), so nothing was changed. Check the "
                "definition, --fingerprint or --commit (`ami-bridge status` shows what exists), "
                "or name the image with --ami."
            )
        if revoked:
            by = [b.revocation.by for b in builds if b.revocation is not None]
            raise QueryError(
                f"The image of {d.name!r} with fingerprint {fp[:12]} is not revoked by a "
                "revocation of its own, so there is nothing to restore"
                + (self._revoked_by(by[0]) if by else ".")
            )
        raise QueryError(
            f"Every image of {d.name!r} with fingerprint {fp[:12]} is revoked already. Name one "
            "with --ami to change its revocation, or `ami-bridge restore` it first."
        )

    def _by_ami(self, d: Definition, ami: str) -> Build:
        if not AMI_ID.fullmatch(ami):
            raise QueryError(
                f"--ami is {ami[:60]!r}, not an AMI ID (ami- and 8 or 17 hexadecimal digits). "
                "Pass the ID of any regional copy of the image."
            )
        for region in self.regions():
            image = registry.image_by_id(self.clients.ec2(region), region, ami)
            if image is None:
                continue
            if not registry.owned_by(image, self.settings.owners):
                break
            named = image.tag(model.TAG_DEFINITION)
            if named is None or image.tag(self.settings.tag_key) is None:
                raise QueryError(
                    f"{ami} is not a build of {d.name!r}: it carries no "
                    f"{model.TAG_DEFINITION} and {self.settings.tag_key} tags, so the bridge did "
                    "not build it and nothing was changed. Name an image of one of this "
                    "catalog's definitions (`ami-bridge status` lists them)."
                )
            if ownership.foreign(image, self.settings.catalog_id):
                raise QueryError(
                    f"{ami} is an image of another catalog ({image.tag(model.TAG_CATALOG)}), "
                    f"not of this one ({self.settings.catalog_id}), so nothing was changed. "
                    "Revoke it from the repository whose catalog built it."
                )
            if named != d.name:
                raise QueryError(
                    f"{ami} is an image of {named!r}, not {d.name!r}. Name its definition: "
                    f"`ami-bridge revoke {named} --ami {ami} ...`."
                )
            build_id = image.tag(model.TAG_BUILD_ID)
            if build_id is None:
                return Build(d.name, image.tag(self.settings.tag_key) or "", ami, {region: image})
            copies = self._copies([build_id])
            found = copies.get(build_id) or Build(
                d.name, image.tag(self.settings.tag_key) or "", build_id, {region: image}
            )
            return replace(found, definition=found.definition or d.name)
        raise QueryError(
            f"No image {ami} of owners {','.join(self.settings.owners)} exists in "
            f"{', '.join(self.regions())} (the regions the catalog uses), so nothing was changed. "
            "Check the AMI ID, the account and --region."
        )

    def _copies(self, build_ids: Iterable[str]) -> dict[str, Build]:
        """Build ID -> the build, with its copies in every region (one call per region)."""
        ids = sorted(set(build_ids))
        images = [i for found in self._tagged(model.TAG_BUILD_ID, ids) for i in found]
        return _builds(images, self.settings.tag_key)

    def _tagged(self, key: str, values: Iterable[str]) -> list[list[Image]]:
        """Images tagged `key` = one of `values`, disabled ones too, in every region at once."""
        wanted = sorted(set(values))
        return list(
            each_region(
                self.regions(),
                lambda region: registry.find_tagged(
                    self.clients.ec2(region),
                    region,
                    key,
                    wanted,
                    owners=self.settings.owners,
                    include_disabled=True,
                ),
            ).values()
        )

    def descendants(self, root: Build) -> list[Build]:
        """Every build made on `root`, at any depth, parents before children: images whose
        parent-AMI tag names an AMI of a build already found, looked up to a fixed point."""
        seen = {root.build_id}
        frontier = set(root.amis.values())
        found: list[Build] = []
        while frontier:
            children = [i for found in self._tagged(model.TAG_PARENT_AMI, frontier) for i in found]
            new = {i.tag(model.TAG_BUILD_ID) or i.ami_id for i in children} - seen
            if not new:
                break
            builds = self._copies(new)
            # An image without a build ID is a build of its own.
            for image in children:
                build = image.tag(model.TAG_BUILD_ID) or image.ami_id
                if build in new and build not in builds:
                    builds[build] = _builds([image], self.settings.tag_key)[build]
            seen |= new
            frontier = set()
            for build_id in sorted(new):
                found.append(builds[build_id])
                frontier |= set(builds[build_id].amis.values())
        return found

    # -- acting ---------------------------------------------------------------------------------

    def revoke(
        self,
        name: str,
        *,
        reason: str | None,
        at: str | None,
        fingerprint: str | None = None,
        ami: str | None = None,
        now: datetime | None = None,
    ) -> list[Change]:
        """Revoke the named build of `name` (with --ami), else every build of its fingerprint,
        and every build made on them; what was revoked.

        A revocation cut short (a failed call, a lost machine) is completed by running the same
        command again: the builds revoked by themselves with the same reason are revoked again,
        as recorded, with everything made on them (each step is idempotent)."""
        now = now or datetime.now(timezone.utc)
        d = self.catalog.get(name)
        text = check_reason(reason)
        when = parse_time(at, now)
        refused: QueryError | None = None
        unfinished: list[tuple[Build, model.Revocation]] = []
        if ami is not None:
            fresh = [self._by_ami(d, ami)]
        else:
            fp, builds = self._of_fingerprint(d, fingerprint)
            try:
                fresh = self._wanted(d, fp, builds, revoked=False)
            except QueryError as exc:
                fresh, refused = [], exc
            # Those a run cut short revoked already (their own tags on): completed as recorded.
            unfinished = [
                (b, b.revocation)
                for b in builds
                if b.revocation is not None
                and b.revocation.by == b.build_id
                and b.revocation.reason == text
            ]
        plans = [(t, model.Revocation(model.timestamp(when), text, t.build_id)) for t in fresh]
        planned = {b.build_id for b in fresh}
        plans += [(b, own) for b, own in unfinished if b.build_id not in planned]
        if refused is not None and not plans:
            raise refused
        if refused is not None:
            log.info("completing the revocation of %s", d.name)
        changes: list[Change] = []
        seen: set[str] = set()
        for target, own in plans:
            for change in self._revocation(d, target, own, text):
                if change.build.build_id not in seen:
                    seen.add(change.build.build_id)
                    changes.append(change)
        written = [c for c in changes if not c.kept]

        def write(region: str) -> None:
            # In each region the revoked build first, then what was built on it, parents before
            # children: a run cut short leaves the build's own record wherever anything is
            # written, and running it again completes it.
            ec2 = self.clients.ec2(region)
            for change in written:
                image = change.build.images.get(region)
                if image is None:
                    continue
                tags = {
                    model.TAG_REVOKED_AT: change.revocation.at,
                    model.TAG_REVOKE_REASON: change.revocation.reason,
                    model.TAG_REVOKED_BY: change.revocation.by,
                }
                registry.tag_image(ec2, image, tags)
                # From the clock at each call: a long revocation crosses minutes.
                at = model.revocation_time(change.revocation.at)
                if not _deprecated_by(image, at):  # a run completed again leaves it as it is
                    registry.deprecate(ec2, image, deprecate_at(at, self._clock()))
                if self.catalog.on_revoke == "disable" and at <= self._clock():
                    # Nobody can launch it, in any account. EC2 drops its launch permissions:
                    # the shared tag says so, and a restore shares it again.
                    registry.tag_image(ec2, image, {model.TAG_SHARED: ""})
                    if image.state != "disabled":
                        registry.disable(ec2, image)

        # Every region at once (each region's writes are one after another, paced by its
        # client), so twenty regions take one region's writes, not twenty.
        each_region(sorted({r for c in written for r in c.build.images}), write)
        for change in written:
            log.info(
                "revoked %s %s (%s) from %s",
                change.build.definition,
                change.build.build_id[:12],
                ", ".join(change.build.amis.values()),
                change.revocation.at,
            )
        self._record(
            [(c.build, c.revocation) for c in changes if not c.kept],
        )
        return changes

    def _revocation(
        self, d: Definition, target: Build, own: model.Revocation, text: str
    ) -> list[Change]:
        """What revoking `target` (with `own`) does: its own change, then each build made on it,
        parents before children (one revoked before, for another reason, is kept as it is)."""
        when = model.revocation_time(own.at)
        first = target.images.get(self.settings.region) or next(iter(target.images.values()))
        inherited = model.Revocation(
            own.at,
            f"{d.name} {target.build_id[:12]} ({first.ami_id}) revoked: {text}",
            target.build_id,
        )
        changes = [Change(target, own)]
        for build in self.descendants(target):
            earlier = build.revocation
            if (
                earlier is not None
                and earlier.by != target.build_id
                and model.revocation_time(earlier.at) <= when
            ):
                # Revoked before, for its own reason or an ancestor's: that record stands, so
                # restoring this target never lifts it.
                changes.append(Change(build, earlier, kept=True))
            else:
                changes.append(Change(build, inherited))
        return changes

    def restore(
        self, name: str, *, fingerprint: str | None = None, ami: str | None = None
    ) -> list[Change]:
        """Lift the revocation of the named build of `name` (with --ami), else of the newest
        revoked build of its fingerprint and the other builds that revocation revoked, and of
        every build made on them that was revoked because of them (not those revoked for a
        reason of their own).

        The named build's own revocation tags go last: a restore cut short at any step leaves
        them, so running the same command again completes it (each step is idempotent)."""
        d = self.catalog.get(name)
        found = self.targets(d, fingerprint=fingerprint, ami=ami, revoked=True)
        newest = found[0].revocation
        # The newest revoked build, and the other builds of the fingerprint the same revocation
        # (`revoke DEF` revokes every build of it) revoked.
        changes: list[Change] = []
        for target in found:
            own = target.revocation
            if target is found[0] or (
                own is not None
                and newest is not None
                and (own.at, own.reason) == (newest.at, newest.reason)
            ):
                changes += self._restore_one(d, target)
        return changes

    def _restore_one(self, d: Definition, target: Build) -> list[Change]:
        """Restore `target` and what was revoked because of it (its own tags last)."""
        own = target.revocation
        if own is None or own.by != target.build_id:
            raise QueryError(
                f"The image {', '.join(target.amis.values())} of {d.name!r} is not revoked by a "
                "revocation of its own, so there is nothing to restore"
                + (self._revoked_by(own.by) if own is not None else ".")
            )
        changes = [Change(target, own)]
        # Their manifests too: a descendant a run cut short restored already may still be
        # recorded as revoked.
        records = [target]
        for build in self.descendants(target):
            revocation = build.revocation
            if revocation is not None and revocation.by == target.build_id:
                changes.append(Change(build, revocation))
            elif revocation is not None:
                changes.append(Change(build, revocation, kept=True))
            if revocation is None or revocation.by == target.build_id:
                records.append(build)
        for change in changes[1:]:
            if not change.kept:
                self._lift(change.build, deprecation=True, untag=True)
        self._lift(target, deprecation=True, untag=False)
        self._record([(b, None) for b in records])
        self._lift(target, deprecation=False, untag=True)  # last: what a second run finishes
        return changes

    def _lift(self, build: Build, *, deprecation: bool, untag: bool) -> None:
        """Clear `build`'s EC2 deprecation and then its revocation tags, in every region."""
        for region, image in sorted(build.images.items()):
            if deprecation and image.state == "disabled":
                registry.enable(self.clients.ec2(region), image)
            if deprecation:
                registry.deprecate(self.clients.ec2(region), image, None)
        for region, image in sorted(build.images.items()):
            if untag:
                registry.untag_image(self.clients.ec2(region), image, model.REVOCATION_TAGS)
        if deprecation and build.definition in self.catalog.definitions:
            # Shared again as the catalog says (EC2 dropped the permissions of a disabled one).
            enabled = {
                r: replace(i, state="available") if i.state == "disabled" else i
                for r, i in build.images.items()
            }
            distribute.share_image(self._ctx, self.catalog.get(build.definition), enabled)
        if untag:
            log.info(
                "restored %s %s (%s)",
                build.definition,
                build.build_id[:12],
                ", ".join(build.amis.values()),
            )

    def _revoked_by(self, build_id: str) -> str:
        """The end of restore's message for a build revoked through the build `build_id`: the
        definition that build is of, and the command that restores it."""
        for region in self.regions():
            for image in registry.find_tagged(
                self.clients.ec2(region),
                region,
                model.TAG_BUILD_ID,
                [build_id],
                owners=self.settings.owners,
                include_disabled=True,
            ):
                name = image.tag(model.TAG_DEFINITION) or "?"
                return (
                    f": it is revoked because its ancestor {name!r} (build {build_id[:12]}, "
                    f"{image.ami_id} in {region}) is; restore that one with `ami-bridge restore "
                    f"{name} --ami {image.ami_id}`, which restores this image too."
                )
        return f": it is revoked because of the build {build_id[:12]}, which no longer exists."

    def _record(self, records: Sequence[tuple[Build, model.Revocation | None]]) -> None:
        """Write (or clear) each build's revocation in its manifest, when it has one; the tags
        are on already, so a failure here names what to run again."""
        bucket, prefix = self.settings.manifest_bucket, self.settings.manifest_prefix
        if not bucket:
            return
        s3 = self.clients.s3(self.settings.region)
        failed: list[str] = []
        for build, revocation in records:
            if not build.fingerprint:
                continue
            try:
                found = manifests.fetch(s3, bucket, prefix, build.definition, build.fingerprint)
                # A manifest describes the newest build of its fingerprint; an older build's
                # has been replaced, and is left alone.
                if found is None or not set(found.amis.values()) & set(build.amis.values()):
                    continue
                if found.revoked != revocation:
                    manifests.publish(s3, bucket, prefix, replace(found, revoked=revocation))
            except (AwsError, ManifestError) as exc:
                log.warning("%s: the manifest was not updated: %s", build.definition, exc)
                failed.append(build.definition)
        if failed:
            raise BridgeError(
                f"The images are tagged, but the manifests of {', '.join(failed)} were not "
                "updated (see the warnings above), so workload accounts, which read the "
                "manifests, do not see the change yet. Fix the access to the manifest bucket "
                "and run the same command again."
            )


def _builds(images: Iterable[Image], tag_key: str) -> dict[str, Build]:
    return {b.build_id: b for b in model.builds_of(images, tag_key=tag_key)}


def _in_effect(build: Build, now: datetime) -> bool:
    revocation = build.revocation
    return revocation is not None and model.revocation_time(revocation.at) <= now


def _deprecated_by(image: Image, at: datetime) -> bool:
    """EC2 deprecates `image` already, from `at` or the moment after it that EC2 accepted (a
    revocation made before): setting it again would move it later."""
    since = model.parse_time(image.deprecation_time, assume_utc=True)
    # EC2 rounds to the minute; deprecate_at sends no earlier than the minute after next.
    return since is not None and -timedelta(minutes=1) <= since - at <= timedelta(minutes=3)


def _revoked_by_itself(build: Build) -> bool:
    revocation = build.revocation
    return revocation is not None and revocation.by == build.build_id
