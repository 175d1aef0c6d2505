"""Sharing images with other accounts: launch permissions on every regional copy, and permission
to create volumes from their snapshots.

The catalog's `share` list (account IDs, organization ARNs, organizational unit ARNs) is the
whole truth: what it lacks is removed. Applying it costs a DescribeImageAttribute and a
ModifyImageAttribute per image, so each image carries a tag naming the list last applied
(TAG_SHARED) and an unchanged list costs nothing on later resolves.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal, cast

from bridge.aws import aws_call
from bridge.errors import BuildError
from bridge.registry import TAG_PREFIX, Image, tag_image

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client

log = logging.getLogger(__name__)

TAG_SHARED = TAG_PREFIX + "shared"
# The keys of the launch permissions the bridge manages; a public image ({"Group": "all"}) is
# left as someone made it.
_KINDS = ("UserId", "OrganizationArn", "OrganizationalUnitArn")
# EC2's default EBS key: AWS-managed, so its snapshots cannot be shared with other accounts.
_AWS_MANAGED_EBS_KEY = "alias/aws/ebs"


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


def needs_update(image: Image, entries: Sequence[str]) -> bool:
    """Whether `image`'s permissions may differ from `entries` (by its TAG_SHARED tag)."""
    return (image.tag(TAG_SHARED) or "") != marker(entries)


def check(image: Image, entries: Sequence[str], *, encrypted_by: str | None) -> None:
    """Refuse to share `image` when its snapshots' key cannot reach other accounts."""
    accounts = sorted(e for e in entries if e.isdigit())
    if accounts and encrypted_by is not None and _aws_managed(encrypted_by):
        raise BuildError(
            f"The image {image.ami_id} in {image.region} cannot be shared with "
            f"{', '.join(accounts)}: its snapshots are encrypted with {encrypted_by}, an "
            "AWS-managed key, whose grants cannot reach other accounts. Encrypt the images with "
            "a customer-managed KMS key (the catalog's `kms_keys`, or the template's "
            "`kms_key_id`) and give those accounts use of it."
        )


def apply(
    ec2: EC2Client, image: Image, entries: Sequence[str], *, encrypted_by: str | None
) -> None:
    """Make `image`'s launch permissions (and its snapshots' volume permissions, for accounts)
    exactly `entries`, then record that on the image. `encrypted_by` is the KMS key of its
    snapshots, if any: an AWS-managed key cannot be shared, so sharing such an image fails."""
    check(image, entries, encrypted_by=encrypted_by)
    wanted = [permission(e) for e in entries]
    accounts = sorted(e for e in entries if e.isdigit())
    where = f"{image.ami_id} in {image.region}"
    with aws_call(f"reading the launch permissions of {where}", "ec2:DescribeImageAttribute"):
        response = ec2.describe_image_attribute(ImageId=image.ami_id, Attribute="launchPermission")
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
        _share_snapshot(ec2, snapshot, accounts, image.region)
    tag_image(ec2, image, {TAG_SHARED: marker(entries)})


def _share_snapshot(ec2: EC2Client, snapshot: str, accounts: list[str], region: str) -> None:
    where = f"{snapshot} in {region}"
    with aws_call(f"reading the volume permissions of {where}", "ec2:DescribeSnapshotAttribute"):
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


def _aws_managed(key: str) -> bool:
    return key.endswith(_AWS_MANAGED_EBS_KEY)


def _names(permissions: list[dict[str, str]]) -> str:
    return ",".join(next(iter(p.values())) for p in permissions) or "none"
