"""Looking: the fingerprints of a catalog's definitions, the regions each image must exist in,
and the images EC2 (or another account's manifests, or a seed pipeline's) has for them.

One DescribeImages per region for the whole survey; nothing is decided or changed here.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from bridge import model, ownership, sources
from bridge.aws import manifests, registry
from bridge.aws.fanout import each_region
from bridge.catalog import Catalog, Definition
from bridge.context import Context
from bridge.errors import QueryError
from bridge.fingerprint import Snapshot, fingerprint_all
from bridge.model import Image
from bridge.pipeline import plan, seed
from bridge.settings import Settings

log = logging.getLogger(__name__)


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


def everywhere(catalog: Catalog, settings: Settings) -> tuple[str, ...]:
    """Every region any definition's image must exist in, wherever it is resolved from."""
    return tuple(
        dict.fromkeys(
            r for d in catalog.all() for r in _everywhere(d, _child_map(catalog), settings)
        )
    )


def _child_map(catalog: Catalog) -> dict[str, list[Definition]]:
    children: dict[str, list[Definition]] = {}
    for c in catalog.all():
        if c.parent is not None:
            children.setdefault(c.parent, []).append(c)
    return children


def _everywhere(
    d: Definition, children: Mapping[str, Sequence[Definition]], settings: Settings
) -> tuple[str, ...]:
    """Every region `d`'s image must exist in, wherever it is resolved from: a child's image
    may have been built in any of its regions, on the parent's copy there, and it counts only
    while its parent-AMI tag names a current image of the parent."""
    own = plan.regions_for(d, catalog_regions=settings.regions, region=settings.region)
    below = [r for c in children.get(d.name, []) for r in _everywhere(c, children, settings)]
    return tuple(dict.fromkeys([*own, *below]))


class Surveyor:
    """Looks at one catalog's images: fingerprints, regions, and what EC2 has.

    It remembers what it learnt (the upstream image each source filter chose, the roots built
    where that image was chosen), so one resolve asks for each only once.
    """

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._regions: dict[str, tuple[str, ...]] = {}
        self._children = _child_map(ctx.catalog)
        # (region, filter) -> the image it chose: one DescribeImages per distinct filter.
        self._picked: dict[tuple[str, str], sources.SourcePick] = {}
        # Roots built on a tracked upstream image: built where the image was chosen.
        self._pinned: set[str] = set()

    # -- regions --------------------------------------------------------------------------------

    def regions(self, d: Definition) -> tuple[str, ...]:
        """Regions the image of `d` must exist in; the first is where it is built.

        A parent also exists wherever its children must, so a child is always built on the
        parent's image in its own region (copied there first when needed).
        """
        settings = self.ctx.settings
        if d.name not in self._regions:
            below = [r for c in self._children.get(d.name, []) for r in self._everywhere(c)]
            try:
                own = plan.regions_for(
                    d,
                    catalog_regions=settings.regions,
                    region=settings.region,
                    explicit=settings.region_explicit,
                )
            except QueryError:
                if settings.region not in below:
                    raise
                # Asked for in a region only a descendant lists: the parent is built in its own
                # first region and copied there.
                own = plan.regions_for(d, catalog_regions=settings.regions, region=settings.region)
            if d.name in self._pinned:
                # Its upstream image was chosen (and fingerprinted) in its home region, so it is
                # built there, wherever it is resolved from, and copied to the others.
                own = (self._home(d), *own)
            self._regions[d.name] = tuple(dict.fromkeys([*own, *below]))
        return self._regions[d.name]

    def asked(self, d: Definition) -> str:
        """The region an answer about `d` is for: the one resolved in, when `d`'s image exists
        there; else the region it is built in."""
        region = self.ctx.settings.region
        return region if region in self.regions(d) else self.regions(d)[0]

    def everywhere(self) -> tuple[str, ...]:
        """Every region any definition's image must exist in, wherever it is resolved from."""
        return everywhere(self.ctx.catalog, self.ctx.settings)

    def _everywhere(self, d: Definition) -> tuple[str, ...]:
        return _everywhere(d, self._children, self.ctx.settings)

    def _home(self, d: Definition) -> str:
        """The region `d` is built in when no region is asked for: its first."""
        settings = self.ctx.settings
        return (d.regions or settings.regions or (settings.region,))[0]

    # -- fingerprints ---------------------------------------------------------------------------

    def fingerprints(self, names: Iterable[str]) -> dict[str, str]:
        """The fingerprints of `names` and their ancestors, without asking AWS."""
        snapshot = self._snapshot(self.ctx.catalog.closure(names))
        return {name: fp.value for name, fp in snapshot.fingerprints.items()}

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
                    self.ctx.clients.ec2(region), region, f, definition=d.name
                )
            picks.append(replace(self._picked[key], filter=f))
        return picks

    def _snapshot(self, definitions: Sequence[Definition]) -> Snapshot:
        settings = self.ctx.settings
        snapshot = fingerprint_all(
            self.ctx.repo,
            definitions,
            commit=settings.commit,
            allow_dirty=settings.allow_dirty,
            catalog_path=self.ctx.catalog.path,
            pick_sources=self._pick_sources,
            environment=settings.environment,
        )
        pinned = {name for name, fp in snapshot.fingerprints.items() if fp.sources}
        if not pinned <= self._pinned:
            self._pinned |= pinned
            self._regions.clear()
        for name in sorted(pinned):
            for pick in snapshot.fingerprints[name].sources:
                log.debug("%s: %s chose %s (%s)", name, pick.filter.origin, pick.ami_id, pick.name)
        return snapshot

    # -- images ---------------------------------------------------------------------------------

    def survey(self, names: Sequence[str], *, expect_fingerprint: str | None = None) -> Survey:
        """Fingerprint `names` and their ancestors; look their images up (one call per region).

        With `expect_fingerprint`, the one definition named must have that fingerprint: checked
        before anything is asked of AWS.
        """
        definitions = self.ctx.catalog.closure(names)
        snapshot = self._snapshot(definitions)
        if expect_fingerprint is not None:
            _check_expected(names, snapshot, expect_fingerprint)
        by_region: dict[str, set[str]] = {}
        for d in definitions:
            for region in self.regions(d):
                by_region.setdefault(region, set()).add(snapshot.fingerprints[d.name].value)
        images = each_region(sorted(by_region), lambda region: self.find(region, by_region[region]))
        self._add_shared(definitions, snapshot, images)
        seeded: dict[str, Mapping[str, Image]] = {}
        directory = self.ctx.settings.packer_manifest_dir
        if directory is not None:
            for d in definitions:
                if d.parent is None:
                    found = seed.built_images(
                        self.ctx.clients,
                        directory,
                        d.name,
                        self.regions(d),
                        fingerprint=snapshot.fingerprints[d.name].value,
                        tag_key=self.ctx.settings.tag_key,
                    )
                    if found is not None:
                        seeded[d.name] = found
        return Survey(definitions, snapshot, images, seeded)

    def find(self, region: str, fingerprints: Iterable[str]) -> dict[str, list[Image]]:
        """Fingerprint -> this account's (or `owners`') images carrying it in `region`; never
        another catalog's (ownership.py)."""
        found = registry.find_images(
            self.ctx.clients.ec2(region),
            region,
            fingerprints,
            tag_key=self.ctx.settings.tag_key,
            owners=self.ctx.settings.owners,
        )
        catalog = self.ctx.settings.catalog_id
        return {
            fp: [i for i in images if not ownership.foreign(i, catalog)]
            for fp, images in found.items()
        }

    def look_again(
        self,
        d: Definition,
        fingerprint: str,
        parent_amis: frozenset[str] | None,
        parent_origin: str | None = None,
    ) -> plan.Decision:
        """The planner's decision on what EC2 has now (after waiting for a lock, say)."""
        regions = self.regions(d)
        seen = each_region(
            regions, lambda region: self.find(region, [fingerprint]).get(fingerprint, [])
        )
        return plan.decide(
            d,
            fingerprint,
            regions,
            seen,
            parent_amis=parent_amis,
            parent_origin=parent_origin,
            max_age_days=self.ctx.catalog.max_age_for(d),
            asked=self.asked(d),
        )

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
        settings, clients = self.ctx.settings, self.ctx.clients
        foreign = [o for o in settings.owners if o != "self"]
        bucket = settings.manifest_bucket
        if not foreign or not bucket:
            return
        wanted: dict[str, dict[str, tuple[Definition, manifests.Manifest]]] = {}
        for d in definitions:
            fp = snapshot.fingerprints[d.name].value
            lacking = [r for r in self.regions(d) if not images.get(r, {}).get(fp)]
            if not lacking:
                continue
            manifest = manifests.fetch(
                clients.s3(settings.region), bucket, settings.manifest_prefix, d.name, fp
            )
            if manifest is None:
                continue
            for region in lacking:
                if region in manifest.amis:
                    wanted.setdefault(region, {})[manifest.amis[region]] = (d, manifest)
        for region, by_ami in sorted(wanted.items()):
            found = registry.shared_images(clients.ec2(region), region, by_ami, owners=foreign)
            for ami, image in found.items():
                d, manifest = by_ami[ami]
                recorded = {
                    settings.tag_key: manifest.fingerprint,
                    model.TAG_DEFINITION: d.name,
                    model.TAG_COMMIT: manifest.commit,
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
