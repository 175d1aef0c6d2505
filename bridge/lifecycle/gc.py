"""Retention (`ami-bridge gc`): deleting the bridge's old images, never one that is in use.

Look, decide, act, as resolves do:

- look (`survey`, with `references.scan`): every image this account owns that carries the
  bridge's tags, in every region of the catalog, grouped into builds (a build and its regional
  copies share a build ID); and everything that may use an image. A check that fails stops gc:
  an image whose use cannot be checked is never deleted.
- decide (`retention.decide`, no I/O): keep or delete each build, with the reasons.
- act (`apply`): each build to delete is deleted under its build lock and lease (so never while
  the same fingerprint is being built), after looking and deciding again under them; every
  regional copy is deregistered and its snapshots deleted. What became of each build is its
  `Fate`; `rows` and `table` show them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from bridge import model
from bridge.aws import registry
from bridge.aws.clients import AwsClients
from bridge.errors import BridgeError
from bridge.lifecycle.archive import archive
from bridge.lifecycle.recovery import Recovery, look, require
from bridge.lifecycle.references import regions_holding, scan
from bridge.lifecycle.retention import Policy, Verdict, World, decide, how_old
from bridge.model import Build
from bridge.pipeline.survey import everywhere

if TYPE_CHECKING:
    from bridge.aws.lease import Lease
    from bridge.context import Context
    from bridge.pipeline.guard import Guard
    from bridge.pipeline.result import ResolvedAmi

log = logging.getLogger(__name__)

# -- acting ---------------------------------------------------------------------------------------


# keep / delete / deprecate / disable / archive / reinstate: decided (a dry run); deleted,
# deprecated, disabled, archived, reinstated: done (deprecated and disabled: steps of a shared
# build's retirement; archived: a rollback build's snapshots; reinstated: a retiring build back in
# use); gone: deleted meanwhile by someone else.
Done = Literal[
    "keep",
    "delete",
    "deprecate",
    "disable",
    "archive",
    "reinstate",
    "deleted",
    "deprecated",
    "disabled",
    "archived",
    "reinstated",
    "gone",
]


@dataclass(frozen=True)
class Fate:
    """One build: what was decided, and what became of it."""

    verdict: Verdict
    done: Done


def planned(verdicts: Sequence[Verdict]) -> list[Fate]:
    """A dry run's fates: the decisions as they are."""
    return [Fate(v, v.action) for v in verdicts]


def apply(
    verdicts: Sequence[Verdict],
    *,
    leftovers: Mapping[str, Sequence[str]],
    clients: AwsClients,
    exclusive: Callable[[str, str, Callable[[Lease | None], Fate]], Fate],
    again: Callable[[], list[Verdict]],
) -> list[Fate]:
    """Delete each build `verdicts` decide to delete, newest first (children before parents).

    Each under `exclusive(definition, fingerprint, action)` (its build lock and lease); under it,
    `again()` looks and decides afresh, and only a build still to delete, with the images it
    has now, is deleted.
    """
    for region, snapshots in sorted(leftovers.items()):
        ec2 = clients.ec2(region)
        for snapshot in snapshots:
            registry.delete_snapshot(ec2, region, snapshot)
    fates: list[Fate] = []
    for verdict in verdicts:
        if verdict.action == "keep":
            fates.append(Fate(verdict, "keep"))
            continue

        def act(lease: Lease | None, verdict: Verdict = verdict) -> Fate:
            fresh = {v.build.key: v for v in again()}.get(verdict.build.key)
            if fresh is None:
                log.info("%s build %s is gone already", *verdict.build.key)
                return Fate(verdict, "gone")
            if fresh.action == "keep":
                log.warning(
                    "%s build %s is kept after all: %s",
                    *verdict.build.key,
                    "; ".join(fresh.reasons),
                )
                return Fate(fresh, "keep")
            if fresh.action == "deprecate":
                retire(clients, fresh.build, "deprecated")
                return Fate(fresh, "deprecated")
            if fresh.action == "disable":
                retire(clients, fresh.build, "disabled")
                return Fate(fresh, "disabled")
            if fresh.action == "archive":
                archive(clients, fresh.build)
                return Fate(fresh, "archived")
            if fresh.action == "reinstate":
                reinstate(clients, fresh.build)
                return Fate(fresh, "reinstated")
            delete_build(clients, fresh.build)
            return Fate(fresh, "deleted")

        b = verdict.build
        try:
            fates.append(exclusive(b.definition, b.fingerprint, act))
        except BridgeError as exc:
            done = [" build ".join(f.verdict.build.key) for f in fates if f.done == "deleted"]
            if not done:
                raise
            raise type(exc)(
                f"{exc} Before that, gc deleted {len(done)} builds ({', '.join(done)}); "
                "running it again finishes the rest."
            ) from None
    return fates


def retire(clients: AwsClients, build: Build, stage: Literal["deprecated", "disabled"]) -> None:
    """A step of a shared build's retirement, in every region, recorded in TAG_RETIRING:
    deprecated (other accounts see it going), or disabled (nobody can launch it; EC2 drops its
    launch permissions, which the shared tag then says)."""
    from bridge.aws import registry, share
    from bridge.lifecycle.revoke import deprecate_at

    now = datetime.now(timezone.utc)
    for image in build.images.values():
        ec2 = clients.ec2(image.region)
        if stage == "deprecated":
            registry.deprecate(ec2, image, deprecate_at(now, datetime.now(timezone.utc)))
            registry.tag_image(
                ec2, image, {model.TAG_RETIRING: f"deprecated {model.timestamp(now)}"}
            )
        else:
            registry.tag_image(
                ec2,
                image,
                {model.TAG_RETIRING: f"disabled {model.timestamp(now)}", model.TAG_SHARED: ""},
            )
            if image.state != "disabled":
                registry.disable(ec2, image)
            share.withdraw_snapshots(ec2, image)
        log.info("%s build %s in %s: %s", build.definition, build.build_id, image.region, stage)


def reinstate(clients: AwsClients, build: Build) -> None:
    """Undo the first step of a retirement (deprecated) for a build back in use: its deprecation
    time cleared and TAG_RETIRING removed, in every region."""
    from bridge.aws import registry

    for image in build.images.values():
        ec2 = clients.ec2(image.region)
        registry.deprecate(ec2, image, None)
        registry.untag_image(ec2, image, [model.TAG_RETIRING])
        log.info("%s build %s in %s: back in use", build.definition, build.build_id, image.region)


def delete_build(clients: AwsClients, build: Build) -> None:
    """Deregister every regional image of `build` and delete its snapshots."""
    for image in build.images.values():
        registry.delete_image(clients.ec2(image.region), image)
        log.info(
            "deleted %s build %s in %s: %s",
            build.definition,
            build.build_id,
            image.region,
            image.ami_id,
        )


# -- reporting ------------------------------------------------------------------------------------


def rows(
    fates: Sequence[Fate], *, now: datetime, recovery: Recovery | None = None
) -> list[dict[str, Any]]:
    """One plain record per build, for the table and --json; a build to delete says whether the
    Recycle Bin would keep it (`recovery`)."""
    records = []
    for fate in fates:
        v, b = fate.verdict, fate.verdict.build
        records.append(
            {
                "definition": b.definition,
                "fingerprint": b.fingerprint,
                "build_id": b.build_id,
                "created": b.created,
                "age": how_old(b.created, now),
                "images": dict(sorted(b.amis.items())),
                "snapshots": {i.region: list(i.snapshot_ids) for i in b.images.values()},
                "action": fate.done,
                "reasons": list(v.reasons),
                **(
                    {"recovery": recovery.says(b.key)}
                    if recovery is not None and b.key in recovery.builds
                    else {}
                ),
            }
        )
    return records


# -- the command ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Report:
    """What gc decided (and with --apply, did)."""

    fates: tuple[Fate, ...]
    leftovers: Mapping[str, tuple[str, ...]]
    applied: bool
    # Whether the Recycle Bin keeps what gc deletes (or, in a dry run, would delete).
    recovery: Recovery

    def rows(self, now: datetime) -> list[dict[str, Any]]:
        return rows(self.fates, now=now, recovery=self.recovery)

    def to_dict(self, now: datetime) -> dict[str, Any]:
        return {
            "applied": self.applied,
            "builds": self.rows(now),
            "leftover_snapshots": {r: list(s) for r, s in sorted(self.leftovers.items())},
        }


def current_images(results: Mapping[str, ResolvedAmi]) -> dict[str, str]:
    """AMI -> why it is current: the image each definition resolves to at the commit, in each of
    its regions (`results`: the resolver's own decision, as `status` shows it)."""
    return {
        ami: f"the current image of {name} at {r.commit[:12]}"
        for name, r in results.items()
        for ami in r.amis.values()
    }


def survey(
    ctx: Context,
    retention: Policy,
    *,
    current: Callable[[], Mapping[str, ResolvedAmi]],
    now: datetime,
) -> tuple[list[Verdict], World]:
    """Look (the current images, the bridge's builds, every use) and decide."""
    for name in sorted(retention.definitions or ()):
        ctx.catalog.get(name)  # an unknown name is an error naming the known ones
    world = scan(
        ctx.clients,
        regions_holding(
            ctx.clients,
            everywhere(ctx.catalog, ctx.settings),
            ctx.settings.catalog_id,
            asked_in=ctx.settings.region,
        ),
        tag_key=ctx.settings.tag_key,
        channel_prefix=ctx.catalog.channel_prefix,
        keep_channel_versions=retention.keep_channel_versions,
        catalog=ctx.settings.catalog_id,
        launched_since=now - timedelta(days=retention.launched_within_days),
    )
    verdicts = decide(
        world.builds, current=current_images(current()), uses=world.uses, policy=retention, now=now
    )
    return verdicts, world


def run(
    ctx: Context,
    retention: Policy,
    *,
    current: Callable[[], Mapping[str, ResolvedAmi]],
    guard: Guard,
    delete: bool,
    unrecoverable: bool = False,
    clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
) -> Report:
    """gc: decide, and with `delete`, delete what it decided (each build re-checked under its
    lease). `current`: what every definition resolves to at the commit, asked again before
    deleting. Deleting what the Recycle Bin would not keep is refused, before anything is
    deleted, unless `unrecoverable` (or the catalog's `require_recycle_bin: false`)."""
    verdicts, world = survey(ctx, retention, current=current, now=clock())
    recovery = look(
        ctx.clients, [v.build for v in verdicts if v.action == "delete"], world.leftovers
    )
    if not delete:
        return Report(tuple(planned(verdicts)), world.leftovers, applied=False, recovery=recovery)
    require(recovery, unrecoverable=unrecoverable or not ctx.catalog.require_recycle_bin)
    fates = apply(
        verdicts,
        leftovers=world.leftovers,
        clients=ctx.clients,
        exclusive=lambda definition, fp, action: guard.once(definition, fp, action),
        again=lambda: survey(ctx, retention, current=current, now=clock())[0],
    )
    return Report(tuple(fates), MappingProxyType({}), applied=True, recovery=recovery)
