"""Revocation: withdrawing an image, and every image built on it, from use; and restoring it.

A revocation is recorded where readers look: tags on each image and its snapshots
(`ami-chain:revoked-at`, `ami-chain:revoke-reason`, `ami-chain:revoked-by`, which the planner
reads), EC2's own deprecation time (which EC2 consoles and other tools show), and the build's S3
manifest (which workload accounts read, since EC2 hides tags from them). An image built on a
revoked one, at any depth, is revoked with it, `revoked-by` naming the build revoked; restoring
that build restores exactly those. Everything is looked up (revoke_lookup.py) and checked before
the first write.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from bridge import model
from bridge.aws import manifests, registry, share
from bridge.aws.fanout import each_region
from bridge.catalog import Definition
from bridge.errors import AwsError, BridgeError, ManifestError, QueryError
from bridge.lifecycle import intents
from bridge.lifecycle.revoke_lookup import Lookup
from bridge.model import Build, Image
from bridge.pipeline import distribute

if TYPE_CHECKING:
    from bridge.context import Context

log = logging.getLogger(__name__)

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
        self.look = Lookup(ctx)

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
        recorded = intents.pending(self._ctx, d.name)
        intents.refuse_other(recorded, "revoke")
        if recorded is not None:
            # A revocation cut short is completed as it was recorded, whatever is given now.
            if recorded.reason != text:
                log.warning(
                    "completing the %s; the reason given now (%s) is not used",
                    recorded.describe(),
                    text,
                )
            text, when = recorded.reason, model.revocation_time(recorded.at)
        refused: QueryError | None = None
        unfinished: list[tuple[Build, model.Revocation]] = []
        if ami is not None:
            fresh = [self.look.by_ami(d, ami)]
        else:
            fp, builds = self.look.of_fingerprint(d, fingerprint)
            try:
                fresh = self.look.wanted(d, fp, builds, revoked=False)
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
        intents.begin(
            self._ctx,
            intents.Intent(
                "revoke",
                d.name,
                started=recorded.started if recorded else model.timestamp(now),
                reason=text,
                at=model.timestamp(when),
            ),
        )
        # The manifests first: workload accounts, which cannot read the tags, see the
        # revocation from the first moment the owner's account can.
        self._record([(c.build, c.revocation) for c in written])

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
                    share.withdraw_snapshots(ec2, image)

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
        intents.done(self._ctx, d.name)
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
        for build in self.look.descendants(target):
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
        recorded = intents.pending(self._ctx, d.name)
        intents.refuse_other(recorded, "restore")
        try:
            found = self.look.targets(d, fingerprint=fingerprint, ami=ami, revoked=True)
        except QueryError:
            if recorded is None:
                raise
            # Cut short after its last change to the images: only the record is left.
            intents.done(self._ctx, d.name)
            log.info("the %s was complete", recorded.describe())
            return []
        newest = found[0].revocation
        intents.begin(
            self._ctx,
            intents.Intent(
                "restore",
                d.name,
                started=recorded.started if recorded else model.timestamp(self._clock()),
            ),
        )
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
        intents.done(self._ctx, d.name)
        return changes

    def _restore_one(self, d: Definition, target: Build) -> list[Change]:
        """Restore `target` and what was revoked because of it (its own tags last)."""
        own = target.revocation
        if own is None or own.by != target.build_id:
            raise QueryError(
                f"The image {', '.join(target.amis.values())} of {d.name!r} is not revoked by a "
                "revocation of its own, so there is nothing to restore"
                + (self.look.revoked_by(own.by) if own is not None else ".")
            )
        changes = [Change(target, own)]
        # Their manifests too: a descendant a run cut short restored already may still be
        # recorded as revoked.
        records = [target]
        for build in self.look.descendants(target):
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
        """Clear `build`'s EC2 deprecation and then its revocation tags: each step in every
        region at once, and the tags only once every region's deprecation is cleared."""
        regions = sorted(build.images)

        def clear_deprecation(region: str) -> None:
            ec2, image = self.clients.ec2(region), build.images[region]
            if image.state == "disabled":
                registry.enable(ec2, image)
            registry.deprecate(ec2, image, None)

        def clear_tags(region: str) -> None:
            registry.untag_image(
                self.clients.ec2(region), build.images[region], model.REVOCATION_TAGS
            )

        if deprecation:
            each_region(regions, clear_deprecation)
        if deprecation and build.definition in self.catalog.definitions:
            # Shared again as the catalog says (EC2 dropped the permissions of a disabled one),
            # before the tags go: a run cut short in between still sees it revoked, and the
            # next run shares it.
            enabled = {
                r: replace(i, state="available") if i.state == "disabled" else i
                for r, i in build.images.items()
            }
            distribute.share_image(self._ctx, self.catalog.get(build.definition), enabled)
        if untag:
            each_region(regions, clear_tags)
        if untag:
            log.info(
                "restored %s %s (%s)",
                build.definition,
                build.build_id[:12],
                ", ".join(build.amis.values()),
            )

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
                f"The manifests of {', '.join(failed)} were not updated (see the warnings "
                "above), so workload accounts, which read the manifests, do not see the change "
                "yet. Fix the access to the manifest bucket and run the same command again: it "
                "completes what was started."
            )


def _deprecated_by(image: Image, at: datetime) -> bool:
    """EC2 deprecates `image` already, from `at` or the moment after it that EC2 accepted (a
    revocation made before): setting it again would move it later."""
    since = model.parse_time(image.deprecation_time, assume_utc=True)
    # EC2 rounds to the minute; deprecate_at sends no earlier than the minute after next.
    return since is not None and -timedelta(minutes=1) <= since - at <= timedelta(minutes=3)
