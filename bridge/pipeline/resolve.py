"""Resolving: look (survey.py), decide (plan.py), act (builder.py, distribute.py), parents first.

`Resolver.resolve` is the loop: fingerprint the definitions and look their images up (one
DescribeImages per region), then for each definition, parents first, let the planner decide and
carry out its step. Builds and copies run under the image's guard (guard.py: this machine's
lock, then the S3 lease), so each image is made once however many processes ask for it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from types import MappingProxyType

from bridge.aws import manifests
from bridge.aws.lease import Lease
from bridge.catalog import Definition
from bridge.context import Context
from bridge.errors import AwsError, BridgeError, ManifestError, NotFoundError
from bridge.fingerprint import Snapshot
from bridge.packer import PackerRunner
from bridge.pipeline import distribute, plan, publish, schedule
from bridge.pipeline.builder import Builder
from bridge.pipeline.guard import Guard
from bridge.pipeline.result import ResolvedAmi, not_found, outcome
from bridge.pipeline.survey import Survey, Surveyor
from bridge.record import Parent
from bridge.settings import RunPolicy

log = logging.getLogger(__name__)


class Resolver:
    """Resolves and builds the images of one catalog in one repository."""

    def __init__(self, ctx: Context, *, packer: Callable[[], PackerRunner]) -> None:
        self.ctx = ctx
        self._cancelled = threading.Event()
        self.surveyor = Surveyor(ctx)
        self.guard = Guard(ctx.settings, ctx.clients, cancelled=self._cancelled)
        self._builder = Builder(ctx, self.guard, packer, cancelled=self._cancelled)

    def _decide(self, survey: Survey, d: Definition, parent: ResolvedAmi | None) -> plan.Decision:
        fp = survey.snapshot.fingerprints[d.name].value
        decision = plan.decide(
            d,
            fp,
            self.surveyor.regions(d),
            survey.seen(fp),
            parent_amis=None if parent is None else frozenset(parent.amis.values()),
            parent_origin=_parent_origin(parent),
            seeded=survey.seeded.get(d.name),
            max_age_days=self.ctx.catalog.max_age_for(d),
            asked=self.surveyor.asked(d),
        )
        for region, others in decision.duplicates.items():
            log.warning(
                "%s: %d images in %s carry %s=%s (%s); using the newest, %s",
                d.name,
                len(others) + 1,
                region,
                self.ctx.settings.tag_key,
                fp,
                ", ".join([decision.images[region].ami_id, *others]),
                decision.images[region].ami_id,
            )
        if decision.source == "seed-manifest":
            log.warning(
                "%s: using %s from %s (a seed pipeline build, not verified by fingerprint)",
                d.name,
                ", ".join(decision.amis.values()),
                self.ctx.settings.packer_manifest_dir,
            )
        return decision

    def status(
        self, names: Sequence[str], *, expect_fingerprint: str | None = None
    ) -> dict[str, ResolvedAmi]:
        """What each of `names` (and its ancestors) would need, without waiting or building."""
        survey = self.surveyor.survey(names, expect_fingerprint=expect_fingerprint)
        results: dict[str, ResolvedAmi] = {}
        for d in survey.definitions:
            parent = results.get(d.parent) if d.parent else None
            decision = self._decide(survey, d, parent)
            results[d.name] = self._result(decision, d, parent, survey.snapshot.commit)
        return results

    def resolve(self, names: Sequence[str], policy: RunPolicy) -> dict[str, ResolvedAmi]:
        """Resolve `names` (and their ancestors), acting on misses as `policy.on_missing` says.

        Up to `policy.jobs` definitions are resolved (built) at once, each as soon as its parent
        has an image where it is built (schedule.py): a child starts on a parent just built and
        tagged there while the parent's copies to other regions are being made. A failure skips
        the failed definition's descendants not started yet, not its siblings (`fail_fast`
        stops everything), and is raised once the rest is done.
        A revoked image is built again like a missing one, unless `on_revoked` is `fail`.
        With `expect_fingerprint`, the one definition named must have that fingerprint, or
        nothing is done: what was reviewed (a saved plan) is what is built.
        """
        survey = self.surveyor.survey(names, expect_fingerprint=policy.expect_fingerprint)

        def step(
            d: Definition, parent: ResolvedAmi | None, release: Callable[[ResolvedAmi], None]
        ) -> ResolvedAmi:
            return self._resolve_one(survey, d, parent, policy, release=release)

        outcome = schedule.run(
            survey.definitions,
            step,
            jobs=policy.jobs,
            fail_fast=policy.fail_fast,
            cancel=self.cancel,
            # A child is built on its parent's image in the child's first region.
            early=lambda child, parent: self.surveyor.regions(child)[0] in parent.amis,
        )
        if outcome.failures:
            raise _combined(outcome)
        return outcome.results

    def cancel(self) -> None:
        """Stop: running Packer builds cancel and clean up; waits for other builders end."""
        self._cancelled.set()
        self._builder.interrupt()

    def _resolve_one(
        self,
        survey: Survey,
        d: Definition,
        parent: ResolvedAmi | None,
        policy: RunPolicy,
        *,
        release: Callable[[ResolvedAmi], None] = lambda result: None,
    ) -> ResolvedAmi:
        commit = survey.snapshot.commit
        decision = self._decide(survey, d, parent)
        step = plan.next_step(
            decision,
            on_missing=policy.on_missing,
            on_revoked=policy.on_revoked,
            forced=d.name in policy.force,
            parent_ready=parent is None or self.surveyor.regions(d)[0] in parent.amis,
        )
        if step == "wait":
            decision = distribute.wait(self.ctx, decision)
            step = "use"
        if step == "use":
            uri = None
            if policy.writes and plan.renamed(decision, d):
                adopted = publish.adopt(self.ctx.clients, d, decision.images)
                decision = replace(decision, images=MappingProxyType(adopted))
            if policy.writes and decision.state == "found":
                claimed = publish.claim(
                    self.ctx.clients, self.ctx.settings.catalog_id, decision.images
                )
                decision = replace(decision, images=MappingProxyType(claimed))
            if policy.writes and plan.needs_manifest(decision, d.name):
                uri = self._restore_manifest(decision, d, parent)
            if policy.writes and decision.state == "found":
                distribute.share_image(self.ctx, d, decision.images)
                # Protected again when it lost its protection: an image brought back from the
                # Recycle Bin (gc lifted it to delete), or one someone unprotected.
                distribute.protect(
                    self.ctx,
                    {r: i for r, i in decision.images.items() if i.protection == "disabled"},
                )
            return self._result(decision, d, parent, commit, manifest_uri=uri)
        if step == "build":
            return self._locked_build(
                d,
                decision,
                parent,
                survey.snapshot,
                recheck=d.name not in policy.force,
                release=release,
            )
        if step == "copy":
            return self._locked_copy(d, decision, parent, commit)
        if step == "fail":
            raise NotFoundError(
                not_found(
                    self.ctx.settings,
                    d,
                    decision,
                    max_age_days=self.ctx.catalog.max_age_for(d),
                    built_before=decision.state == "missing" and self._has_manifest(d, decision),
                )
            )
        result = self._result(decision, d, parent, commit)
        if not result.found and policy.on_missing != "report":
            # Nothing this run may do gives an image (another account's partial image, which
            # only its builder can copy or share): an answer without one is an error, as a
            # missing image is, unless the caller asked for a report.
            raise NotFoundError(
                not_found(
                    self.ctx.settings, d, decision, max_age_days=self.ctx.catalog.max_age_for(d)
                )
                + _not_shared(decision, self.ctx.settings.region)
            )
        return result

    def _has_manifest(self, d: Definition, decision: plan.Decision) -> bool:
        """Whether S3 holds a manifest for this fingerprint: it was built once (an image missing
        now was deregistered since). False when unknown."""
        settings = self.ctx.settings
        if not settings.manifest_bucket:
            return False
        try:
            return manifests.exists(
                self.ctx.clients.s3(settings.region),
                settings.manifest_bucket,
                settings.manifest_prefix,
                d.name,
                decision.fingerprint,
            )
        except (AwsError, ManifestError):
            return False

    def _restore_manifest(
        self, decision: plan.Decision, d: Definition, parent: ResolvedAmi | None
    ) -> str | None:
        """The manifest URI of a found image, written from its tags if S3 lacks it."""
        if not self.ctx.settings.manifest_bucket:
            return None
        try:
            return publish.restore_manifest(
                self.ctx.clients,
                d,
                decision.fingerprint,
                decision.images,
                parent=None
                if parent is None
                else Parent(parent.definition, parent.fingerprint, parent.ami_id),
                bucket=self.ctx.settings.manifest_bucket,
                prefix=self.ctx.settings.manifest_prefix,
            )
        except (AwsError, ManifestError) as exc:
            # The image itself is sound; only its record is missing. Resolve it, and say so.
            log.warning("%s: its manifest is missing and could not be written: %s", d.name, exc)
            return ""

    def _recheck(
        self, d: Definition, fp: str, parent: ResolvedAmi | None, commit: str, *, built: bool = True
    ) -> ResolvedAmi | None:
        """The image, if another process built (or copied) it since we looked."""
        return self._made_meanwhile(self._look_again(d, fp, parent), d, parent, commit, built=built)

    def _made_meanwhile(
        self,
        decision: plan.Decision,
        d: Definition,
        parent: ResolvedAmi | None,
        commit: str,
        *,
        built: bool = True,
    ) -> ResolvedAmi | None:
        """The image `decision` found, if another process built (or copied) it: None when it
        is not usable yet."""
        if not decision.usable:
            return None
        if decision.state == "pending":
            decision = distribute.wait(self.ctx, decision)
        log.info("%s was made by another process meanwhile: %s", d.name, decision.amis)
        # Built during this resolve, by the build it waited for: the same answer as the
        # builder's, so concurrent resolves agree.
        return self._result(decision, d, parent, commit, built=built)

    def _locked_copy(
        self, d: Definition, decision: plan.Decision, parent: ResolvedAmi | None, commit: str
    ) -> ResolvedAmi:
        """Copy a partial image to the regions that lack it, under the build's lock and lease
        (so two processes never copy the same image twice); nothing is built."""
        fp = decision.fingerprint

        def copy(lease: Lease | None) -> ResolvedAmi:
            current = self._look_again(d, fp, parent)
            if current.state != "partial":  # deregistered meanwhile: build it as usual
                raise BridgeError(
                    f"The image of {d.name!r} ({fp[:12]}) changed while it was being copied "
                    f"(now {current.state}). Run again."
                )
            return self._copy_now(d, current, parent, commit)

        return self.guard.once(
            d.name, fp, copy, done=lambda: self._recheck(d, fp, parent, commit, built=False)
        )

    def _copy_now(
        self,
        d: Definition,
        current: plan.Decision,
        parent: ResolvedAmi | None,
        commit: str,
        *,
        built: bool = False,
    ) -> ResolvedAmi:
        """Copy a partial image everywhere it lacks; under the image's lock and lease."""
        images = distribute.distribute(self.ctx, d, dict(current.images), current.regions)
        distribute.protect(self.ctx, {r: i for r, i in images.items() if r not in current.images})
        distribute.check_everywhere(self.ctx, d, current.fingerprint, images, current.regions)
        done = replace(current, state="found", images=MappingProxyType(images))
        distribute.update_manifest(self.ctx, d, current.fingerprint, images, before=current.images)
        distribute.share_image(
            self.ctx, d, images, fresh=[r for r in images if r not in current.images]
        )
        return self._result(done, d, parent, commit, built=built)

    def _locked_build(
        self,
        d: Definition,
        decision: plan.Decision,
        parent: ResolvedAmi | None,
        snapshot: Snapshot,
        *,
        recheck: bool,
        release: Callable[[ResolvedAmi], None],
    ) -> ResolvedAmi:
        """Build exactly once; an image another process built meanwhile is used instead.
        `release` gets the build once it is published where it was built, before its copies."""
        fp = decision.fingerprint
        build_id = plan.predicted_build_id(decision, parent.build_id if parent else None)
        self._builder.check_account()
        # What EC2 had when `done` last looked: under the lock (and lease), just before `build`.
        looked: list[plan.Decision] = []

        def done() -> ResolvedAmi | None:
            looked[:] = [self._look_again(d, fp, parent)]
            return self._made_meanwhile(looked[0], d, parent, snapshot.commit)

        def published(made: plan.Decision, uri: str) -> None:
            release(self._result(made, d, parent, snapshot.commit, built=True, manifest_uri=uri))

        def build(lease: Lease | None) -> ResolvedAmi:
            if recheck:
                # Built meanwhile by the process we waited for, whose copies failed: copy, under
                # the lease we hold now, instead of building again.
                current = looked[0] if looked else self._look_again(d, fp, parent)
                if current.state == "partial" and not current.foreign:
                    return self._copy_now(d, current, parent, snapshot.commit, built=True)
            made, uri = self._builder.build(
                d,
                fp,
                self.surveyor.regions(d),
                parent,
                snapshot,
                build_id,
                lease=lease,
                published=published,
            )
            return self._result(made, d, parent, snapshot.commit, built=True, manifest_uri=uri)

        return self.guard.once(d.name, fp, build, done=done if recheck else (lambda: None))

    def _look_again(self, d: Definition, fp: str, parent: ResolvedAmi | None) -> plan.Decision:
        return self.surveyor.look_again(
            d,
            fp,
            None if parent is None else frozenset(parent.amis.values()),
            _parent_origin(parent),
        )

    def _result(
        self,
        decision: plan.Decision,
        d: Definition,
        parent: ResolvedAmi | None,
        commit: str,
        *,
        built: bool = False,
        manifest_uri: str | None = None,
    ) -> ResolvedAmi:
        return outcome(
            self.ctx.settings,
            decision,
            d,
            parent,
            commit,
            built=built,
            manifest_uri=manifest_uri,
        )


def _parent_origin(parent: ResolvedAmi | None) -> str | None:
    """The origin of the build a child's images must be built on: the parent's, while any copy
    of it exists."""
    return parent.origin if parent is not None and parent.amis and parent.origin else None


def _combined(outcome: schedule.Results[ResolvedAmi]) -> BridgeError:
    """One failure as it is; several as one error naming each (and what they skipped)."""
    failures = outcome.failures
    if len(failures) == 1 and not outcome.skipped:
        return next(iter(failures.values()))
    parts = [f"{name}: {error}" for name, error in failures.items()]
    parts += [f"{name} skipped: {why}" for name, why in outcome.skipped.items()]
    built = ", ".join(outcome.results) or "none"
    text = (
        f"{len(failures)} of {len(failures) + len(outcome.skipped) + len(outcome.results)} "
        f"definitions failed ({'; '.join(parts)}). Resolved: {built}. Fix the failures and run "
        "again; what was built is kept."
    )
    if all(isinstance(e, NotFoundError) for e in failures.values()):
        return NotFoundError(text)
    return BridgeError(text)


def _not_shared(decision: plan.Decision, region: str) -> str:
    """For another account's image with no copy this account can see in `region`: who can fix
    it ("" otherwise)."""
    if not any(i.foreign for i in decision.images.values()):
        return ""
    return (
        f" These are another account's images: its copy in {region} is missing or not shared "
        "with this account, and only the builder can copy or share it (its catalog's `regions` "
        "and `share`, then `ami-bridge build` there)."
    )
