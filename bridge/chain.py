"""The chain planner: resolve definitions to AMIs, building what is missing, parents first."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import git

from bridge import manifests, registry
from bridge.aws import AwsClients
from bridge.catalog import DEFAULT_OWNERS, DEFAULT_TAG_KEY, Catalog, Definition
from bridge.errors import (
    AwsError,
    BuildError,
    LeaseError,
    ManifestError,
    NotFoundError,
    QueryError,
)
from bridge.fingerprint import Fingerprint, Snapshot, fingerprint_all
from bridge.lease import Lease, LeaseConfig, LeaseManager, lease_key
from bridge.locking import local_lock
from bridge.packer import PackerRunner, declared_variables, manifest_artifacts
from bridge.registry import Image

log = logging.getLogger(__name__)

ON_MISSING = ("build", "fail", "report")
ENDPOINT_VARIABLE = "ec2_endpoint"


@dataclass(frozen=True)
class Settings:
    """How to resolve: where to look, what counts, what to do on a miss."""

    region: str
    tag_key: str = DEFAULT_TAG_KEY
    owners: tuple[str, ...] = DEFAULT_OWNERS
    manifest_bucket: str | None = None
    manifest_prefix: str | None = None
    commit: str | None = None
    allow_dirty: bool = False
    ec2_endpoint: str | None = None
    build_url: str = ""
    wait_timeout: float = 1800.0
    log_dir: Path = Path(".")
    lock_dir: Path = Path(".")
    # S3 build leases (cross-machine exactly-once); no bucket means the local lock alone.
    lease_bucket: str | None = None
    lease_prefix: str = ""
    lease_ttl: float = 300.0
    # Seed-style Packer manifests (manifest-<definition>.json) from builds in the same workflow.
    packer_manifest_dir: Path | None = None


@dataclass(frozen=True)
class ResolvedAmi:
    """The outcome for one definition."""

    definition: str
    fingerprint: str
    region: str
    ami_id: str
    amis: tuple[tuple[str, str], ...]
    parent_definition: str | None
    parent_ami_id: str
    state: str  # found | built | missing | outdated
    manifest_uri: str
    git_commit: str
    creation_date: str

    @property
    def found(self) -> bool:
        """An image is there to use."""
        return self.state in ("found", "built")

    @property
    def built(self) -> bool:
        """The image was built during this resolve (here, or by a build it waited for)."""
        return self.state == "built"


@dataclass
class Plan:
    """Fingerprints and what EC2 already has, before anything is built."""

    definitions: list[Definition]
    snapshot: Snapshot
    # region -> fingerprint -> images, newest first
    images: dict[str, dict[str, list[Image]]] = field(default_factory=dict)


class Chain:
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
        self.root = Path(str(repo.working_tree_dir))
        self.catalog = catalog
        self.clients = clients
        self.settings = settings
        self._packer_factory = packer
        self._packer: PackerRunner | None = None
        self._leases: LeaseManager | None = None
        self._warned_no_lease = False

    # -- planning -------------------------------------------------------------------------------

    def regions(self, d: Definition) -> tuple[str, ...]:
        """Regions the image of `d` must exist in; the first is where it is built."""
        regions = d.regions or self.catalog.regions or (self.settings.region,)
        if self.settings.region in regions:
            return (self.settings.region, *[r for r in regions if r != self.settings.region])
        return tuple(regions)

    def _snapshot(self, definitions: Sequence[Definition]) -> Snapshot:
        return fingerprint_all(
            self.repo,
            definitions,
            commit=self.settings.commit,
            allow_dirty=self.settings.allow_dirty,
        )

    def fingerprints(self, names: Iterable[str]) -> dict[str, str]:
        """The fingerprints of `names` and their ancestors, without asking AWS."""
        snapshot = self._snapshot(self.catalog.closure(names))
        return {name: fp.value for name, fp in snapshot.fingerprints.items()}

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

    def plan(self, names: Iterable[str]) -> Plan:
        """Fingerprint `names` and their ancestors, and look their images up (one call/region)."""
        definitions = self.catalog.closure(names)
        snapshot = self._snapshot(definitions)
        by_region: dict[str, set[str]] = {}
        for d in definitions:
            for region in self.regions(d):
                by_region.setdefault(region, set()).add(snapshot.fingerprints[d.name].value)
        images = {
            region: registry.find_images(
                self.clients.ec2(region),
                region,
                fps,
                tag_key=self.settings.tag_key,
                owners=self.settings.owners,
            )
            for region, fps in sorted(by_region.items())
        }
        return Plan(definitions, snapshot, images)

    # -- resolving ------------------------------------------------------------------------------

    def resolve(
        self,
        names: Sequence[str],
        *,
        on_missing: str = "build",
        force: Iterable[str] = (),
    ) -> dict[str, ResolvedAmi]:
        """Resolve `names` (and their ancestors), acting on misses as `on_missing` says."""
        if on_missing not in ON_MISSING:
            raise QueryError(
                f"on_missing must be one of {', '.join(ON_MISSING)}, not {on_missing!r}. Pick "
                "one of those."
            )
        forced = set(force)
        plan = self.plan(names)
        results: dict[str, ResolvedAmi] = {}
        for d in plan.definitions:
            fp = plan.snapshot.fingerprints[d.name]
            parent = results.get(d.parent) if d.parent else None
            current = self._current(plan.images, d, fp, parent, plan.snapshot.commit)
            if current.found and d.name not in forced:
                results[d.name] = current
                continue
            if parent is not None and not parent.found:
                results[d.name] = current
                continue
            if on_missing == "build" or d.name in forced:
                results[d.name] = self._locked_build(
                    d, fp, parent, plan.snapshot.commit, recheck=d.name not in forced
                )
            elif on_missing == "fail":
                raise NotFoundError(self._not_found(d, fp, current))
            else:
                results[d.name] = current
        return results

    def _current(
        self,
        images: Mapping[str, Mapping[str, list[Image]]],
        d: Definition,
        fp: Fingerprint,
        parent: ResolvedAmi | None,
        commit: str,
    ) -> ResolvedAmi:
        """What EC2 has for `d` now: found, missing, or outdated (built on another parent AMI)."""
        regions = self.regions(d)
        amis: dict[str, str] = {}
        chosen: Image | None = None
        outdated = False
        for region in regions:
            candidates = list(images.get(region, {}).get(fp.value, []))
            if parent is not None:
                # Every regional copy records the parent AMI it was built on (in the build region).
                matching = [
                    i for i in candidates if i.tag(registry.TAG_PARENT_AMI) == parent.ami_id
                ]
                outdated = outdated or (bool(candidates) and not matching)
                candidates = matching
            if not candidates:
                continue
            if len(candidates) > 1:
                log.warning(
                    "%s: %d images in %s carry %s=%s (%s); using the newest, %s",
                    d.name,
                    len(candidates),
                    region,
                    self.settings.tag_key,
                    fp.value,
                    ", ".join(i.ami_id for i in candidates),
                    candidates[0].ami_id,
                )
            image = candidates[0]
            if image.state == "pending":
                image = registry.wait_available(
                    self.clients.ec2(region),
                    region,
                    image.ami_id,
                    timeout=self.settings.wait_timeout,
                )
            amis[region] = image.ami_id
            if region == regions[0]:
                chosen = image
        complete = chosen is not None and all(r in amis for r in regions)
        seeded = self._seed_manifest_image(d) if not complete and parent is None else None
        if seeded:
            chosen = seeded[regions[0]]
            amis = {r: i.ami_id for r, i in seeded.items()}
            complete = True
        state = "found" if complete else ("outdated" if outdated else "missing")
        return self._result(
            d,
            fp,
            parent,
            state=state,
            amis=amis if complete else {},
            git_commit=(chosen.tag(registry.TAG_COMMIT) if chosen else None) or commit,
            creation_date=chosen.creation_date if chosen and complete else "",
        )

    def _result(
        self,
        d: Definition,
        fp: Fingerprint,
        parent: ResolvedAmi | None,
        *,
        state: str,
        amis: Mapping[str, str],
        git_commit: str,
        creation_date: str,
        manifest_uri: str | None = None,
    ) -> ResolvedAmi:
        primary = self.regions(d)[0]
        if manifest_uri is None:
            manifest_uri = (
                manifests.manifest_uri(
                    self.settings.manifest_bucket, self.settings.manifest_prefix, d.name, fp.value
                )
                if self.settings.manifest_bucket and state in ("found", "built")
                else ""
            )
        return ResolvedAmi(
            definition=d.name,
            fingerprint=fp.value,
            region=primary,
            ami_id=amis.get(primary, ""),
            amis=tuple(sorted(amis.items())),
            parent_definition=d.parent,
            parent_ami_id=parent.ami_id if parent else "",
            state=state,
            manifest_uri=manifest_uri,
            git_commit=git_commit,
            creation_date=creation_date,
        )

    def _not_found(self, d: Definition, fp: Fingerprint, current: ResolvedAmi) -> str:
        regions = self.regions(d)
        owners = ",".join(self.settings.owners)
        why = (
            "images with that fingerprint exist but were built on another parent AMI, so they "
            "are outdated"
            if current.state == "outdated"
            else "no image carries that fingerprint"
        )
        return (
            f"No usable image for definition {d.name!r} (fingerprint {fp.value}) in "
            f"{', '.join(regions)}, owners {owners}, tag {self.settings.tag_key}: {why}. Build it "
            f"with `ami-bridge build {d.name} --repo {self.root}` or resolve with "
            "on_missing=build."
        )

    # -- building -------------------------------------------------------------------------------

    def _runner(self) -> PackerRunner:
        if self._packer is None:
            self._packer = self._packer_factory()
        return self._packer

    def _leases_or_none(self) -> LeaseManager | None:
        if self.settings.lease_bucket is None:
            if not self._warned_no_lease:
                log.warning(
                    "no lease bucket is configured: duplicate builds are prevented on this "
                    "machine only (set a manifest or lease bucket in the catalog to protect "
                    "every machine)"
                )
                self._warned_no_lease = True
            return None
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
        return self._leases

    def _recheck(
        self, d: Definition, fp: Fingerprint, parent: ResolvedAmi | None, commit: str
    ) -> ResolvedAmi | None:
        """The image, if another process built it since we planned."""
        fresh = {
            region: registry.find_images(
                self.clients.ec2(region),
                region,
                [fp.value],
                tag_key=self.settings.tag_key,
                owners=self.settings.owners,
            )
            for region in self.regions(d)
        }
        current = self._current(fresh, d, fp, parent, commit)
        if current.found:
            log.info("%s was built by another process meanwhile: %s", d.name, current.ami_id)
            # Built during this resolve, by the build it waited for: the same answer as the
            # builder's, so concurrent resolves agree.
            return replace(current, state="built")
        return None

    def _locked_build(
        self,
        d: Definition,
        fp: Fingerprint,
        parent: ResolvedAmi | None,
        commit: str,
        *,
        recheck: bool,
    ) -> ResolvedAmi:
        """Build exactly once: under this machine's lock, then the image's S3 lease.

        Whoever held either first may have built the image meanwhile; then that image is used.
        """
        lock = self.settings.lock_dir / f"{d.name}-{fp.value}.lock"
        with local_lock(lock, timeout=self.settings.wait_timeout):
            leases = self._leases_or_none()
            if leases is None:
                if recheck and (found := self._recheck(d, fp, parent, commit)):
                    return found
                return self._build(d, fp, parent, commit, lease=None)
            key = lease_key(self.settings.lease_prefix, d.name, fp.value, self.regions(d))
            done = (lambda: self._recheck(d, fp, parent, commit)) if recheck else (lambda: None)
            found, lease = leases.wait(key, d.name, fp.value, done)
            if found is not None:
                return found
            assert lease is not None
            with leases.renewing(lease, d.name, fp.value):
                # The holder before us may have finished just before releasing.
                if recheck and (found := self._recheck(d, fp, parent, commit)):
                    return found
                return self._build(d, fp, parent, commit, lease=lease)

    def _build(
        self,
        d: Definition,
        fp: Fingerprint,
        parent: ResolvedAmi | None,
        commit: str,
        *,
        lease: Lease | None,
    ) -> ResolvedAmi:
        if self.repo.head.commit.hexsha != commit:
            raise BuildError(
                f"Cannot build {d.name!r} at commit {commit[:12]}: the checkout is at "
                f"{self.repo.head.commit.hexsha[:12]} and Packer builds from the checkout. "
                "Check that commit out first, or resolve with on_missing=fail/report."
            )
        regions = self.regions(d)
        runner = self._runner()
        declared = declared_variables(self.root / d.template)
        variables = dict(d.variables)
        seed_vars = {
            "ami_sha": fp.value,
            "ami_name": f"{d.name}-{fp.value[:12]}",
            "ami_base": parent.ami_id if parent else "",
            "region": regions[0],
            ENDPOINT_VARIABLE: self.settings.ec2_endpoint or "",
        }
        for name, value in seed_vars.items():
            if name in declared and name not in variables and (value or name != ENDPOINT_VARIABLE):
                variables[name] = value
        if parent is not None and "ami_base" not in declared:
            log.warning(
                "%s: the template declares no `ami_base` variable, so it cannot be told to build "
                "on %s (%s)",
                d.name,
                parent.definition,
                parent.ami_id,
            )
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        log_path = self.settings.log_dir / f"{d.name}-{fp.value[:12]}-{stamp}.log"
        log.info("building %s (%s) with Packer; log: %s", d.name, fp.value[:12], log_path)
        result = runner.build(d.template, variables, self.root, log_path)
        amis = result.amis or self._packer_manifest(d)
        missing = [r for r in regions if r not in amis]
        if missing:
            raise BuildError(
                f"Packer built {d.name!r} but reported no AMI for {', '.join(missing)} (it "
                f"reported {amis or 'none'}). Make the template build in {regions[0]} and copy "
                f"to the other catalog regions (ami_regions). Log: {log_path}."
            )
        if lease is not None and self._leases is not None and not self._leases.confirm(lease):
            raise LeaseError(
                f"The build lease of {d.name!r} was taken over while Packer ran (this process "
                f"was too slow to renew it), so the AMIs it made ({', '.join(amis.values())}) "
                "are left untagged and the other build's image counts. Run again to use it."
            )
        packer_version = runner.version(self.root)
        tags = {
            **dict(d.tags),
            registry.TAG_DEFINITION: d.name,
            registry.TAG_COMMIT: commit,
            registry.TAG_PACKER_VERSION: packer_version,
        }
        if self.settings.build_url:
            tags[registry.TAG_BUILD_URL] = self.settings.build_url
        if parent is not None:
            tags[registry.TAG_PARENT_AMI] = parent.ami_id
            tags[registry.TAG_PARENT_FINGERPRINT] = parent.fingerprint
        # The fingerprint tag goes on in the same call as the provenance tags, so an image is
        # never findable without them.
        tags[self.settings.tag_key] = fp.value
        images = {
            region: registry.describe_image(self.clients.ec2(region), region, amis[region])
            for region in regions
        }
        for image in images.values():
            registry.tag_image(self.clients.ec2(image.region), image, tags)
        primary = images[regions[0]]
        uri = ""
        if self.settings.manifest_bucket:
            manifest = manifests.Manifest(
                definition=d.name,
                fingerprint=fp.value,
                amis=tuple(sorted((r, amis[r]) for r in regions)),
                parent=None
                if parent is None
                else manifests.ParentRef(parent.definition, parent.fingerprint, parent.ami_id),
                git_commit=commit,
                packer_version=packer_version,
                build_time=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                build_url=self.settings.build_url,
            )
            uri = manifests.publish(
                self.clients.s3(regions[0]),
                self.settings.manifest_bucket,
                self.settings.manifest_prefix,
                manifest,
            )
        log.info("built %s: %s", d.name, ", ".join(f"{r}:{a}" for r, a in sorted(amis.items())))
        return self._result(
            d,
            fp,
            parent,
            state="built",
            amis={r: amis[r] for r in regions},
            git_commit=commit,
            creation_date=primary.creation_date,
            manifest_uri=uri,
        )

    def _seed_manifest_image(self, d: Definition) -> dict[str, Image] | None:
        """A root image the seed pipeline just built, from its manifest-<name>.json.

        Only with AMI_BRIDGE_PACKER_MANIFESTS set (the workflow's workspace), and only when every
        region's AMI exists and is available: the seed tagged its images with a literal
        placeholder, so they cannot be found by fingerprint.
        """
        if self.settings.packer_manifest_dir is None:
            return None
        path = self.settings.packer_manifest_dir / f"manifest-{d.name}.json"
        if not path.is_file():
            return None
        amis = manifest_artifacts(path)
        if not all(r in amis for r in self.regions(d)):
            return None
        try:
            images = {
                r: registry.describe_image(self.clients.ec2(r), r, amis[r]) for r in self.regions(d)
            }
        except AwsError as exc:
            log.warning("%s: ignoring %s: %s", d.name, path, exc)
            return None
        if any(i.state != "available" for i in images.values()):
            return None
        log.warning(
            "%s: using %s from %s (a seed pipeline build, not verified by fingerprint)",
            d.name,
            ", ".join(i.ami_id for i in images.values()),
            path,
        )
        return images

    def _packer_manifest(self, d: Definition) -> dict[str, str]:
        directory = self.settings.packer_manifest_dir or self.root
        path = directory / f"manifest-{d.name}.json"
        return manifest_artifacts(path) if path.is_file() else {}
