"""Resolving: look (git, EC2), decide (plan.py), act (build.py, publish.py), parents first.

`Resolver.resolve` is the loop: fingerprint the definitions and look their images up (one
DescribeImages per region), then for each definition, parents first, let the planner decide and
carry out its step. Builds run under this machine's lock and the image's S3 lease, so each image
is built once however many processes ask for it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Literal, TypeVar

import git

from bridge import (
    checkout,
    manifests,
    model,
    plan,
    publish,
    registry,
    schedule,
    seed,
    share,
    sources,
    validation,
)
from bridge.aws import AwsClients, aws_call
from bridge.build import build_image
from bridge.catalog import Catalog, Definition
from bridge.errors import (
    AwsError,
    BridgeError,
    BuildError,
    LeaseError,
    ManifestError,
    NotFoundError,
    QueryError,
)
from bridge.fingerprint import Snapshot, fingerprint_all
from bridge.lease import Lease, LeaseConfig, LeaseManager, build_once, lease_key
from bridge.model import Image
from bridge.packer import PackerRunner
from bridge.settings import DEFAULT_ON_REVOKED, OnMissing, OnRevoked, Settings

log = logging.getLogger(__name__)

T = TypeVar("T")

# What a resolve reports: a planner state, or `built` when the image was built during it.
Outcome = Literal[
    "found", "built", "missing", "outdated", "expired", "revoked", "pending", "partial"
]


@dataclass(frozen=True)
class ResolvedAmi:
    """The outcome for one definition."""

    definition: str
    fingerprint: str
    region: str
    ami_id: str
    amis: Mapping[str, str]
    parent_definition: str | None
    parent_ami_id: str
    state: Outcome
    manifest_uri: str
    # The commit the image was built from (its tag), and the commit fingerprinted now.
    git_commit: str
    commit: str
    creation_date: str
    # The image's build ID, or the one a build now would give it (plan.build_id).
    build_id: str
    # Region -> found / pending / missing, for every region the image must exist in.
    region_states: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    # When the image expires (ISO 8601 UTC; "" when it never does, or there is none).
    expires_at: str = ""
    # Revoked: why (the revocation's reason); a usable image's scheduled revocation (ISO 8601).
    revoke_reason: str = ""
    revokes_at: str = ""

    @property
    def found(self) -> bool:
        """An image is there to use (in `region`; a partial one may lack others)."""
        return self.state in ("found", "built") or (
            self.state in ("partial", "pending") and bool(self.ami_id)
        )

    @property
    def built(self) -> bool:
        """The image was built during this resolve (here, or by a build it waited for)."""
        return self.state == "built"

    @property
    def revoked(self) -> bool:
        """No usable image: every one with this fingerprint is revoked."""
        return self.state == "revoked"


@dataclass(frozen=True)
class Survey:
    """Fingerprints and the images EC2 has for them, before anything is decided."""

    definitions: Sequence[Definition]
    snapshot: Snapshot
    # region -> fingerprint -> images, newest first
    images: Mapping[str, Mapping[str, Sequence[Image]]]
    # root definition -> the images of a seed pipeline's manifest (AMI_BRIDGE_PACKER_MANIFESTS)
    seeded: Mapping[str, Mapping[str, Image]] = field(default_factory=lambda: MappingProxyType({}))

    def seen(self, fingerprint: str) -> dict[str, Sequence[Image]]:
        """Region -> images carrying `fingerprint`."""
        return {region: by_fp.get(fingerprint, ()) for region, by_fp in self.images.items()}


class Resolver:
    """Resolves and builds the images of one catalog in one repository."""

    def __init__(
        self,
        *,
        repo: git.Repo,
        catalog: Catalog,
        clients: AwsClients,
        settings: Settings,
        packer: Callable[[], PackerRunner],
    ) -> None:
        self.repo = repo
        self.catalog = catalog
        self.clients = clients
        self.settings = settings
        self._packer_factory = packer
        self._packer: PackerRunner | None = None
        self._leases: LeaseManager | None = None
        self._warned_no_lease = False
        self._cancelled = threading.Event()
        # Several builds run at once (--jobs): one of each shared object.
        self._shared = threading.Lock()
        self._git = threading.Lock()
        self._account: str | None = None
        self._regions: dict[str, tuple[str, ...]] = {}
        self._child_map: dict[str, list[Definition]] | None = None
        # (region, filter) -> the image it chose: one DescribeImages per distinct filter.
        self._picked: dict[tuple[str, str], sources.SourcePick] = {}
        # Roots built on a tracked upstream image: built where the image was chosen.
        self._pinned: set[str] = set()

    # -- looking --------------------------------------------------------------------------------

    def regions(self, d: Definition) -> tuple[str, ...]:
        """Regions the image of `d` must exist in; the first is where it is built.

        A parent also exists wherever its children must, so a child is always built on the
        parent's image in its own region (copied there first when needed).
        """
        if d.name not in self._regions:
            below = [r for c in self._children(d) for r in self._everywhere(c)]
            try:
                own = plan.regions_for(
                    d,
                    catalog_regions=self.settings.regions,
                    region=self.settings.region,
                    explicit=self.settings.region_explicit,
                )
            except QueryError:
                if self.settings.region not in below:
                    raise
                # Asked for in a region only a descendant lists: the parent is built in its own
                # first region and copied there.
                own = plan.regions_for(
                    d, catalog_regions=self.settings.regions, region=self.settings.region
                )
            if d.name in self._pinned:
                # Its upstream image was chosen (and fingerprinted) in its home region, so it is
                # built there, wherever it is resolved from, and copied to the others.
                own = (self._home(d), *own)
            self._regions[d.name] = tuple(dict.fromkeys([*own, *below]))
        return self._regions[d.name]

    def _home(self, d: Definition) -> str:
        """The region `d` is built in when no region is asked for: its first."""
        return (d.regions or self.settings.regions or (self.settings.region,))[0]

    def _pick_sources(
        self, d: Definition, filters: Sequence[sources.SourceFilter]
    ) -> list[sources.SourcePick]:
        """The upstream image each of `d`'s source filters chooses, in its home region: the same
        region whichever region is resolved, so the fingerprint is the same everywhere."""
        region = self._home(d)
        picks = []
        for f in filters:
            key = (region, f.key())
            if key not in self._picked:
                self._picked[key] = sources.find_source(
                    self.clients.ec2(region), region, f, definition=d.name
                )
            picks.append(replace(self._picked[key], filter=f))
        return picks

    def _everywhere(self, d: Definition) -> tuple[str, ...]:
        """Every region `d`'s image must exist in, wherever it is resolved from: a child's image
        may have been built in any of its regions, on the parent's copy there, and it counts only
        while its parent-AMI tag names a current image of the parent."""
        own = plan.regions_for(
            d, catalog_regions=self.settings.regions, region=self.settings.region
        )
        below = [r for c in self._children(d) for r in self._everywhere(c)]
        return tuple(dict.fromkeys([*own, *below]))

    def everywhere(self) -> tuple[str, ...]:
        """Every region any definition's image must exist in, wherever it is resolved from."""
        return tuple(dict.fromkeys(r for d in self.catalog.all() for r in self._everywhere(d)))

    def exclusive(
        self, definition: str, fingerprint: str, action: Callable[[Lease | None], T]
    ) -> T:
        """Run `action` under the build lock and lease of one image (the ones its builds and
        copies take), so it never runs while that image is being built or copied."""
        return build_once(
            self._lock_path(definition, fingerprint),
            self._lease_manager(),
            lease_key(self.settings.lease_prefix, definition, fingerprint),
            definition,
            fingerprint,
            wait_timeout=self.settings.wait_timeout,
            cancelled=self._cancelled,
            done=lambda: None,
            build=action,
        )

    def _children(self, d: Definition) -> list[Definition]:
        if self._child_map is None:
            self._child_map = {}
            for c in self.catalog.all():
                if c.parent is not None:
                    self._child_map.setdefault(c.parent, []).append(c)
        return self._child_map.get(d.name, [])

    def fingerprints(self, names: Iterable[str]) -> dict[str, str]:
        """The fingerprints of `names` and their ancestors, without asking AWS."""
        snapshot = self._snapshot(self.catalog.closure(names))
        return {name: fp.value for name, fp in snapshot.fingerprints.items()}

    def _snapshot(self, definitions: Sequence[Definition]) -> Snapshot:
        snapshot = fingerprint_all(
            self.repo,
            definitions,
            commit=self.settings.commit,
            allow_dirty=self.settings.allow_dirty,
            catalog_path=self.catalog.path,
            pick_sources=self._pick_sources,
        )
        pinned = {name for name, fp in snapshot.fingerprints.items() if fp.sources}
        if not pinned <= self._pinned:
            self._pinned |= pinned
            self._regions.clear()
        for name in sorted(pinned):
            for pick in snapshot.fingerprints[name].sources:
                log.debug("%s: %s chose %s (%s)", name, pick.filter.origin, pick.ami_id, pick.name)
        return snapshot

    def survey(self, names: Sequence[str], *, expect_fingerprint: str | None = None) -> Survey:
        """Fingerprint `names` and their ancestors; look their images up (one call per region).

        With `expect_fingerprint`, the one definition named must have that fingerprint: checked
        before anything is asked of AWS.
        """
        definitions = self.catalog.closure(names)
        snapshot = self._snapshot(definitions)
        if expect_fingerprint is not None:
            _check_expected(names, snapshot, expect_fingerprint)
        by_region: dict[str, set[str]] = {}
        for d in definitions:
            for region in self.regions(d):
                by_region.setdefault(region, set()).add(snapshot.fingerprints[d.name].value)
        images = {region: self._find(region, fps) for region, fps in sorted(by_region.items())}
        self._add_shared(definitions, snapshot, images)
        seeded: dict[str, Mapping[str, Image]] = {}
        directory = self.settings.packer_manifest_dir
        if directory is not None:
            for d in definitions:
                if d.parent is None:
                    found = seed.built_images(
                        self.clients,
                        directory,
                        d.name,
                        self.regions(d),
                        fingerprint=snapshot.fingerprints[d.name].value,
                        tag_key=self.settings.tag_key,
                    )
                    if found is not None:
                        seeded[d.name] = found
        return Survey(definitions, snapshot, images, seeded)

    def _add_shared(
        self,
        definitions: Sequence[Definition],
        snapshot: Snapshot,
        images: dict[str, dict[str, list[Image]]],
    ) -> None:
        """Images of other accounts (`owners` naming account IDs), found through their manifests.

        EC2 never shows an image's tags to the accounts it is shared with, so the fingerprint
        tag finds only this account's images. A workload account resolves the builder's through
        the builder's manifests instead: each names the AMIs built for a fingerprint, and the
        images must exist, be owned by one of `owners`, and be available or pending. They are
        given the tags the manifest records, and are never tagged or built here.
        """
        foreign = [o for o in self.settings.owners if o != "self"]
        bucket = self.settings.manifest_bucket
        if not foreign or not bucket:
            return
        wanted: dict[str, dict[str, tuple[Definition, manifests.Manifest]]] = {}
        for d in definitions:
            fp = snapshot.fingerprints[d.name].value
            lacking = [r for r in self.regions(d) if not images.get(r, {}).get(fp)]
            if not lacking:
                continue
            manifest = manifests.fetch(
                self.clients.s3(self.settings.region),
                bucket,
                self.settings.manifest_prefix,
                d.name,
                fp,
            )
            if manifest is None:
                continue
            for region in lacking:
                if region in manifest.amis:
                    wanted.setdefault(region, {})[manifest.amis[region]] = (d, manifest)
        for region, by_ami in sorted(wanted.items()):
            found = registry.shared_images(self.clients.ec2(region), region, by_ami, owners=foreign)
            for ami, image in found.items():
                d, manifest = by_ami[ami]
                recorded = {
                    self.settings.tag_key: manifest.fingerprint,
                    model.TAG_DEFINITION: d.name,
                    model.TAG_COMMIT: manifest.git_commit,
                }
                if manifest.parent is not None:
                    recorded[model.TAG_PARENT_AMI] = manifest.parent.ami
                    recorded[model.TAG_PARENT_FINGERPRINT] = manifest.parent.fingerprint
                if manifest.revoked is not None:
                    # Revoked in the builder's account: revoked here too.
                    recorded[model.TAG_REVOKED_AT] = manifest.revoked.at
                    recorded[model.TAG_REVOKE_REASON] = manifest.revoked.reason
                    recorded[model.TAG_REVOKED_BY] = manifest.revoked.by
                tagged = replace(
                    image, tags=MappingProxyType({**image.tags, **recorded}), foreign=True
                )
                images.setdefault(region, {}).setdefault(manifest.fingerprint, []).append(tagged)

    def _find(self, region: str, fingerprints: Iterable[str]) -> dict[str, list[Image]]:
        return registry.find_images(
            self.clients.ec2(region),
            region,
            fingerprints,
            tag_key=self.settings.tag_key,
            owners=self.settings.owners,
        )

    # -- deciding -------------------------------------------------------------------------------

    def _decide(self, survey: Survey, d: Definition, parent: ResolvedAmi | None) -> plan.Decision:
        fp = survey.snapshot.fingerprints[d.name].value
        decision = plan.decide(
            d,
            fp,
            self.regions(d),
            survey.seen(fp),
            parent_amis=None if parent is None else frozenset(parent.amis.values()),
            seeded=survey.seeded.get(d.name),
            max_age_days=self.catalog.max_age_for(d),
        )
        for region, others in decision.duplicates.items():
            log.warning(
                "%s: %d images in %s carry %s=%s (%s); using the newest, %s",
                d.name,
                len(others) + 1,
                region,
                self.settings.tag_key,
                fp,
                ", ".join([decision.images[region].ami_id, *others]),
                decision.images[region].ami_id,
            )
        if decision.source == "seed-manifest":
            log.warning(
                "%s: using %s from %s (a seed pipeline build, not verified by fingerprint)",
                d.name,
                ", ".join(decision.amis.values()),
                self.settings.packer_manifest_dir,
            )
        return decision

    def status(
        self, names: Sequence[str], *, expect_fingerprint: str | None = None
    ) -> dict[str, ResolvedAmi]:
        """What each of `names` (and its ancestors) would need, without waiting or building."""
        survey = self.survey(names, expect_fingerprint=expect_fingerprint)
        results: dict[str, ResolvedAmi] = {}
        for d in survey.definitions:
            parent = results.get(d.parent) if d.parent else None
            decision = self._decide(survey, d, parent)
            results[d.name] = self._outcome(decision, d, parent, survey.snapshot.commit)
        return results

    # -- acting ---------------------------------------------------------------------------------

    def resolve(
        self,
        names: Sequence[str],
        *,
        on_missing: OnMissing = "build",
        on_revoked: OnRevoked = DEFAULT_ON_REVOKED,
        force: Iterable[str] = (),
        expect_fingerprint: str | None = None,
        jobs: int = 1,
        fail_fast: bool = False,
    ) -> dict[str, ResolvedAmi]:
        """Resolve `names` (and their ancestors), acting on misses as `on_missing` says.

        Up to `jobs` definitions are resolved (built) at once, each as soon as its parent has an
        image (schedule.py). A failure skips the failed definition's descendants, not its
        siblings (`fail_fast` stops everything), and is raised once the rest is done.
        A revoked image is built again like a missing one, unless `on_revoked` is `fail`.
        With `expect_fingerprint`, the one definition named must have that fingerprint, or
        nothing is done: what was reviewed (a saved plan) is what is built.
        """
        forced = set(force)
        survey = self.survey(names, expect_fingerprint=expect_fingerprint)

        def step(d: Definition, parent: ResolvedAmi | None) -> ResolvedAmi:
            return self._resolve_one(
                survey, d, parent, on_missing=on_missing, on_revoked=on_revoked, forced=forced
            )

        outcome = schedule.run(
            survey.definitions, step, jobs=jobs, fail_fast=fail_fast, cancel=self.cancel
        )
        if outcome.failures:
            raise _combined(outcome)
        return outcome.results

    def cancel(self) -> None:
        """Stop: running Packer builds cancel and clean up; waits for other builders end."""
        self._cancelled.set()
        if self._packer is not None:
            self._packer.interrupt()

    def _resolve_one(
        self,
        survey: Survey,
        d: Definition,
        parent: ResolvedAmi | None,
        *,
        on_missing: OnMissing,
        on_revoked: OnRevoked,
        forced: set[str],
    ) -> ResolvedAmi:
        commit = survey.snapshot.commit
        decision = self._decide(survey, d, parent)
        step = plan.next_step(
            decision,
            on_missing=on_missing,
            on_revoked=on_revoked,
            forced=d.name in forced,
            parent_ready=parent is None or self.regions(d)[0] in parent.amis,
        )
        if step == "wait":
            decision = self._wait(decision)
            step = "use"
        if step == "use":
            uri = None
            if on_missing == "build" and plan.needs_manifest(decision, d.name):
                uri = self._restore_manifest(decision, d, parent)
            if on_missing == "build" and decision.state == "found":
                self._share(d, decision.images)
            return self._outcome(decision, d, parent, commit, manifest_uri=uri)
        if step == "build":
            return self._locked_build(
                d, decision, parent, survey.snapshot, recheck=d.name not in forced
            )
        if step == "copy":
            return self._locked_copy(d, decision, parent, commit)
        if step == "fail":
            raise NotFoundError(self._not_found(d, decision))
        return self._outcome(decision, d, parent, commit)

    def _restore_manifest(
        self, decision: plan.Decision, d: Definition, parent: ResolvedAmi | None
    ) -> str | None:
        """The manifest URI of a found image, written from its tags if S3 lacks it."""
        if not self.settings.manifest_bucket:
            return None
        try:
            return publish.restore_manifest(
                self.clients,
                d,
                decision.fingerprint,
                decision.images,
                parent=None
                if parent is None
                else manifests.ParentRef(parent.definition, parent.fingerprint, parent.ami_id),
                bucket=self.settings.manifest_bucket,
                prefix=self.settings.manifest_prefix,
            )
        except (AwsError, ManifestError) as exc:
            # The image itself is sound; only its record is missing. Resolve it, and say so.
            log.warning("%s: its manifest is missing and could not be written: %s", d.name, exc)
            return ""

    def _wait(self, decision: plan.Decision) -> plan.Decision:
        """The decision once its pending images are available (bounded wait)."""
        images = {
            region: registry.wait_available(
                self.clients.ec2(region),
                region,
                image.ami_id,
                timeout=self.settings.wait_timeout,
            )
            if image.state == "pending"
            else image
            for region, image in decision.images.items()
        }
        state: plan.State = "found" if decision.state == "pending" else decision.state
        return replace(decision, state=state, images=MappingProxyType(images))

    def _outcome(
        self,
        decision: plan.Decision,
        d: Definition,
        parent: ResolvedAmi | None,
        commit: str,
        *,
        built: bool = False,
        manifest_uri: str | None = None,
    ) -> ResolvedAmi:
        primary = decision.primary
        region = decision.regions[0]
        asked = self.settings.region
        if self.settings.region_explicit and asked != region and asked in decision.regions:
            # Built elsewhere (a parent asked for where only its child is built): the image
            # here, never the build region's AMI.
            region = asked
            primary = decision.images.get(asked) if decision.amis else None
        state: Outcome = "built" if built else decision.state
        bucket, prefix = self.settings.manifest_bucket, self.settings.manifest_prefix
        if manifest_uri is None:
            manifest_uri = (
                manifests.manifest_uri(bucket, prefix, d.name, decision.fingerprint)
                if bucket and state in ("found", "built", "partial")
                else ""
            )
        return ResolvedAmi(
            definition=d.name,
            fingerprint=decision.fingerprint,
            region=region,
            ami_id=primary.ami_id if primary else "",
            amis=MappingProxyType(dict(sorted(decision.amis.items()))),
            parent_definition=d.parent,
            parent_ami_id=parent.amis.get(decision.regions[0], parent.ami_id) if parent else "",
            state=state,
            manifest_uri=manifest_uri,
            # "" when unknown (a seed pipeline's image): never the commit looked at now, which
            # would change with every commit while the image stays the same.
            git_commit=(primary.tag(model.TAG_COMMIT) or "") if primary else "",
            commit=commit,
            creation_date=primary.creation_date if primary else "",
            build_id=plan.build_id(decision, parent.build_id if parent else None),
            region_states=MappingProxyType(
                {r: "found" if built else s for r, s in decision.region_states.items()}
            ),
            expires_at=decision.expires_at,
            revoke_reason=decision.revoke_reason,
            revokes_at=decision.revokes_at,
        )

    def _not_found(self, d: Definition, decision: plan.Decision) -> str:
        owners = ",".join(self.settings.owners)
        if decision.state == "partial":
            have = ", ".join(f"{r} ({a})" for r, a in sorted(decision.amis.items()))
            why = (
                f"the image is partial: it has copies in {have} but none in "
                f"{', '.join(decision.missing_regions)}; a build run copies it there (no rebuild)"
            )
        elif decision.state == "revoked":
            why = (
                f"its images are revoked ({decision.revoke_reason or 'no reason recorded'}); "
                f"`ami-bridge restore {d.name}` withdraws a revocation made in error"
            )
        elif decision.state == "expired":
            why = (
                f"its images are older than the definition's max_age_days "
                f"({self.catalog.max_age_for(d):g}), so they are expired"
            )
        elif decision.state == "outdated":
            why = (
                "images with that fingerprint exist but were built on another parent AMI, so "
                "they are outdated"
            )
        else:
            why = "no image carries that fingerprint"
            if any(o != "self" for o in self.settings.owners) and not self.settings.manifest_bucket:
                why += (
                    " (another account's images are found through its manifests: EC2 never "
                    "shows their tags to other accounts; set the builder's manifest bucket)"
                )
        return (
            f"No usable image for definition {d.name!r} (fingerprint {decision.fingerprint}) in "
            f"{', '.join(decision.regions)}, owners {owners}, tag {self.settings.tag_key}: {why}. "
            f"Build it with `ami-bridge build {d.name} --repo {self.settings.repo_root}` or "
            "resolve with on_missing=build (in the ami_chain and ami_catalog modules with "
            'build_phase = "apply", an image deregistered since its build is built again by '
            f"`terraform apply -replace='<module>.null_resource.build[\"{d.name}\"]'`)."
        )

    def manifest(self, name: str) -> manifests.Manifest:
        """The build manifest of `name`'s image at this commit, read from S3 and checked."""
        bucket, prefix = self.settings.manifest_bucket, self.settings.manifest_prefix
        if not bucket:
            raise QueryError(
                "No manifest bucket is configured. Pass --manifest-bucket or set "
                "`manifest.bucket` in the catalog."
            )
        fp = self.fingerprints([name])[name]
        found = manifests.fetch(self.clients.s3(self.settings.region), bucket, prefix, name, fp)
        if found is None:
            raise ManifestError(
                f"No manifest at {manifests.manifest_uri(bucket, prefix, name, fp)}: {name!r} "
                "has not been built at this commit (or was built without a manifest bucket). "
                f"Build it with `ami-bridge build {name}`."
            )
        return found

    # -- building exactly once ------------------------------------------------------------------

    @contextmanager
    def _source(self, snapshot: Snapshot, d: Definition) -> Iterator[Path]:
        """The tree Packer builds from: exactly what was fingerprinted, exported (with
        allow_dirty, the commit's tree with the inputs' working-tree content)."""
        if snapshot.dirty:
            log.warning("building uncommitted changes (allow_dirty): %s", d.name)
        with ExitStack() as stack:
            # One export at a time: the repository's object readers are not thread-safe.
            with self._git:
                source = stack.enter_context(
                    checkout.exported(
                        self.repo,
                        snapshot.tree,
                        self.settings.state_dir / "trees",
                        inputs=[e.path for e in snapshot.fingerprints[d.name].inputs],
                    )
                )
            yield source

    def _runner(self) -> PackerRunner:
        with self._shared:
            if self._packer is None:
                self._packer = self._packer_factory()
                if self._cancelled.is_set():
                    self._packer.interrupt()
            return self._packer

    def _lease_manager(self) -> LeaseManager | None:
        if self.settings.lease_bucket is None:
            if not self._warned_no_lease:
                log.warning(
                    "no lease bucket is configured: duplicate builds are prevented on this "
                    "machine only (set a manifest or lease bucket in the catalog to protect "
                    "every machine)"
                )
                self._warned_no_lease = True
            return None
        with self._shared:
            return self._lease_manager_locked()

    def _lease_manager_locked(self) -> LeaseManager:
        assert self.settings.lease_bucket is not None
        if self._leases is None:
            self._leases = LeaseManager(
                self.clients.s3(self.settings.region),
                LeaseConfig(
                    bucket=self.settings.lease_bucket,
                    prefix=self.settings.lease_prefix,
                    ttl=self.settings.lease_ttl,
                    wait_timeout=self.settings.wait_timeout,
                ),
            )
            self._leases.cancelled = self._cancelled
        return self._leases

    def _look_again(self, d: Definition, fp: str, parent: ResolvedAmi | None) -> plan.Decision:
        regions = self.regions(d)
        seen = {region: self._find(region, [fp]).get(fp, []) for region in regions}
        return plan.decide(
            d,
            fp,
            regions,
            seen,
            parent_amis=None if parent is None else frozenset(parent.amis.values()),
            max_age_days=self.catalog.max_age_for(d),
        )

    def _recheck(
        self, d: Definition, fp: str, parent: ResolvedAmi | None, commit: str, *, built: bool = True
    ) -> ResolvedAmi | None:
        """The image, if another process built (or copied) it since we looked."""
        decision = self._look_again(d, fp, parent)
        if not decision.usable:
            return None
        if decision.state == "pending":
            decision = self._wait(decision)
        log.info("%s was made by another process meanwhile: %s", d.name, decision.amis)
        # Built during this resolve, by the build it waited for: the same answer as the
        # builder's, so concurrent resolves agree.
        return self._outcome(decision, d, parent, commit, built=built)

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

        return self._once(d, fp, lambda: self._recheck(d, fp, parent, commit, built=False), copy)

    def _once(
        self,
        d: Definition,
        fp: str,
        done: Callable[[], ResolvedAmi | None],
        make: Callable[[Lease | None], ResolvedAmi],
    ) -> ResolvedAmi:
        """`make` the image of `d` (build or copy) under its lock and lease, unless `done` finds
        another process made it meanwhile."""
        return build_once(
            self._lock_path(d.name, fp),
            self._lease_manager(),
            lease_key(self.settings.lease_prefix, d.name, fp),
            d.name,
            fp,
            wait_timeout=self.settings.wait_timeout,
            cancelled=self._cancelled,
            done=done,
            build=make,
        )

    def _lock_path(self, definition: str, fingerprint: str) -> Path:
        """This machine's lock file of one image's builds, copies and deletion."""
        return self.settings.lock_dir / f"{definition}-{fingerprint}.lock"

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
        images = self._distribute(d, dict(current.images), current.regions)
        done = replace(current, state="found", images=MappingProxyType(images))
        self._update_manifest(d, current.fingerprint, images, before=current.images)
        self._share(d, images)
        return self._outcome(done, d, parent, commit, built=built)

    def _distribute(
        self, d: Definition, images: dict[str, Image], regions: Sequence[str]
    ) -> dict[str, Image]:
        """`images` copied to every one of `regions` that lacks one, all available."""
        pending = {r: i for r, i in images.items() if i.state == "pending"}
        for region, image in pending.items():
            images[region] = self._available(image)
        missing = [r for r in regions if r not in images]
        if not missing:
            return images
        source = next(images[r] for r in regions if r in images)
        tags = {k: v for k, v in source.tags.items() if not k.startswith("aws:")}
        if model.TAG_SHARED in tags:
            # EC2 copies no launch permissions: the copy is not shared until _share shares it.
            tags[model.TAG_SHARED] = ""
        started: dict[str, Image] = {}
        for region in missing:
            ec2 = self.clients.ec2(region)
            ami = registry.copy_image(
                ec2,
                source,
                region,
                encrypted=self.catalog.encrypted_for(d),
                kms_key_id=self.catalog.kms_key_for(d, region),
            )
            log.info(
                "%s: copying %s from %s to %s: %s",
                d.name,
                source.ami_id,
                source.region,
                region,
                ami,
            )
            copy = registry.describe_image(ec2, region, ami)
            # At once, so another process sees the copy in progress, not a region to copy to.
            registry.tag_image(ec2, copy, tags)
            started[region] = copy
        for region, copy in started.items():
            copy = self._available(copy)
            registry.tag_image(self.clients.ec2(region), copy, tags)  # its snapshots, now known
            images[region] = replace(copy, tags=MappingProxyType({**copy.tags, **tags}))
        return images

    def _share(self, d: Definition, images: Mapping[str, Image]) -> None:
        """Launch permissions on every regional image exactly as the catalog's `share` says
        (nothing to do when the images' shared tag says it is so already)."""
        entries = self.catalog.share_for(d)
        todo = {
            r: i
            for r, i in sorted(images.items())
            if not i.foreign and share.needs_update(i, entries)
        }
        for region, image in todo.items():  # all or none
            managed = [
                key
                for key in image.kms_key_ids
                if entries and share.key_manager(self.clients.kms(region), key) == "AWS"
            ]
            share.check(image, entries, aws_managed=managed)
        for region, image in todo.items():
            share.apply(self.clients.ec2(region), image, entries)

    def _available(self, image: Image) -> Image:
        if image.state == "available":
            return image
        return registry.wait_available(
            self.clients.ec2(image.region),
            image.region,
            image.ami_id,
            timeout=self.settings.wait_timeout,
        )

    def _update_manifest(
        self, d: Definition, fp: str, images: Mapping[str, Image], *, before: Mapping[str, Image]
    ) -> None:
        """The manifest of a copied image lists the copies made (`images` not in `before`)."""
        bucket = self.settings.manifest_bucket
        copies = {r: i.ami_id for r, i in images.items() if r not in before}
        if not bucket or not copies:
            return
        try:
            publish.add_regions(
                self.clients,
                d,
                fp,
                copies,
                bucket=bucket,
                prefix=self.settings.manifest_prefix,
            )
        except (AwsError, ManifestError) as exc:
            log.warning("%s: the manifest could not be updated with the copies: %s", d.name, exc)

    def _locked_build(
        self,
        d: Definition,
        decision: plan.Decision,
        parent: ResolvedAmi | None,
        snapshot: Snapshot,
        *,
        recheck: bool,
    ) -> ResolvedAmi:
        """Build exactly once; an image another process built meanwhile is used instead."""
        fp = decision.fingerprint
        build_id = plan.predicted_build_id(decision, parent.build_id if parent else None)
        self._check_builder()

        def build(lease: Lease | None) -> ResolvedAmi:
            if recheck:
                # Built meanwhile by the process we waited for, whose copies failed: copy, under
                # the lease we hold now, instead of building again.
                current = self._look_again(d, fp, parent)
                if current.state == "partial" and not current.foreign:
                    return self._copy_now(d, current, parent, snapshot.commit, built=True)
            return self._build(d, fp, parent, snapshot, build_id, lease=lease)

        return self._once(
            d,
            fp,
            (lambda: self._recheck(d, fp, parent, snapshot.commit)) if recheck else (lambda: None),
            build,
        )

    def _check_builder(self) -> None:
        """Refuse to build with credentials whose account `owners` does not count: the image
        would never be found (a workload account resolving the builder's images, say)."""
        if "self" in self.settings.owners:
            return
        with self._shared:
            if self._account is None:
                sts = self.clients.sts(self.settings.region)
                with aws_call("reading this account's ID", "sts:GetCallerIdentity"):
                    self._account = str(sts.get_caller_identity()["Account"])
        if self._account not in self.settings.owners:
            raise BuildError(
                f"The image is missing, and these credentials are account {self._account}, "
                f"which `owners` ({', '.join(self.settings.owners)}) does not count: an image "
                "built here would never be found. Build it with the credentials of one of "
                "those accounts (`ami-bridge build` in the builder's pipeline), or resolve here "
                'with on_missing=fail or report (in the modules, build_phase = "never").'
            )

    def _build(
        self,
        d: Definition,
        fp: str,
        parent: ResolvedAmi | None,
        snapshot: Snapshot,
        build_id: str,
        *,
        lease: Lease | None,
    ) -> ResolvedAmi:
        regions = self.regions(d)
        runner = self._runner()
        commit = snapshot.commit
        if self.settings.manifest_bucket:
            validation.warm_up(manifests.SCHEMA)  # while Packer runs
        with self._source(snapshot, d) as source:
            artifacts = build_image(
                runner,
                source,
                d,
                fp,
                regions=regions,
                parent=(parent.definition, parent.amis[regions[0]]) if parent else None,
                sources=snapshot.fingerprints[d.name].sources,
                ec2_endpoint=self.settings.ec2_endpoint,
                log_dir=self.settings.log_dir,
                manifest_dir=self.settings.packer_manifest_dir,
            )
        if lease is not None and self._leases is not None and not self._leases.confirm(lease):
            raise LeaseError(
                f"The build lease of {d.name!r} was taken over while Packer ran (this process "
                f"was too slow to renew it), so the AMIs it made "
                f"({', '.join(artifacts.amis.values())}) are left untagged and the other "
                "build's image counts. Run again to use it."
            )
        provenance = publish.Provenance(
            commit=commit,
            packer_version=runner.version(self.settings.repo_root),
            build_url=self.settings.build_url,
            parent=None
            if parent is None
            else manifests.ParentRef(
                parent.definition, parent.fingerprint, parent.amis[regions[0]]
            ),
            build_id=build_id,
            parent_build_id=parent.build_id if parent else None,
            source_amis=tuple(sorted({s.ami_id for s in snapshot.fingerprints[d.name].sources})),
        )
        published = publish.publish(
            self.clients,
            d,
            fp,
            artifacts.amis,
            tag_key=self.settings.tag_key,
            owners=self.settings.owners,
            provenance=provenance,
            bucket=self.settings.manifest_bucket,
            prefix=self.settings.manifest_prefix,
        )
        log.info(
            "built %s: %s", d.name, ", ".join(f"{r}:{a}" for r, a in sorted(artifacts.amis.items()))
        )
        images = dict(published.images)
        if any(r not in images for r in regions):
            # Tagged first, so a failed copy leaves a found image to copy from on the next run.
            before = dict(images)
            images = self._distribute(d, images, regions)
            self._update_manifest(d, fp, images, before=before)
        self._share(d, images)
        decision = plan.Decision(
            d.name,
            fp,
            "found",
            regions,
            MappingProxyType(images),
            source="ec2",
            expires_at=plan.expires_at(
                images[regions[0]].creation_date, self.catalog.max_age_for(d)
            ),
        )
        return self._outcome(
            decision,
            d,
            parent,
            commit,
            built=True,
            manifest_uri=published.manifest_uri,
        )


def _check_expected(names: Sequence[str], snapshot: Snapshot, expected: str) -> None:
    if len(names) != 1:
        raise QueryError(
            "An expected fingerprint names one definition's image: resolve or build one "
            "definition at a time with it."
        )
    actual = snapshot.fingerprints[names[0]].value
    if actual != expected:
        raise QueryError(
            f"The fingerprint of {names[0]!r} at commit {snapshot.commit[:12]} is {actual}, not "
            f"the expected {expected} (the planned one), so nothing was built: its inputs are not "
            "the ones reviewed (the commit differs, or with allow_dirty its uncommitted files "
            "changed since the plan). Plan again to review what is there now."
        )


def _combined(outcome: schedule.Outcome[ResolvedAmi]) -> BridgeError:
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
