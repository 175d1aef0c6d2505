"""What launches images in a region, as gc reads it before deleting one: every version of every
launch template, instances not terminated, Auto Scaling groups and launch configurations; and
the listing both it and references.py page through, whose failure stops gc (`check`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from bridge.aws.clients import aws_call
from bridge.errors import AwsError, RetentionError

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client

# Instances that can still start: every state but terminated.
LIVE_INSTANCE_STATES = ("pending", "running", "shutting-down", "stopping", "stopped")


@contextmanager
def check(what: str, region: str, permission: str) -> Iterator[None]:
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


def listed_pages(
    client: Any, operation: str, checked: tuple[str, str, str], **params: Any
) -> Iterator[dict[str, Any]]:
    """Every page of a listing through botocore's paginator; a failure stops gc (`checked`:
    what, region and permission, as `check` takes them)."""
    with check(*checked):
        yield from client.get_paginator(operation).paginate(**params)


@dataclass(frozen=True)
class Template:
    id: str
    name: str
    default: int
    latest: int
    # version -> its image (as written: an AMI ID or resolve:ssm:...)
    images: Mapping[int, str]


def launch_templates(
    ec2: EC2Client, region: str, uses: dict[str, list[str]]
) -> dict[str, Template]:
    """Every version of every launch template (not only the default): launch template ID ->."""
    templates: dict[str, Template] = {}
    listing = ("listing launch templates", region, "ec2:DescribeLaunchTemplates")
    for page in listed_pages(ec2, "describe_launch_templates", listing, MaxResults=200):
        for raw in page.get("LaunchTemplates", []):
            t = _versions(ec2, region, raw)
            templates[t.id] = t
            for version, image in sorted(t.images.items()):
                uses[image].append(f"launch template {t.name} ({t.id}) version {version}")
    return templates


def _versions(ec2: EC2Client, region: str, raw: Mapping[str, Any]) -> Template:
    template_id = str(raw["LaunchTemplateId"])
    latest = int(raw.get("LatestVersionNumber", 1))
    images: dict[int, str] = {}
    # Asked for by version range, so each page is complete whether or not the endpoint pages.
    for low in range(1, latest + 1, 200):
        high = min(low + 199, latest)
        pages = listed_pages(
            ec2,
            "describe_launch_template_versions",
            (
                f"reading the versions of launch template {template_id}",
                region,
                "ec2:DescribeLaunchTemplateVersions",
            ),
            LaunchTemplateId=template_id,
            MinVersion=str(low),
            MaxVersion=str(high),
            MaxResults=200,
        )
        for page in pages:
            for version in page.get("LaunchTemplateVersions", []):
                image = version.get("LaunchTemplateData", {}).get("ImageId")
                if image:
                    images[int(version["VersionNumber"])] = str(image)
    return Template(
        template_id,
        str(raw.get("LaunchTemplateName", template_id)),
        int(raw.get("DefaultVersionNumber", 1)),
        latest,
        MappingProxyType(images),
    )


def instances(ec2: EC2Client, region: str, uses: dict[str, list[str]]) -> None:
    pages = listed_pages(
        ec2,
        "describe_instances",
        ("listing instances", region, "ec2:DescribeInstances"),
        Filters=[{"Name": "instance-state-name", "Values": list(LIVE_INSTANCE_STATES)}],
        MaxResults=1000,
    )
    for page in pages:
        for reservation in page.get("Reservations", []):
            for instance in reservation.get("Instances", []):
                state = instance.get("State", {}).get("Name", "?")
                if state == "terminated":
                    continue
                image = instance.get("ImageId")
                if image:
                    uses[image].append(f"instance {instance['InstanceId']} ({state})")


def auto_scaling(
    autoscaling: Any,
    region: str,
    templates: Mapping[str, Template],
    uses: dict[str, list[str]],
) -> None:
    """Auto Scaling groups' launch templates (named) and every launch configuration."""
    by_name = {t.name: t for t in templates.values()}
    groups = listed_pages(
        autoscaling,
        "describe_auto_scaling_groups",
        ("listing Auto Scaling groups", region, "autoscaling:DescribeAutoScalingGroups"),
        MaxRecords=100,
    )
    for group in (g for page in groups for g in page.get("AutoScalingGroups", [])):
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
                    f"auto scaling group {name} (launch template {template.name} version {number})"
                )
        if group.get("LaunchConfigurationName"):
            uses["lc:" + group["LaunchConfigurationName"]].append(f"auto scaling group {name}")
    configs = listed_pages(
        autoscaling,
        "describe_launch_configurations",
        ("listing launch configurations", region, "autoscaling:DescribeLaunchConfigurations"),
        MaxRecords=100,
    )
    for config in (c for page in configs for c in page.get("LaunchConfigurations", [])):
        name = config.get("LaunchConfigurationName", "?")
        users = uses.pop("lc:" + name, [])
        image = config.get("ImageId")
        if image:
            uses[image].append(
                f"launch configuration {name}" + (f" of {', '.join(users)}" if users else "")
            )
    missing = sorted(k[3:] for k in uses if k.startswith("lc:"))
    if missing:
        raise RetentionError(
            f"Auto Scaling groups in {region} use the launch configurations "
            f"{', '.join(missing)}, which DescribeLaunchConfigurations did not list, so gc "
            "cannot tell which images they launch and deletes nothing. Run gc again; if it "
            "persists, check those groups."
        )
