"""Building one image: Packer on the exported tree (`packer init` first where the template
requires plugins), then its tags and manifest (publish.py), its copies and sharing
(distribute.py). Refuses credentials whose images would never be found, and a build whose lease
was taken over while Packer ran."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from types import MappingProxyType

from bridge import model, observe, ownership, validation
from bridge.aws import manifests, registry
from bridge.aws.clients import aws_call
from bridge.aws.lease import Lease
from bridge.catalog import Definition
from bridge.context import Context
from bridge.errors import BuildError, LeaseError
from bridge.fingerprint import Fingerprint, Snapshot
from bridge.git import TREE_MODE, TreeIndex
from bridge.model import Image
from bridge.observe import Tracer
from bridge.packer import PackerRunner
from bridge.pipeline import checkout, distribute, gates, plan, provenance, publish, referee
from bridge.pipeline.build import Artifacts, build_image, image_name
from bridge.pipeline.guard import Guard
from bridge.pipeline.result import ResolvedAmi
from bridge.record import BuildRecord, Observed, Parent
from bridge.templates import required_plugins

log = logging.getLogger(__name__)


class Builder:
    """Builds and publishes the images of one catalog, one Packer runner for all of them."""

    def __init__(
        self,
        ctx: Context,
        guard: Guard,
        packer: Callable[[], PackerRunner],
        *,
        cancelled: threading.Event,
    ) -> None:
        self.ctx = ctx
        self._guard = guard
        self._packer_factory = packer
        self._packer: PackerRunner | None = None
        self._cancelled = cancelled
        # Several builds run at once (--jobs): one of each shared object.
        self._shared = threading.Lock()
        self._git = threading.Lock()
        # The provenance keys found able to sign (looked at once per run).
        self._keys_checked: set[str] = set()
        self._account: str | None = None
        # `packer init` per (tree, template) this run: None once done, or the error it raised.
        # One at a time: concurrent inits would write the same plugin directory.
        self._inits: dict[tuple[str, str], BuildError | None] = {}
        self._init_lock = threading.Lock()
        # The tracer builds run under (observe.py), looked for once per run; why there is none.
        self._tracer: tuple[Tracer | None, str] | None = None

    def interrupt(self) -> None:
        """Running Packer builds cancel and clean up."""
        if self._packer is not None:
            self._packer.interrupt()

    def check_account(self) -> None:
        """Refuse to build with credentials whose account `owners` does not count: the image
        would never be found (a workload account resolving the builder's images, say)."""
        settings = self.ctx.settings
        if "self" in settings.owners:
            return
        with self._shared:
            if self._account is None:
                sts = self.ctx.clients.sts(settings.region)
                with aws_call("reading this account's ID", "sts:GetCallerIdentity"):
                    self._account = str(sts.get_caller_identity()["Account"])
        if self._account not in settings.owners:
            raise BuildError(
                f"The image is missing, and these credentials are account {self._account}, "
                f"which `owners` ({', '.join(settings.owners)}) does not count: an image "
                "built here would never be found. Build it with the credentials of one of "
                "those accounts (`ami-bridge build` in the builder's pipeline), or resolve here "
                'with on_missing=fail or report (in the modules, build_phase = "never").'
            )

    def build(
        self,
        d: Definition,
        fp: str,
        regions: Sequence[str],
        parent: ResolvedAmi | None,
        snapshot: Snapshot,
        build_id: str,
        *,
        lease: Lease | None,
        published: Callable[[plan.Decision, str], None] = lambda made, uri: None,
    ) -> tuple[plan.Decision, str]:
        """Build `d`'s image in `regions[0]`, tag and publish it, copy it to the other regions
        and share it: the decision that it is found, and its manifest's URI.

        When it has regions to be copied to, `published` gets the decision and the URI once the
        build is tagged where it was made, before the copies (children can be built on it
        there meanwhile)."""
        ctx, settings = self.ctx, self.ctx.settings
        begun = datetime.now(timezone.utc)
        if ctx.catalog.provenance_key and not settings.manifest_bucket:
            raise BuildError(
                "The catalog signs provenance (`provenance.key`), which is stored beside the "
                "manifest, and no manifest bucket is set. Set `manifest.bucket` in the catalog "
                "(or --manifest-bucket), or remove `provenance`."
            )
        if ctx.catalog.provenance_key:
            self._check_key(str(ctx.catalog.provenance_key))
        runner = self._runner()
        commit = snapshot.commit
        if settings.manifest_bucket:
            validation.warm_up(manifests.SCHEMA)  # while Packer runs
            # Before anything is built: the manifest it would write must be this catalog's.
            manifests.check_owner(
                ctx.clients.s3(settings.region),
                settings.manifest_bucket,
                settings.manifest_prefix,
                d.name,
                fp,
                settings.catalog_id,
            )
        with self._source(snapshot, d) as source:
            gates.check_programs(d, lambda path: (source / path).is_file())
            self._init(runner, d, snapshot, source)
            artifacts = build_image(
                runner,
                source,
                d,
                fp,
                regions=regions,
                parent=(parent.definition, parent.amis[regions[0]]) if parent else None,
                sources=snapshot.fingerprints[d.name].sources,
                builds=snapshot.fingerprints[d.name].builds,
                declared=snapshot.fingerprints[d.name].variables,
                ec2_endpoint=settings.ec2_endpoint,
                log_dir=settings.log_dir,
                manifest_dir=settings.packer_manifest_dir,
                ami_name=self._image_name(d, fp, regions[0], build_id),
                tracer=self._observer(runner),
            )
            candidate = gates.Candidate(d, artifacts.amis, fp, build_id, regions[0])
            # Not found by anyone until published, whatever the template tagged it.
            gates.hold(ctx, candidate)
            observed = self._judge(snapshot, source, candidate, artifacts)
            self._confirm(d, lease, artifacts.amis)
            # Under the lease, from the same tree: the image is a candidate until they pass.
            tested = gates.run(
                ctx, candidate, tree=source, env=runner.environment, cancelled=self._cancelled
            )
        if tested:
            self._confirm(d, lease, artifacts.amis)
        record = BuildRecord(
            catalog=settings.catalog_id,
            definition=d.name,
            fingerprint=fp,
            build_id=build_id,
            commit=commit,
            region=regions[0],
            amis=dict(artifacts.amis),
            parent=None if parent is None else self._parent(parent, regions[0]),
            source_amis=_upstream(snapshot.fingerprints[d.name]),
            packer_version=runner.version(settings.repo_root),
            build_url=settings.build_url,
            built_at=model.precise_timestamp(begun),
            tests=tuple(t.to_dict() for t in tested),
            observed=observed,
        )
        made = publish.publish(
            ctx.clients,
            d,
            record,
            tag_key=settings.tag_key,
            owners=settings.owners,
            bucket=settings.manifest_bucket,
            prefix=settings.manifest_prefix,
        )
        log.info(
            "built %s: %s", d.name, ", ".join(f"{r}:{a}" for r, a in sorted(artifacts.amis.items()))
        )
        images = dict(made.images)
        before = dict(images)
        if any(r not in images for r in regions):
            published(self._decision(d, fp, regions, images), made.manifest_uri)
            # Tagged first, so a failed copy leaves a found image to copy from on the next run.
            images = distribute.distribute(ctx, d, images, regions)
            distribute.update_manifest(ctx, d, fp, images, before=before)
        distribute.share_image(ctx, d, images, fresh=[r for r in images if r not in before])
        distribute.protect(ctx, images)
        distribute.check_everywhere(ctx, d, fp, images, regions)
        if ctx.catalog.provenance_key and settings.manifest_bucket:
            self._attest(replace(record, amis={r: i.ami_id for r, i in images.items()}), images)
        return self._decision(d, fp, regions, images), made.manifest_uri

    def _decision(
        self, d: Definition, fp: str, regions: Sequence[str], images: Mapping[str, Image]
    ) -> plan.Decision:
        """The decision that the build is found, with its `images` so far."""
        region = self.ctx.settings.region
        return plan.Decision(
            d.name,
            fp,
            "found",
            tuple(regions),
            MappingProxyType(dict(images)),
            source="ec2",
            # The answer is for the region asked, wherever the build ran.
            asked=region if region in regions else regions[0],
            expires_at=plan.expires_at(
                images[regions[0]].creation_date, self.ctx.catalog.max_age_for(d)
            ),
        )

    def _check_key(self, key: str) -> None:
        """The provenance key can sign (provenance.check_key), looked at once per run."""
        with self._shared:
            if key in self._keys_checked:
                return
        provenance.check_key(self.ctx.clients, key, self.ctx.settings.region)
        with self._shared:
            self._keys_checked.add(key)

    def _image_name(self, d: Definition, fp: str, region: str, build_id: str) -> str:
        """The `ami_name` for this build: the fingerprint's name, or, when an image of the
        account is named with it already (an earlier build of the fingerprint), one with the
        build ID."""
        taken = registry.name_in_use(self.ctx.clients.ec2(region), region, image_name(d, fp))
        return image_name(d, fp, build_id if taken else None)

    def _observer(self, runner: PackerRunner) -> Tracer | None:
        """The tracer builds run under (observe.find), looked for once per run: None when
        observe is off, or auto and strace cannot trace here (said once); an error when it is
        required and cannot."""
        setting = self.ctx.settings.observe
        if setting == "off":
            return None
        with self._shared:
            if self._tracer is None:
                self._tracer = observe.find(runner.environment)
                if self._tracer[0] is None and setting == "auto":
                    log.warning(
                        "builds are not observed: %s; a read outside an image's identity will "
                        "not fail its build (observe = auto; `required` makes this an error)",
                        self._tracer[1],
                    )
            tracer, why = self._tracer
        if tracer is None and setting == "required":
            raise observe.unobservable(why)
        return tracer

    def _judge(
        self,
        snapshot: Snapshot,
        source: Path,
        candidate: gates.Candidate,
        artifacts: Artifacts,
    ) -> Observed:
        """What the build read, judged against its identity (referee.py): a read the identity
        does not cover rejects the new image and fails the build."""
        d = candidate.definition
        if artifacts.accesses is None:
            why = self._tracer[1] if self._tracer and self._tracer[1] else "observe is off"
            return Observed(traced=False, why_not=why)
        with self._git:
            index = TreeIndex(self.ctx.repo, snapshot.tree)

            def blob(path: str) -> str | None:
                with self._git:
                    found = index.lookup(path)
                return None if found is None or found[0] == TREE_MODE else found[1]

        verdict = referee.judge(
            artifacts.accesses,
            root=source,
            inputs=snapshot.fingerprints[d.name].inputs,
            blob=blob,
        )
        if verdict.uncovered:
            fate = gates.reject(self.ctx, candidate, "read outside its identity")
            raise BuildError(referee.refusal(d.name, verdict, fate=fate))
        outside = verdict.observed.outside
        if outside:
            shown = ", ".join(outside[:5]) + (
                f" and {len(outside) - 5} more" if len(outside) > 5 else ""
            )
            log.warning(
                "%s: the build read %s, outside the repository; if that goes into the image, a "
                "change to it will not rebuild the image (recorded in the manifest's observed "
                "reads)",
                d.name,
                shown,
            )
        return verdict.observed

    def _parent(self, parent: ResolvedAmi, region: str) -> Parent:
        """The parent image of a build in `region`, as its record names it."""
        settings = self.ctx.settings
        bucket = settings.manifest_bucket
        return Parent(
            parent.definition,
            parent.fingerprint,
            parent.amis[region],
            build_id=parent.build_id,
            origin=parent.origin,
            # The parent build's own statement (its tag; else where this bridge writes it),
            # which no later build of its fingerprint replaces.
            provenance=parent.provenance
            or (
                provenance.build_uri(
                    bucket,
                    settings.manifest_prefix,
                    parent.definition,
                    parent.fingerprint,
                    parent.build_id,
                )
                if bucket
                else ""
            ),
        )

    def _attest(self, record: BuildRecord, images: Mapping[str, Image]) -> None:
        """Sign the build's provenance, store it beside the manifest and tag every image with
        where it is (provenance.py)."""
        settings = self.ctx.settings
        key = str(self.ctx.catalog.provenance_key)
        uri = provenance.record(
            self.ctx.clients,
            key=key,
            bucket=str(settings.manifest_bucket),
            prefix=settings.manifest_prefix,
            build=record,
            run=provenance.Run(
                account=images[record.region].owner_id,
                repository=_repository(self.ctx),
                bridge_version=_version(),
                finished=model.timestamp(datetime.now(timezone.utc)),
            ),
        )
        for image in images.values():
            registry.tag_image(
                self.ctx.clients.ec2(image.region), image, {model.TAG_PROVENANCE: uri}
            )
        log.info("signed the provenance of %s with %s: %s", record.definition, key, uri)

    def _confirm(self, d: Definition, lease: Lease | None, amis: Mapping[str, str]) -> None:
        """Refuse to publish a build whose lease was taken over meanwhile."""
        if not self._guard.confirm(lease):
            raise LeaseError(
                f"The build lease of {d.name!r} was taken over while Packer ran (this process "
                f"was too slow to renew it), so the AMIs it made "
                f"({', '.join(amis.values())}) are left untagged and the other "
                "build's image counts. Run again to use it."
            )

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
                        self.ctx.repo,
                        snapshot.tree,
                        self.ctx.settings.state_dir / "trees",
                        inputs=[e.path for e in snapshot.fingerprints[d.name].inputs],
                    )
                )
            yield source

    def _init(self, runner: PackerRunner, d: Definition, snapshot: Snapshot, source: Path) -> None:
        """`packer init` on the exported tree before the first build of a template that requires
        plugins: once per template per run, however many definitions build from it."""
        key = (snapshot.tree, d.template)
        with self._init_lock:
            if key not in self._inits:
                with self._git:
                    plugins = required_plugins(
                        TreeIndex(self.ctx.repo, snapshot.tree), d, snapshot.commit
                    )
                try:
                    if plugins:
                        runner.init(d.template, source, plugins)
                    self._inits[key] = None
                except BuildError as exc:
                    self._inits[key] = exc
            failed = self._inits[key]
        if failed is not None:
            raise BuildError(str(failed))

    def _runner(self) -> PackerRunner:
        with self._shared:
            if self._packer is None:
                self._packer = self._packer_factory()
                if self._cancelled.is_set():
                    self._packer.interrupt()
            return self._packer


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ami-chain-bridge")
    except PackageNotFoundError:
        return "unknown"


def _repository(ctx: Context) -> str:
    """Where a statement says the commit is: the `origin` remote's URL (https, no user), else
    the catalog's ID, else the repository's path."""
    url = ownership.origin(ctx.repo)
    if not url:
        return ctx.settings.catalog_id or str(ctx.settings.repo_root)
    # A remote on this machine (a path) stays one; a host's is reached over https.
    return f"file://{url}" if url.startswith(("/", ".")) else f"https://{url}"


def _upstream(fp: Fingerprint) -> tuple[str, ...]:
    """The upstream images a root was built on: its tracked filters' picks, and what its
    template names outright (`source_ami`)."""
    return tuple(sorted({s.ami_id for s in fp.sources} | set(fp.fixed_sources)))
