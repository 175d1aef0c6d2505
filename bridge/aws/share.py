"""Sharing images with other accounts: launch permissions on every regional copy, and permission
to create volumes from their snapshots.

The catalog's `share` list (account IDs, organization ARNs, organizational unit ARNs) is the
whole truth: what it lacks is removed. Applying it costs a DescribeImageAttribute and a
ModifyImageAttribute per image (every entry in one call; a copy just made has nothing to read),
so each image carries a tag naming the list last applied (TAG_SHARED) and an unchanged list
costs nothing on later resolves.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal, cast

from bridge.aws.clients import aws_call
from bridge.aws.registry import tag_image
from bridge.errors import BuildError
from bridge.model import TAG_SHARED, Image

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_kms import KMSClient

log = logging.getLogger(__name__)

# The keys of the launch permissions the bridge manages; a public image ({"Group": "all"}) is
# left as someone made it.
_KINDS = ("UserId", "OrganizationArn", "OrganizationalUnitArn")


def permission(entry: str) -> dict[str, str]:
    """The launch permission for one `share` entry (the catalog schema checked its form)."""
    if entry.isdigit():
        return {"UserId": entry}
    if ":organization/" in entry:
        return {"OrganizationArn": entry}
    return {"OrganizationalUnitArn": entry}


def marker(entries: Sequence[str]) -> str:
    """The TAG_SHARED value for `entries`: "" when nothing is shared."""
    if not entries:
        return ""
    text = "\n".join(sorted(entries))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def key_manager(kms: KMSClient, key: str) -> str:
    """Who manages a KMS key: "AWS" or "CUSTOMER" (kms:DescribeKey; never guessed)."""
    with aws_call(f"reading the KMS key {key}", "kms:DescribeKey"):
        metadata = kms.describe_key(KeyId=key)["KeyMetadata"]
    return metadata.get("KeyManager", "CUSTOMER")


def needs_update(image: Image, entries: Sequence[str]) -> bool:
    """Whether `image`'s permissions may differ from `entries` (by its TAG_SHARED tag)."""
    return (image.tag(TAG_SHARED) or "") != marker(entries)


def check(image: Image, entries: Sequence[str], *, aws_managed: Sequence[str]) -> None:
    """Refuse to share `image` at all (accounts, organizations, OUs) when its snapshots are under
    an AWS-managed KMS key (`aws_managed`: those of its keys that KMS says AWS manages)."""
    if entries and aws_managed:
        raise BuildError(
            f"The image {image.ami_id} in {image.region} cannot be shared with "
            f"{', '.join(entries)}: its snapshots are encrypted with {aws_managed[0]}, an "
            "AWS-managed KMS key (such as EBS's default, alias/aws/ebs), whose policy cannot "
            "grant other accounts its use. Encrypt the images with a customer-managed key (the "
            "catalog's `kms_keys` for copies, the template's `kms_key_id` for builds) that those "
            "accounts may use. Copies already made under the AWS-managed key are kept: "
            "deregister them, and the next build run copies them again under the new key."
        )


def apply(ec2: EC2Client, image: Image, entries: Sequence[str], *, fresh: bool = False) -> None:
    """Make `image`'s launch permissions (and its snapshots' volume permissions, for accounts)
    exactly `entries`, then record that on the image. `check` it first.

    A `fresh` image is a copy just made: EC2 gave it and its snapshots no permissions, so there
    are none to read. Every change is one call per image (and per snapshot), whatever the number
    of entries."""
    wanted = [permission(e) for e in entries]
    accounts = sorted(e for e in entries if e.isdigit())
    where = f"{image.ami_id} in {image.region}"
    current: list[dict[str, str]] = []
    if not fresh:
        with aws_call(f"reading the launch permissions of {where}", "ec2:DescribeImageAttribute"):
            response = ec2.describe_image_attribute(
                ImageId=image.ami_id, Attribute="launchPermission"
            )
        current = [
            {k: str(v) for k, v in p.items() if k in _KINDS}
            for p in response.get("LaunchPermissions", [])
            if any(k in p for k in _KINDS)
        ]
    add = [p for p in wanted if p not in current]
    remove = [p for p in current if p not in wanted]
    if add or remove:
        changes: dict[str, Any] = {}
        if add:
            changes["Add"] = add
        if remove:
            changes["Remove"] = remove
        log.info("%s: launch permissions +%s -%s", where, _names(add), _names(remove))
        with aws_call(f"sharing {where}", "ec2:ModifyImageAttribute"):
            ec2.modify_image_attribute(ImageId=image.ami_id, LaunchPermission=cast(Any, changes))
    for snapshot in image.snapshot_ids:
        _share_snapshot(ec2, snapshot, accounts, image.region, fresh=fresh)
    tag_image(ec2, image, {TAG_SHARED: marker(entries)})


def withdraw_snapshots(ec2: EC2Client, image: Image) -> None:
    """Remove every account's volume permission from a disabled image's snapshots: EC2 drops
    the image's launch permissions when it disables it, not its snapshots', so the accounts it
    was shared with could still copy its disk. A restore shares both again (`apply`)."""
    for snapshot in image.snapshot_ids:
        _share_snapshot(ec2, snapshot, [], image.region, fresh=False)


def _share_snapshot(
    ec2: EC2Client, snapshot: str, accounts: list[str], region: str, *, fresh: bool
) -> None:
    where = f"{snapshot} in {region}"
    current: list[str] = []
    if not fresh:
        with aws_call(
            f"reading the volume permissions of {where}", "ec2:DescribeSnapshotAttribute"
        ):
            response = ec2.describe_snapshot_attribute(
                SnapshotId=snapshot, Attribute="createVolumePermission"
            )
        current = sorted(
            p["UserId"] for p in response.get("CreateVolumePermissions", []) if "UserId" in p
        )
    operations: list[tuple[Literal["add", "remove"], list[str]]] = [
        ("add", [a for a in accounts if a not in current]),
        ("remove", [a for a in current if a not in accounts]),
    ]
    for operation, users in operations:
        if users:
            with aws_call(f"sharing {where}", "ec2:ModifySnapshotAttribute"):
                ec2.modify_snapshot_attribute(
                    SnapshotId=snapshot,
                    Attribute="createVolumePermission",
                    OperationType=operation,
                    UserIds=users,
                )


def _names(permissions: list[dict[str, str]]) -> str:
    return ",".join(next(iter(p.values())) for p in permissions) or "none"
