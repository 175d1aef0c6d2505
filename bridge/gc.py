"""Retention (`ami-bridge gc`): deleting the bridge's old images, never one that is in use.

Look, decide, act, as resolves do:

- look (`look`): every image this account owns that carries the bridge's tags, in every region
  of the catalog, grouped into builds (a build and its regional copies share a build ID); and
  everything that may use an image: every launch template version, instances not terminated,
  Auto Scaling groups and launch configurations, the promotion channels' SSM parameters (the
  current value and recent history) and EC2's own DescribeImageReferences. A check that fails
  stops gc: an image whose use cannot be checked is never deleted.
- decide (`decide`, no I/O): keep or delete each build, with the reasons.
- act (`apply`): each build to delete is deleted under its build lock and lease (so never while
  the same fingerprint is being built), after looking and deciding again under them; every
  regional copy is deregistered and its snapshots deleted.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from bridge import model, registry
from bridge.aws import AwsClients, aws_call
from bridge.errors import AwsError, BridgeError, QueryError, RetentionError
from bridge.model import Build, Image
from bridge.settings import (
    DEFAULT_GC_CHANNEL_VERSIONS,
    DEFAULT_GC_KEEP,
    DEFAULT_GC_MIN_AGE_HOURS,
)
from bridge.survey import everywhere

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client

    from bridge.context import Context
    from bridge.guard import Guard
    from bridge.lease import Lease
    from bridge.result import ResolvedAmi

log = logging.getLogger(__name__)

Action = Literal["keep", "delete"]

DEFAULT_KEEP = DEFAULT_GC_KEEP
DEFAULT_MIN_AGE_HOURS = DEFAULT_GC_MIN_AGE_HOURS
DEFAULT_KEEP_CHANNEL_VERSIONS = DEFAULT_GC_CHANNEL_VERSIONS
# States of an image still being made: never deleted under the builder's feet.
IN_PROGRESS = frozenset({"pending", "transient"})
# Instances that can still start: every state but terminated.
LIVE_INSTANCE_STATES = ("pending", "running", "shutting-down", "stopping", "stopped")
# DescribeImageReferences: at most this many image IDs per call.
REFERENCE_BATCH = 100
_RESOLVE_SSM = re.compile(r"^resolve:ssm:(.+)$")


@dataclass(frozen=True)
class Policy:
    """What gc may delete: its options, checked (see `policy`)."""

    keep: int = DEFAULT_KEEP
    older_than_days: float | None = None
    min_age_hours: float = DEFAULT_MIN_AGE_HOURS
    keep_channel_versions: int = DEFAULT_KEEP_CHANNEL_VERSIONS
    # Only these definitions' builds may be deleted (None: every definition's).
    definitions: frozenset[str] | None = None


def policy(
    *,
    keep: str | None = None,
    older_than: str | None = None,
    min_age_hours: str | None = None,
    keep_channel_versions: str | None = None,
    definitions: Iterable[str] = (),
) -> Policy:
    """The gc options as given (strings, None when not given), checked: a QueryError names the
    option and what it takes."""
    chosen = tuple(definitions)
    return Policy(
        keep=_whole("--keep", keep, DEFAULT_KEEP, "builds to keep per definition"),
        older_than_days=None
        if older_than is None
        else _number("--older-than", older_than, "days: only older builds are deleted"),
        min_age_hours=DEFAULT_MIN_AGE_HOURS
        if min_age_hours is None
        else _number("--min-age-hours", min_age_hours, "hours: younger builds are kept"),
        keep_channel_versions=_whole(
            "--keep-channel-versions",
            keep_channel_versions,
            DEFAULT_KEEP_CHANNEL_VERSIONS,
            "versions of each channel parameter whose images are kept",
        ),
        definitions=frozenset(chosen) if chosen else None,
    )


def _whole(flag: str, raw: str | None, default: int, meaning: str) -> int:
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise QueryError(f"{flag} is {raw!r}; it takes a whole number, 0 or more: {meaning}.")
    return value


def _number(flag: str, raw: str, meaning: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise QueryError(f"{flag} is {raw!r}; it takes a number, 0 or more, of {meaning}.")
    return value


@dataclass(frozen=True)
class Verdict:
    """Keep or delete one build, and why."""

    build: Build
    action: Action
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class World:
    """What `look` saw: the bridge's builds, what uses images (AMI -> uses), leftover snapshots."""

    builds: tuple[Build, ...]
    uses: Mapping[str, tuple[str, ...]]
    # region -> snapshots of images gc deregistered, still to delete
    leftovers: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}))


# -- deciding (no I/O) ----------------------------------------------------------------------------


def builds_of(images: Iterable[Image], *, tag_key: str) -> tuple[Build, ...]:
    """The bridge's images (definition and fingerprint tags), grouped by definition and build ID
    (an image without a build ID is a build of its own)."""
    return model.builds_of(
        (i for i in images if i.tag(model.TAG_DEFINITION) and i.tag(tag_key)), tag_key=tag_key
    )


def decide(
    builds: Sequence[Build],
    *,
    current: Mapping[str, str],
    uses: Mapping[str, Sequence[str]],
    policy: Policy,
    now: datetime,
) -> list[Verdict]:
    """Keep or delete each build, newest first.

    `current`: AMI -> why it is current (the image a definition resolves to at the commit);
    `uses`: AMI -> what uses it (launch templates, instances, Auto Scaling, channels). A build is
    kept when any of its regional images is current or used, when it is still being made, younger
    than the minimum age or than --older-than, among the newest `keep` builds of its definition,
    of a definition not selected, or the parent of a kept build (transitively); every regional
    copy of a build goes with it.
    """
    reasons: dict[tuple[str, str], list[str]] = {b.key: [] for b in builds}
    by_ami = {ami: b for b in builds for ami in b.amis.values()}
    ranked: dict[str, list[Build]] = defaultdict(list)
    for b in sorted(builds, key=lambda b: (b.created, b.build_id), reverse=True):
        ranked[b.definition].append(b)
    min_age = timedelta(hours=policy.min_age_hours)
    for definition, newest_first in ranked.items():
        for rank, b in enumerate(newest_first):
            why = reasons[b.key]
            for region, ami in sorted(b.amis.items()):
                if ami in current:
                    why.append(current[ami])
                why.extend(f"{u} ({ami} in {region})" for u in uses.get(ami, ()))
            if any(i.state in IN_PROGRESS for i in b.images.values()):
                why.append("still being made")
            age = _age(b.created, now)
            if age < min_age:
                why.append(f"younger than {policy.min_age_hours:g}h (--min-age-hours)")
            if rank < policy.keep:
                why.append(f"one of the newest {policy.keep} builds of {definition} (--keep)")
            if policy.older_than_days is not None and age < timedelta(days=policy.older_than_days):
                why.append(f"younger than {policy.older_than_days:g} days (--older-than)")
            if policy.definitions is not None and definition not in policy.definitions:
                why.append("its definition is not selected (--definition)")
    # A kept build's parent build is kept in every region, and so on up the chain.
    todo = [b for b in builds if reasons[b.key]]
    while todo:
        child = todo.pop()
        for ami in sorted(child.parents):
            parent = by_ami.get(ami)
            if parent is None or parent.key == child.key:
                continue
            why = reasons[parent.key]
            newly = not why
            why.append(f"the parent of the kept {child.definition} build {child.build_id}")
            if newly:
                todo.append(parent)
    verdicts = []
    for b in sorted(builds, key=lambda b: (b.created, b.build_id), reverse=True):
        why = reasons[b.key]
        if why:
            verdicts.append(Verdict(b, "keep", tuple(dict.fromkeys(why))))
        else:
            verdicts.append(Verdict(b, "delete", (_deletable(b, policy, now),)))
    return verdicts


def _deletable(b: Build, policy: Policy, now: datetime) -> str:
    why = f"not current, used by nothing, {_span(_age(b.created, now))} old"
    if policy.keep:
        why += f", not one of the newest {policy.keep} builds of {b.definition}"
    return why


def _age(created: str, now: datetime) -> timedelta:
    when = model.parse_time(created)
    if when is None:
        return timedelta(0)  # an unreadable date counts as new: kept
    return now - when


def _span(age: timedelta) -> str:
    hours = int(age.total_seconds() // 3600)
    if hours >= 48:
        return f"{hours // 24}d{hours % 24}h"
    if hours >= 1:
        return f"{hours}h"
    return f"{max(int(age.total_seconds() // 60), 0)}m"


# -- looking --------------------------------------------------------------------------------------


@contextmanager
def _check(what: str, region: str, permission: str) -> Iterator[None]:
    """A reference check: its failure stops gc (an image it cannot check is never deleted)."""
    try:
        with aws_call(f"{what} in {region}", permission):
            yield
    except AwsError as exc:
        raise RetentionError(
            f"gc cannot tell which images are in use: {what} in {region} ({permission}) "
            f"failed. {exc} So gc deletes nothing it has not "
            "checked (nothing at all when this happens before the first deletion): an image "
            "whose use cannot be checked may still be in use. Fix the cause and run gc again."
        ) from None


def look(
    clients: AwsClients,
    regions: Sequence[str],
    *,
    tag_key: str,
    channel_prefix: str,
    keep_channel_versions: int,
) -> World:
    """The bridge's builds in `regions`, and every use of an image there."""
    images: list[Image] = []
    uses: dict[str, list[str]] = defaultdict(list)
    leftovers: dict[str, tuple[str, ...]] = {}
    for region in regions:
        ec2 = clients.ec2(region)
        found = _own_images(ec2, region)
        ours = [i for i in found if i.tag(model.TAG_DEFINITION) and i.tag(tag_key)]
        images += ours
        templates = _launch_templates(ec2, region, uses)
        _instances(ec2, region, uses)
        _auto_scaling(clients.autoscaling(region), region, templates, uses)
        ssm = clients.ssm(region)
        _channels(ssm, region, channel_prefix, keep_channel_versions, uses)
        _ssm_launch_references(ssm, region, templates, uses)
        _image_references(ec2, region, [i.ami_id for i in ours], uses)
        leftovers[region] = _leftover_snapshots(ec2, region)
    return World(
        builds_of(images, tag_key=tag_key),
        MappingProxyType({ami: tuple(dict.fromkeys(u)) for ami, u in uses.items()}),
        MappingProxyType({r: s for r, s in leftovers.items() if s}),
    )


def _own_images(ec2: EC2Client, region: str) -> list[Image]:
    """Every image this account owns that carries the bridge's definition tag."""
    found: list[Image] = []
    token: str | None = None
    while True:
        with _check("listing this account's images", region, "ec2:DescribeImages"):
            page = ec2.describe_images(
                Owners=["self"],
                Filters=[{"Name": "tag-key", "Values": [model.TAG_DEFINITION]}],
                **({"NextToken": token} if token else {}),  # type: ignore[arg-type]
            )
        found += [registry.parse_image(raw, region) for raw in page.get("Images", [])]
        token = page.get("NextToken")
        if not token:
            return found


@dataclass(frozen=True)
class _Template:
    id: str
    name: str
    default: int
    latest: int
    # version -> its image (as written: an AMI ID or resolve:ssm:...)
    images: Mapping[int, str]


def _launch_templates(
    ec2: EC2Client, region: str, uses: dict[str, list[str]]
) -> dict[str, _Template]:
    """Every version of every launch template (not only the default): launch template ID ->."""
    templates: dict[str, _Template] = {}
    token: str | None = None
    while True:
        with _check("listing launch templates", region, "ec2:DescribeLaunchTemplates"):
            page = ec2.describe_launch_templates(
                MaxResults=200,
                **({"NextToken": token} if token else {}),  # type: ignore[arg-type]
            )
        for raw in page.get("LaunchTemplates", []):
            t = _versions(ec2, region, raw)
            templates[t.id] = t
            for version, image in sorted(t.images.items()):
                uses[image].append(f"launch template {t.name} ({t.id}) version {version}")
        token = page.get("NextToken")
        if not token:
            return templates


def _versions(ec2: EC2Client, region: str, raw: Mapping[str, Any]) -> _Template:
    template_id = str(raw["LaunchTemplateId"])
    latest = int(raw.get("LatestVersionNumber", 1))
    images: dict[int, str] = {}
    # Asked for by version range, so each page is complete whether or not the endpoint pages.
    for low in range(1, latest + 1, 200):
        high = min(low + 199, latest)
        token: str | None = None
        while True:
            with _check(
                f"reading the versions of launch template {template_id}",
                region,
                "ec2:DescribeLaunchTemplateVersions",
            ):
                page = ec2.describe_launch_template_versions(
                    LaunchTemplateId=template_id,
                    MinVersion=str(low),
                    MaxVersion=str(high),
                    MaxResults=200,
                    **({"NextToken": token} if token else {}),  # type: ignore[arg-type]
                )
            for version in page.get("LaunchTemplateVersions", []):
                image = version.get("LaunchTemplateData", {}).get("ImageId")
                if image:
                    images[int(version["VersionNumber"])] = str(image)
            token = page.get("NextToken")
            if not token:
                break
    return _Template(
        template_id,
        str(raw.get("LaunchTemplateName", template_id)),
        int(raw.get("DefaultVersionNumber", 1)),
        latest,
        MappingProxyType(images),
    )


def _instances(ec2: EC2Client, region: str, uses: dict[str, list[str]]) -> None:
    token: str | None = None
    while True:
        with _check("listing instances", region, "ec2:DescribeInstances"):
            page = ec2.describe_instances(
                Filters=[{"Name": "instance-state-name", "Values": list(LIVE_INSTANCE_STATES)}],
                MaxResults=1000,
                **({"NextToken": token} if token else {}),  # type: ignore[arg-type]
            )
        for reservation in page.get("Reservations", []):
            for instance in reservation.get("Instances", []):
                state = instance.get("State", {}).get("Name", "?")
                if state == "terminated":
                    continue
                image = instance.get("ImageId")
                if image:
                    uses[image].append(f"instance {instance['InstanceId']} ({state})")
        token = page.get("NextToken")
        if not token:
            return


def _auto_scaling(
    autoscaling: Any,
    region: str,
    templates: Mapping[str, _Template],
    uses: dict[str, list[str]],
) -> None:
    """Auto Scaling groups' launch templates (named) and every launch configuration."""
    by_name = {t.name: t for t in templates.values()}
    token: str | None = None
    while True:
        with _check("listing Auto Scaling groups", region, "autoscaling:DescribeAutoScalingGroups"):
            page = autoscaling.describe_auto_scaling_groups(
                MaxRecords=100, **({"NextToken": token} if token else {})
            )
        for group in page.get("AutoScalingGroups", []):
            name = group.get("AutoScalingGroupName", "?")
            specs = [group.get("LaunchTemplate")]
            mixed = group.get("MixedInstancesPolicy", {}).get("LaunchTemplate", {})
            specs.append(mixed.get("LaunchTemplateSpecification"))
            specs += [o.get("LaunchTemplateSpecification") for o in mixed.get("Overrides", [])]
            for spec in specs:
                if not spec:
                    continue
                template = templates.get(spec.get("LaunchTemplateId", "")) or by_name.get(
                    spec.get("LaunchTemplateName", "")
                )
                if template is None:
                    raise RetentionError(
                        f"The Auto Scaling group {name} in {region} uses the launch template "
                        f"{spec.get('LaunchTemplateId') or spec.get('LaunchTemplateName')}, "
                        "which DescribeLaunchTemplates did not list, so gc cannot tell which "
                        "image it launches and deletes nothing. Check the group's launch "
                        "template, then run gc again."
                    )
                wanted = str(spec.get("Version") or "$Default")
                version = {"$Latest": template.latest, "$Default": template.default}.get(wanted)
                if version is None and not wanted.isdigit():
                    raise RetentionError(
                        f"The Auto Scaling group {name} in {region} names version {wanted!r} of "
                        f"the launch template {template.name}, which gc cannot read, so it "
                        "deletes nothing. Check the group's launch template version, then run gc "
                        "again."
                    )
                number = version if version is not None else int(wanted)
                image = template.images.get(number)
                if image:
                    uses[image].append(
                        f"auto scaling group {name} (launch template {template.name} "
                        f"version {number})"
                    )
            if group.get("LaunchConfigurationName"):
                uses["lc:" + group["LaunchConfigurationName"]].append(f"auto scaling group {name}")
        token = page.get("NextToken")
        if not token:
            break
    token = None
    while True:
        with _check(
            "listing launch configurations", region, "autoscaling:DescribeLaunchConfigurations"
        ):
            page = autoscaling.describe_launch_configurations(
                MaxRecords=100, **({"NextToken": token} if token else {})
            )
        for config in page.get("LaunchConfigurations", []):
            name = config.get("LaunchConfigurationName", "?")
            groups = uses.pop("lc:" + name, [])
            image = config.get("ImageId")
            if image:
                uses[image].append(
                    f"launch configuration {name}" + (f" of {', '.join(groups)}" if groups else "")
                )
        token = page.get("NextToken")
        if not token:
            break
    missing = sorted(k[3:] for k in uses if k.startswith("lc:"))
    if missing:
        raise RetentionError(
            f"Auto Scaling groups in {region} use the launch configurations "
            f"{', '.join(missing)}, which DescribeLaunchConfigurations did not list, so gc "
            "cannot tell which images they launch and deletes nothing. Run gc again; if it "
            "persists, check those groups."
        )


def _channels(ssm: Any, region: str, prefix: str, keep: int, uses: dict[str, list[str]]) -> None:
    """The promotion channels (channels.py): each parameter's current value and its `keep`
    newest versions."""
    path = "/" + prefix.strip("/")  # every /<prefix>/<definition>/<channel> (channels.py)
    token: str | None = None
    names: list[str] = []
    while True:
        with _check(f"listing the channels under {path}", region, "ssm:GetParametersByPath"):
            page = ssm.get_parameters_by_path(
                Path=path, Recursive=True, MaxResults=10, **({"NextToken": token} if token else {})
            )
        names += [p["Name"] for p in page.get("Parameters", [])]
        token = page.get("NextToken")
        if not token:
            break
    for name in sorted(set(names)):
        history: list[Mapping[str, Any]] = []
        token = None
        while True:
            with _check(f"reading the history of {name}", region, "ssm:GetParameterHistory"):
                page = ssm.get_parameter_history(
                    Name=name, MaxResults=50, **({"NextToken": token} if token else {})
                )
            history += page.get("Parameters", [])
            token = page.get("NextToken")
            if not token:
                break
        newest = sorted(history, key=lambda p: int(p.get("Version", 0)), reverse=True)
        for rank, version in enumerate(newest):
            if rank == 0 or rank < keep:
                what = "current value" if rank == 0 else f"version {version.get('Version')}"
                uses[str(version.get("Value", ""))].append(f"channel {name} {what}")


def _ssm_launch_references(
    ssm: Any, region: str, templates: Mapping[str, _Template], uses: dict[str, list[str]]
) -> None:
    """Launch template versions whose image is `resolve:ssm:NAME[:VERSION|:LABEL]`: the image
    that parameter (version) holds now."""
    for template in templates.values():
        for version, image in sorted(template.images.items()):
            match = _RESOLVE_SSM.match(image)
            if match is None:
                continue
            with _check(
                f"reading {match[1]} (launch template {template.id} version {version})",
                region,
                "ssm:GetParameter",
            ):
                value = ssm.get_parameter(Name=match[1])["Parameter"]["Value"]
            uses[str(value)].append(
                f"launch template {template.name} ({template.id}) version {version} "
                f"through {match[1]}"
            )


def _image_references(
    ec2: EC2Client, region: str, amis: Sequence[str], uses: dict[str, list[str]]
) -> None:
    """EC2's own view (DescribeImageReferences): also Image Builder recipes."""
    resource_types: list[Any] = [
        {
            "ResourceType": "ec2:Instance",
            "ResourceTypeOptions": [
                {"OptionName": "state-name", "OptionValues": list(LIVE_INSTANCE_STATES)}
            ],
        },
        {
            "ResourceType": "ec2:LaunchTemplate",
            "ResourceTypeOptions": [{"OptionName": "version-depth", "OptionValues": ["10000"]}],
        },
        {"ResourceType": "ssm:Parameter"},
        {"ResourceType": "imagebuilder:ImageRecipe"},
        {"ResourceType": "imagebuilder:ContainerRecipe"},
    ]
    wanted = sorted(set(amis))
    for start in range(0, len(wanted), REFERENCE_BATCH):
        batch = wanted[start : start + REFERENCE_BATCH]
        token: str | None = None
        while True:
            with _check("asking EC2 for image references", region, "ec2:DescribeImageReferences"):
                page = ec2.describe_image_references(
                    ImageIds=batch,
                    ResourceTypes=resource_types,
                    MaxResults=1000,
                    **({"NextToken": token} if token else {}),  # type: ignore[arg-type]
                )
            for ref in page.get("ImageReferences", []):
                uses[str(ref.get("ImageId", ""))].append(
                    f"{ref.get('ResourceType')} {ref.get('Arn')} (DescribeImageReferences)"
                )
            token = page.get("NextToken")
            if not token:
                break


def _leftover_snapshots(ec2: EC2Client, region: str) -> tuple[str, ...]:
    """Snapshots of images gc deregistered (TAG_GC) whose deletion did not happen: their image is
    gone (asked by ID, whatever its tags)."""
    marked: dict[str, str] = {}
    token: str | None = None
    while True:
        with _check("listing snapshots gc left", region, "ec2:DescribeSnapshots"):
            page = ec2.describe_snapshots(
                OwnerIds=["self"],
                Filters=[{"Name": "tag-key", "Values": [model.TAG_GC]}],
                **({"NextToken": token} if token else {}),  # type: ignore[arg-type]
            )
        for snapshot in page.get("Snapshots", []):
            tags = {t["Key"]: t["Value"] for t in snapshot.get("Tags", [])}
            marked[snapshot["SnapshotId"]] = tags.get(model.TAG_GC, "")
        token = page.get("NextToken")
        if not token:
            break
    amis = sorted(set(marked.values()) - {""})
    registered: set[str] = set()
    for start in range(0, len(amis), registry.FILTER_BATCH):
        with _check("looking up the images of marked snapshots", region, "ec2:DescribeImages"):
            page_images = ec2.describe_images(
                Owners=["self"],
                Filters=[
                    {"Name": "image-id", "Values": amis[start : start + registry.FILTER_BATCH]}
                ],
            )
        registered |= {
            i["ImageId"] for i in page_images.get("Images", []) if i.get("State") != "deregistered"
        }
    return tuple(sorted(s for s, ami in marked.items() if ami and ami not in registered))


# -- acting ---------------------------------------------------------------------------------------


# keep / delete: decided (a dry run); deleted: done; gone: deleted meanwhile by someone else.
Done = Literal["keep", "delete", "deleted", "gone"]


@dataclass(frozen=True)
class Outcome:
    """One build: what was decided, and what became of it."""

    verdict: Verdict
    done: Done


def planned(verdicts: Sequence[Verdict]) -> list[Outcome]:
    """A dry run's outcomes: the decisions as they are."""
    return [Outcome(v, v.action) for v in verdicts]


def apply(
    verdicts: Sequence[Verdict],
    *,
    leftovers: Mapping[str, Sequence[str]],
    clients: AwsClients,
    exclusive: Callable[[str, str, Callable[[Lease | None], Outcome]], Outcome],
    again: Callable[[], list[Verdict]],
) -> list[Outcome]:
    """Delete each build `verdicts` decide to delete, newest first (children before parents).

    Each under `exclusive(definition, fingerprint, action)` (its build lock and lease); under it,
    `again()` looks and decides afresh, and only a build still to delete, with the images it
    has now, is deleted.
    """
    for region, snapshots in sorted(leftovers.items()):
        ec2 = clients.ec2(region)
        for snapshot in snapshots:
            _delete_snapshot(ec2, region, snapshot)
    outcomes: list[Outcome] = []
    for verdict in verdicts:
        if verdict.action != "delete":
            outcomes.append(Outcome(verdict, "keep"))
            continue

        def act(lease: Lease | None, verdict: Verdict = verdict) -> Outcome:
            fresh = {v.build.key: v for v in again()}.get(verdict.build.key)
            if fresh is None:
                log.info("%s build %s is gone already", *verdict.build.key)
                return Outcome(verdict, "gone")
            if fresh.action != "delete":
                log.warning(
                    "%s build %s is kept after all: %s",
                    *verdict.build.key,
                    "; ".join(fresh.reasons),
                )
                return Outcome(fresh, "keep")
            delete_build(clients, fresh.build)
            return Outcome(fresh, "deleted")

        b = verdict.build
        try:
            outcomes.append(exclusive(b.definition, b.fingerprint, act))
        except BridgeError as exc:
            done = [" build ".join(o.verdict.build.key) for o in outcomes if o.done == "deleted"]
            if not done:
                raise
            raise type(exc)(
                f"{exc} Before that, gc deleted {len(done)} builds ({', '.join(done)}); "
                "running it again finishes the rest."
            ) from None
    return outcomes


def delete_build(clients: AwsClients, build: Build) -> None:
    """Deregister every regional image of `build` and delete its snapshots."""
    for image in build.images.values():
        ec2 = clients.ec2(image.region)
        if image.snapshot_ids:
            # Marked first: a run cut short after deregistering still finds them (TAG_GC).
            with aws_call(f"marking the snapshots of {image.ami_id}", "ec2:CreateTags"):
                ec2.create_tags(
                    Resources=list(image.snapshot_ids),
                    Tags=[{"Key": model.TAG_GC, "Value": image.ami_id}],
                )
        _deregister(ec2, image)
        for snapshot in image.snapshot_ids:
            _delete_snapshot(ec2, image.region, snapshot)
        log.info(
            "deleted %s build %s in %s: %s",
            build.definition,
            build.build_id,
            image.region,
            image.ami_id,
        )


def _deregister(ec2: EC2Client, image: Image) -> None:
    from botocore.exceptions import ClientError

    with aws_call(f"deregistering {image.ami_id} in {image.region}", "ec2:DeregisterImage"):
        try:
            ec2.deregister_image(ImageId=image.ami_id)
        except ClientError as exc:
            # Gone already (a retry whose first response was lost, or another gc).
            if exc.response.get("Error", {}).get("Code") not in {
                "InvalidAMIID.NotFound",
                "InvalidAMIID.Unavailable",
            }:
                raise


def _delete_snapshot(ec2: EC2Client, region: str, snapshot: str) -> None:
    from botocore.exceptions import ClientError

    with aws_call(f"deleting the snapshot {snapshot} in {region}", "ec2:DeleteSnapshot"):
        try:
            ec2.delete_snapshot(SnapshotId=snapshot)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code == "InvalidSnapshot.InUse":
                # Another image is registered from it: it stays with that image.
                log.warning("%s in %s is used by another image; kept", snapshot, region)
            elif code != "InvalidSnapshot.NotFound":
                raise


# -- reporting ------------------------------------------------------------------------------------


def rows(outcomes: Sequence[Outcome], *, now: datetime) -> list[dict[str, Any]]:
    """One plain record per build, for the table and --json."""
    records = []
    for outcome in outcomes:
        v, b = outcome.verdict, outcome.verdict.build
        records.append(
            {
                "definition": b.definition,
                "fingerprint": b.fingerprint,
                "build_id": b.build_id,
                "created": b.created,
                "age": _span(_age(b.created, now)),
                "images": dict(sorted(b.amis.items())),
                "snapshots": {i.region: list(i.snapshot_ids) for i in b.images.values()},
                "action": outcome.done,
                "reasons": list(v.reasons),
            }
        )
    return records


def table(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """The records as a table: one line per build, its first image and every region."""
    lines = [("IMAGE", "DEFINITION", "FINGERPRINT", "BUILD", "AGE", "REGIONS", "VERDICT")]
    for r in records:
        images: Mapping[str, str] = r["images"]
        lines.append(
            (
                next(iter(images.values()), "-"),
                r["definition"],
                r["fingerprint"][:12],
                r["build_id"],
                r["age"],
                " ".join(images),
                f"{r['action']}: {'; '.join(r['reasons'])}",
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return [
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines
    ]


# -- the command ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Report:
    """What gc decided (and with --apply, did)."""

    outcomes: tuple[Outcome, ...]
    leftovers: Mapping[str, tuple[str, ...]]
    applied: bool

    def to_dict(self, now: datetime) -> dict[str, Any]:
        return {
            "applied": self.applied,
            "builds": rows(self.outcomes, now=now),
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
    world = look(
        ctx.clients,
        everywhere(ctx.catalog, ctx.settings),
        tag_key=ctx.settings.tag_key,
        channel_prefix=ctx.catalog.channel_prefix,
        keep_channel_versions=retention.keep_channel_versions,
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
    clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
) -> Report:
    """gc: decide, and with `delete`, delete what it decided (each build re-checked under its
    lease). `current`: what every definition resolves to at the commit, asked again before
    deleting."""
    verdicts, world = survey(ctx, retention, current=current, now=clock())
    if not delete:
        return Report(tuple(planned(verdicts)), world.leftovers, applied=False)
    outcomes = apply(
        verdicts,
        leftovers=world.leftovers,
        clients=ctx.clients,
        exclusive=lambda definition, fp, action: guard.once(definition, fp, action),
        again=lambda: survey(ctx, retention, current=current, now=clock())[0],
    )
    return Report(tuple(outcomes), MappingProxyType({}), applied=True)
