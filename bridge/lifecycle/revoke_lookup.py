"""Which builds a revocation names (revoke.py): a definition's builds of a fingerprint, the one
build of an AMI, and every build made on a build, looked up in every region the catalog uses at
once. No writes."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from bridge import model, ownership
from bridge.aws import registry
from bridge.aws.fanout import each_region
from bridge.catalog import Definition
from bridge.errors import QueryError
from bridge.model import Build, Image
from bridge.pipeline import plan
from bridge.pipeline.survey import Surveyor

if TYPE_CHECKING:
    from bridge.context import Context

AMI_ID = re.compile(r"ami-[0-9a-f]{8,17}")
FINGERPRINT = re.compile(r"[0-9a-f]{40}")


class Lookup:
    """Finds the builds of one catalog's definitions that a revocation or a restore names."""

    def __init__(self, ctx: Context) -> None:
        self.settings = ctx.settings
        self.catalog = ctx.catalog
        self.clients = ctx.clients
        self._surveyor = Surveyor(ctx)

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
            return [self.by_ami(d, ami)]
        fp, builds = self.of_fingerprint(d, fingerprint)
        return self.wanted(d, fp, builds, revoked=revoked)

    def of_fingerprint(self, d: Definition, fingerprint: str | None) -> tuple[str, list[Build]]:
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
            key=lambda b: b.recency,
            reverse=True,
        )
        return fp, builds

    def wanted(self, d: Definition, fp: str, builds: list[Build], *, revoked: bool) -> list[Build]:
        """Of `builds`, those not revoked yet (`revoked` False) or revoked by their own
        revocation (`revoked` True); an error saying why when there are none."""
        now = datetime.now(timezone.utc)
        if revoked:
            wanted = [b for b in builds if revoked_by_itself(b)]
        else:
            wanted = [b for b in builds if not in_effect(b, now)]
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
                + (self.revoked_by(by[0]) if by else ".")
            )
        raise QueryError(
            f"Every image of {d.name!r} with fingerprint {fp[:12]} is revoked already. Name one "
            "with --ami to change its revocation, or `ami-bridge restore` it first."
        )

    def by_ami(self, d: Definition, ami: str) -> Build:
        if not AMI_ID.fullmatch(ami):
            raise QueryError(
                f"--ami is {ami[:60]!r}, not an AMI ID (ami- and 8 or 17 hexadecimal digits). "
                "Pass the ID of any regional copy of the image."
            )
        for region in self.regions():
            image = registry.image_by_id(
                self.clients.ec2(region), region, ami, owners=self.settings.owners
            )
            if image is None:
                continue
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
        """This catalog's images tagged `key` = one of `values`, disabled ones too, in every
        region at once. Another catalog's build of the same content has the same build ID and
        parent tags: its images are never this catalog's builds, copies or descendants."""
        wanted = sorted(set(values))
        catalog = self.settings.catalog_id

        def tagged(region: str) -> list[Image]:
            found = registry.find_tagged(
                self.clients.ec2(region),
                region,
                key,
                wanted,
                owners=self.settings.owners,
                include_disabled=True,
            )
            return [i for i in found if not ownership.foreign(i, catalog)]

        return list(each_region(self.regions(), tagged).values())

    def descendants(self, root: Build) -> list[Build]:
        """Every build made on `root`, at any depth, parents before children: images whose
        parent-AMI tag names an AMI of a build already found, looked up to a fixed point."""
        seen = {root.build_id}
        frontier = set(root.amis.values())
        parents = {root.build_id}
        found: list[Build] = []
        while frontier or parents:
            # By the parent's AMIs, and by its build ID: a child stays found when the copy it
            # was built on (the parent's home-region image) is gone and only other copies remain.
            children = [
                i
                for tagged in (
                    self._tagged(model.TAG_PARENT_AMI, frontier) if frontier else [],
                    self._tagged(model.TAG_PARENT_BUILD_ID, parents) if parents else [],
                )
                for found_here in tagged
                for i in found_here
            ]
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
            frontier, parents = set(), set(new)
            for build_id in sorted(new):
                found.append(builds[build_id])
                frontier |= set(builds[build_id].amis.values())
        return found

    def revoked_by(self, build_id: str) -> str:
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
                if ownership.foreign(image, self.settings.catalog_id):
                    continue
                name = image.tag(model.TAG_DEFINITION) or "?"
                return (
                    f": it is revoked because its ancestor {name!r} (build {build_id[:12]}, "
                    f"{image.ami_id} in {region}) is; restore that one with `ami-bridge restore "
                    f"{name} --ami {image.ami_id}`, which restores this image too."
                )
        return f": it is revoked because of the build {build_id[:12]}, which no longer exists."


def _builds(images: Iterable[Image], tag_key: str) -> dict[str, Build]:
    return {b.build_id: b for b in model.builds_of(images, tag_key=tag_key)}


def in_effect(build: Build, now: datetime) -> bool:
    revocation = build.revocation
    return revocation is not None and model.revocation_time(revocation.at) <= now


def revoked_by_itself(build: Build) -> bool:
    revocation = build.revocation
    return revocation is not None and revocation.by == build.build_id
