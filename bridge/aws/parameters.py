"""Promotion channels in SSM: named pointers to images, kept as parameters (AWS's own primitive).

A channel of a definition is the parameter `/<prefix>/<definition>/<channel>` (DataType
`aws:ec2:image`) in every region of the definition; its value is the image's AMI in that region,
and its description names the build (`DESCRIPTION`), so any reader can tell which build a value
is. Parameter versions are the channel's history: a promotion or a rollback is a new version.
This module reads and writes them; which build a promotion names is lifecycle/channels.py's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from bridge import model, ownership
from bridge.aws import registry
from bridge.aws.clients import AwsClients, aws_call
from bridge.aws.fanout import each_region
from bridge.errors import QueryError
from bridge.model import Build

# A channel's name: what people call stages (dev, staging, prod).
CHANNEL_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")


DESCRIPTION = "ami-chain {definition} build {build_id} fingerprint {fingerprint}"


_DESCRIBED = re.compile(r"^ami-chain (\S+) build (\S+) fingerprint (\S+)$")


@dataclass(frozen=True)
class Version:
    """One version of a channel's parameter in one region."""

    version: int
    modified: str
    ami_id: str
    # From the description: "" for a value the bridge did not write.
    build_id: str
    fingerprint: str


def parameter_name(prefix: str, definition: str, channel: str) -> str:
    """The SSM parameter that holds `definition`'s `channel`."""
    return f"/{prefix.strip('/')}/{definition}/{channel}"


def described(description: str) -> tuple[str, str, str] | None:
    """(definition, build ID, fingerprint) from a channel parameter's description, or None."""
    match = _DESCRIBED.match(description or "")
    return (match[1], match[2], match[3]) if match else None


def check_channel(channel: str) -> str:
    """`channel`, when it is a valid channel name."""
    if not CHANNEL_NAME.match(channel):
        raise QueryError(
            f"{channel!r} is not a channel name: use lowercase letters, digits, - and _, "
            "starting with a letter (dev, staging, prod)."
        )
    return channel


@dataclass(frozen=True)
class Promotion:
    """Where a promotion (or rollback) left a channel."""

    # region -> the parameter's version holding the build
    versions: Mapping[str, int]
    # The regions whose channel held the build already: no new version was written.
    unchanged: frozenset[str] = frozenset()


def promote(clients: AwsClients, prefix: str, build: Build, channel: str) -> Promotion:
    """Point `channel` at `build` in each of its regions. A region whose channel holds the
    build's image already keeps its version: promoting twice is one promotion."""
    from botocore.exceptions import ClientError

    name = parameter_name(prefix, build.definition, check_channel(channel))
    description = DESCRIPTION.format(
        definition=build.definition, build_id=build.build_id, fingerprint=build.fingerprint
    )

    def held(region: str) -> Mapping[str, Any] | None:
        """The region's parameter as it is, or None."""
        ssm = clients.ssm(region)
        with aws_call(f"reading {name} in {region}", "ssm:GetParameter"):
            try:
                return dict(ssm.get_parameter(Name=name)["Parameter"])
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "ParameterNotFound":
                    raise
                return None

    def point(region: str, before: Mapping[str, Any] | None) -> tuple[int, bool]:
        """The region's parameter at the build's image: (its version, whether it held it)."""
        image = build.images[region]
        if before is not None and before["Value"] == image.ami_id:
            return int(before["Version"]), True
        with aws_call(f"writing {name} in {region}", "ssm:PutParameter"):
            response = clients.ssm(region).put_parameter(
                Name=name,
                Value=image.ami_id,
                Type="String",
                DataType="aws:ec2:image",
                Description=description,
                Overwrite=True,
            )
        return int(response["Version"]), False

    # Every region at once: first what each holds (another catalog's image there is refused
    # before anything is written), then the writes.
    regions = sorted(build.images)
    before = each_region(regions, held)
    _check_same_catalog(clients, name, build, before)
    pointed = each_region(regions, lambda region: point(region, before[region]))
    versions = {region: version for region, (version, _) in pointed.items()}
    unchanged = {region for region, (_, held) in pointed.items() if held}
    return Promotion(versions, frozenset(unchanged))


def _check_same_catalog(
    clients: AwsClients,
    name: str,
    build: Build,
    before: Mapping[str, Mapping[str, Any] | None],
) -> None:
    """Refuse to point a channel that holds another catalog's image at this one: two catalogs
    whose channels share a prefix would overwrite each other's promotions and rollbacks."""
    for region, held in sorted(before.items()):
        catalog = build.images[region].tag(model.TAG_CATALOG) or ""
        if held is None or held["Value"] == build.images[region].ami_id or not catalog:
            continue
        image = registry.image_by_id(clients.ec2(region), region, str(held["Value"]))
        if image is not None and ownership.foreign(image, catalog):
            raise QueryError(
                f"The channel parameter {name} in {region} holds {image.ami_id}, an image of "
                f"another catalog ({image.tag(model.TAG_CATALOG)}), not of this one ({catalog}): "
                "two catalogs share the channel prefix, and this promotion would replace that "
                "catalog's. Nothing was changed. Give this catalog its own prefix (`channels` "
                "`prefix` in the catalog), and point its workload accounts' channel queries at "
                "it."
            )


def current(
    clients: AwsClients, prefix: str, definition: str, channel: str, region: str
) -> Version:
    """What `channel` holds in `region`."""
    name = parameter_name(prefix, definition, check_channel(channel))
    ssm = clients.ssm(region)
    from botocore.exceptions import ClientError

    with aws_call(f"reading {name} in {region}", "ssm:GetParameter"):
        try:
            raw = ssm.get_parameter(Name=name)["Parameter"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ParameterNotFound":
                raise
            raise QueryError(
                f"Channel {channel!r} of {definition!r} does not exist in {region} (no SSM "
                f"parameter {name}){_others(ssm, prefix, definition, channel)}. Promote an "
                f"image to it first: `ami-bridge promote {definition} {channel}`; or check the "
                "channel's name, the region and the channel prefix."
            ) from None
        # GetParameter has no description: the history's last entry has it.
        history = versions(ssm, name)
    last = history[-1] if history and history[-1].version == raw["Version"] else None
    return Version(
        version=int(raw["Version"]),
        modified=_iso(raw.get("LastModifiedDate")),
        ami_id=str(raw["Value"]),
        build_id=last.build_id if last else "",
        fingerprint=last.fingerprint if last else "",
    )


def history(
    clients: AwsClients, prefix: str, definition: str, channel: str, region: str
) -> list[Version]:
    """Every version of `channel` in `region`, oldest first."""
    name = parameter_name(prefix, definition, check_channel(channel))
    with aws_call(f"reading the history of {name} in {region}", "ssm:GetParameterHistory"):
        found = versions(clients.ssm(region), name)
    if not found:
        raise QueryError(
            f"Channel {channel!r} of {definition!r} has no history in {region} (no SSM parameter "
            f"{name}). Promote an image to it first: `ami-bridge promote {definition} {channel}`."
        )
    return found


def _others(ssm: Any, prefix: str, definition: str, channel: str) -> str:
    """For a channel that does not exist: the definition's channels in the region, and the
    closest name (a typo), or nothing when they cannot be listed."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        names = sorted(n.rsplit("/", 1)[1] for n in listed(ssm, f"{prefix}/{definition}"))
    except (BotoCoreError, ClientError):  # ssm:GetParametersByPath not allowed: no hint
        return ""
    if not names:
        return f"; {definition!r} has no channel there"
    import difflib

    close = difflib.get_close_matches(channel, names, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"; its channels there: {', '.join(names)}{hint}"


def listed(ssm: Any, prefix: str) -> dict[str, str]:
    """Every parameter under `prefix` (any depth): name -> current value. AWS errors are the
    caller's to wrap (status and gc say different things about them)."""
    found: dict[str, str] = {}
    root = "/" + prefix.strip("/")
    for page in ssm.get_paginator("get_parameters_by_path").paginate(Path=root, Recursive=True):
        for raw in page.get("Parameters", []):
            found[str(raw["Name"])] = str(raw["Value"])
    return found


def versions(ssm: Any, name: str) -> list[Version]:
    """Every version of the parameter `name`, oldest first (none when it does not exist)."""
    from botocore.exceptions import ClientError

    versions: list[Version] = []
    try:
        for page in ssm.get_paginator("get_parameter_history").paginate(Name=name):
            for raw in page.get("Parameters", []):
                what = described(raw.get("Description", "")) or ("", "", "")
                versions.append(
                    Version(
                        version=int(raw["Version"]),
                        modified=_iso(raw.get("LastModifiedDate")),
                        ami_id=str(raw["Value"]),
                        build_id=what[1],
                        fingerprint=what[2],
                    )
                )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ParameterNotFound":
            raise
    return sorted(versions, key=lambda v: v.version)


def _iso(value: Any) -> str:
    if isinstance(value, datetime):
        return model.timestamp(value)
    return str(value or "")


def held(clients: AwsClients, prefix: str, region: str) -> dict[str, dict[str, tuple[str, bool]]]:
    """Every channel under `prefix` in `region`: definition -> channel -> (AMI, revoked now)."""
    ssm = clients.ssm(region)
    found: dict[str, dict[str, str]] = {}
    root = "/" + prefix.strip("/")
    with aws_call(f"listing the channels under {root} in {region}", "ssm:GetParametersByPath"):
        parameters = listed(ssm, prefix)
    for name, value in parameters.items():
        parts = name[len(root) + 1 :].split("/")
        if len(parts) == 2:
            found.setdefault(parts[0], {})[parts[1]] = value
    now = datetime.now(timezone.utc)
    revoked: dict[str, bool] = {}
    for ami in sorted({a for chans in found.values() for a in chans.values()}):
        image = registry.image_by_id(clients.ec2(region), region, ami)
        revoked[ami] = image is None or model.is_revoked(image, now)
    return {d: {c: (a, revoked[a]) for c, a in sorted(chans.items())} for d, chans in found.items()}
