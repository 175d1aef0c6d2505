"""The AMI registry: finding images by fingerprint tag in EC2, waiting for them, tagging them."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from bridge.aws.clients import aws_call
from bridge.errors import AwsError
from bridge.model import TAG_CANDIDATE, TAG_GC, TAG_REJECTED, Image

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_ec2.type_defs import TagTypeDef

log = logging.getLogger(__name__)

# DescribeImages accepts at most 200 values in one filter.
FILTER_BATCH = 200
TAG_VALUE_MAX = 255


def find_images(
    ec2: EC2Client,
    region: str,
    fingerprints: Iterable[str],
    *,
    tag_key: str,
    owners: Sequence[str],
) -> dict[str, list[Image]]:
    """Images tagged `tag_key` = one of `fingerprints`, newest first, by fingerprint.

    Failed, deregistered and other unusable images are filtered out by EC2; one DescribeImages
    call is made per 200 fingerprints. A candidate (a build not yet published: its tests may be
    running) and a rejected image are never found, whatever the template tagged them.
    """
    found: dict[str, list[Image]] = defaultdict(list)
    # Disabled ones too (a revocation with on_revoke=disable): seen as revoked, never used.
    for image in find_tagged(
        ec2, region, tag_key, fingerprints, owners=owners, include_disabled=True
    ):
        if image.tag(TAG_CANDIDATE) is not None or image.tag(TAG_REJECTED):
            continue
        found[str(image.tag(tag_key))].append(image)
    for images in found.values():
        images.sort(key=lambda i: i.recency, reverse=True)
    return dict(found)


def shared_images(
    ec2: EC2Client, region: str, ami_ids: Iterable[str], *, owners: Sequence[str]
) -> dict[str, Image]:
    """Images by ID that `owners` own (available or pending), e.g. shared by another account:
    AMI ID -> image, without the owner's tags (EC2 never shows them to other accounts)."""
    from botocore.exceptions import ClientError

    wanted = sorted(set(ami_ids))
    found: dict[str, Image] = {}
    for start in range(0, len(wanted), FILTER_BATCH):
        batch = wanted[start : start + FILTER_BATCH]
        with aws_call(f"looking up shared images in {region}", "ec2:DescribeImages"):
            try:
                response = ec2.describe_images(ImageIds=batch, Owners=list(owners))
            except ClientError as exc:
                # One ID gone is "not found" for the whole call: ask for each, skip the gone.
                if exc.response.get("Error", {}).get("Code") != "InvalidAMIID.NotFound":
                    raise
                if len(batch) == 1:
                    continue
                found.update(shared_images(ec2, region, batch[:1], owners=owners))
                found.update(shared_images(ec2, region, batch[1:], owners=owners))
                continue
        for raw in response.get("Images", []):
            image = _image(raw, region)
            if image.state in ("available", "pending") and owned_by(image, owners):
                found[image.ami_id] = image
    return found


def find_tagged(
    ec2: EC2Client,
    region: str,
    key: str,
    values: Iterable[str],
    *,
    owners: Sequence[str],
    include_disabled: bool = False,
) -> list[Image]:
    """Images (available or pending; and disabled, with `include_disabled`) tagged `key` = one
    of `values`, that `owners` count; one DescribeImages call per 200 values."""
    wanted = sorted(set(values))
    states = ["available", "pending", *(["disabled"] if include_disabled else [])]
    found: list[Image] = []
    for start in range(0, len(wanted), FILTER_BATCH):
        batch = wanted[start : start + FILTER_BATCH]
        with aws_call(f"looking up images by {key} in {region}", "ec2:DescribeImages"):
            response = ec2.describe_images(
                Owners=list(owners),
                Filters=[
                    {"Name": f"tag:{key}", "Values": batch},
                    {"Name": "state", "Values": states},
                ],
                IncludeDisabled=include_disabled,
            )
        for raw in response.get("Images", []):
            image = _image(raw, region)
            # The filter matches by value; check the owner too, since a filter typo on the server
            # side must never hand us somebody else's image.
            if image.tag(key) in batch and owned_by(image, owners):
                found.append(image)
    return found


def name_in_use(ec2: EC2Client, region: str, name: str) -> bool:
    """Whether the name of an image of this account in `region` holds `name`: `ami_name` as it
    is, or as a template names the image with it (`{{user `ami_name`}}-{{timestamp}}`, whose
    second build within the same second EC2 would refuse). `name` is a definition and a
    fingerprint, so holds no wildcard."""
    with aws_call(f"looking up the images named with {name} in {region}", "ec2:DescribeImages"):
        response = ec2.describe_images(
            Owners=["self"],
            Filters=[{"Name": "name", "Values": [f"*{name}*"]}],
            IncludeDisabled=True,
        )
    return any(name in raw.get("Name", "") for raw in response.get("Images", []))


def protect(ec2: EC2Client, image: Image, on: bool) -> None:
    """Turn the image's deregistration protection on (nobody deregisters it by mistake) or off
    (for gc, which decided to delete it)."""
    action = "Enable" if on else "Disable"
    with aws_call(
        f"{'protecting' if on else 'lifting the protection of'} {image.ami_id} in {image.region}",
        f"ec2:{action}ImageDeregistrationProtection",
    ):
        if on:
            ec2.enable_image_deregistration_protection(ImageId=image.ami_id)
        else:
            ec2.disable_image_deregistration_protection(ImageId=image.ami_id)


def disable(ec2: EC2Client, image: Image) -> None:
    """DisableImage: nobody can launch it; EC2 removes its launch permissions."""
    with aws_call(f"disabling {image.ami_id} in {image.region}", "ec2:DisableImage"):
        ec2.disable_image(ImageId=image.ami_id)


def enable(ec2: EC2Client, image: Image) -> None:
    """EnableImage: launchable again (its launch permissions are not restored by EC2)."""
    with aws_call(f"enabling {image.ami_id} in {image.region}", "ec2:EnableImage"):
        ec2.enable_image(ImageId=image.ami_id)


def image_by_id(
    ec2: EC2Client, region: str, ami_id: str, *, owners: Sequence[str] = ()
) -> Image | None:
    """One image by ID, or None when `region` has none by that ID (of `owners`, "self" or account
    IDs, when given: EC2 itself says whose an image is, so "self" means the caller's account and
    not any image the caller can see, a public one included)."""
    from botocore.exceptions import ClientError

    with aws_call(f"describing {ami_id} in {region}", "ec2:DescribeImages"):
        try:
            if owners:
                response = ec2.describe_images(ImageIds=[ami_id], Owners=list(owners))
            else:
                response = ec2.describe_images(ImageIds=[ami_id])
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code.startswith("InvalidAMIID"):
                return None
            raise
    images = response.get("Images", [])
    return _image(images[0], region) if images else None


def untag_image(ec2: EC2Client, image: Image, keys: Iterable[str]) -> None:
    """Remove tags `keys` (whatever their values) from an image and its snapshots, in one call."""
    pairs: list[TagTypeDef] = [{"Key": k} for k in sorted(keys)]
    with aws_call(f"untagging {image.ami_id} in {image.region}", "ec2:DeleteTags"):
        ec2.delete_tags(Resources=[image.ami_id, *image.snapshot_ids], Tags=pairs)


def deprecate(ec2: EC2Client, image: Image, at: datetime | None) -> None:
    """Set (or with None, clear) the image's EC2 deprecation time; EC2 refuses one in the past."""
    if at is None:
        with aws_call(
            f"clearing the deprecation of {image.ami_id} in {image.region}",
            "ec2:DisableImageDeprecation",
        ):
            ec2.disable_image_deprecation(ImageId=image.ami_id)
        return
    with aws_call(f"deprecating {image.ami_id} in {image.region}", "ec2:EnableImageDeprecation"):
        ec2.enable_image_deprecation(ImageId=image.ami_id, DeprecateAt=at)


def describe_image(ec2: EC2Client, region: str, ami_id: str) -> Image:
    """One image by ID."""
    with aws_call(f"describing {ami_id} in {region}", "ec2:DescribeImages"):
        response = ec2.describe_images(ImageIds=[ami_id])
    images = response.get("Images", [])
    if not images:
        raise AwsError(
            f"The image {ami_id} does not exist in {region} (or is not visible to these "
            "credentials). Check the region and the account, then run again."
        )
    return _image(images[0], region)


def wait_available(
    ec2: EC2Client, region: str, ami_id: str, *, timeout: float, delay: int = 15
) -> Image:
    """Wait (bounded) until a pending image is available; a failed image is an error."""
    from botocore.exceptions import WaiterError

    attempts = max(1, int(timeout // max(delay, 1)))
    log.info("waiting for %s in %s to become available (up to %ds)", ami_id, region, timeout)
    with aws_call(f"waiting for {ami_id} in {region}", "ec2:DescribeImages"):
        try:
            ec2.get_waiter("image_available").wait(
                ImageIds=[ami_id], WaiterConfig={"Delay": delay, "MaxAttempts": attempts}
            )
        except WaiterError as exc:
            last: Any = exc.last_response
            states = [i.get("State", "?") for i in (last or {}).get("Images", [])]
            raise AwsError(
                f"The image {ami_id} in {region} did not become available within "
                f"{timeout:.0f}s (state: {', '.join(states) or 'unknown'}). Check it in the EC2 "
                "console; a failed image is ignored by later resolves and rebuilt."
            ) from None
    return describe_image(ec2, region, ami_id)


def tag_image(ec2: EC2Client, image: Image, tags: Mapping[str, str]) -> None:
    """Put `tags` on an image and its snapshots in one call (all or nothing)."""
    pairs: list[TagTypeDef] = [
        {"Key": k, "Value": v[:TAG_VALUE_MAX]} for k, v in sorted(tags.items())
    ]
    with aws_call(f"tagging {image.ami_id} in {image.region}", "ec2:CreateTags"):
        ec2.create_tags(Resources=[image.ami_id, *image.snapshot_ids], Tags=pairs)


def copy_image(
    ec2: EC2Client,
    source: Image,
    region: str,
    *,
    encrypted: bool = False,
    kms_key_id: str | None = None,
) -> str:
    """Start a copy of `source` into `region` (the client's), tags included; its AMI ID.

    The copy is pending until EC2 has copied the snapshots; its tags are there at once, so other
    processes see it as the copy in progress, not as a region to copy to.
    """
    kwargs: dict[str, Any] = {}
    if encrypted or kms_key_id:
        kwargs["Encrypted"] = True
    if kms_key_id:
        kwargs["KmsKeyId"] = kms_key_id
    with aws_call(f"copying {source.ami_id} from {source.region} to {region}", "ec2:CopyImage"):
        response = ec2.copy_image(
            SourceImageId=source.ami_id,
            SourceRegion=source.region,
            Name=source.name or source.ami_id,
            Description=f"Copy of {source.ami_id} from {source.region}",
            CopyImageTags=True,
            **kwargs,
        )
    ami: str = response["ImageId"]
    return ami


def owned_by(image: Image, owners: Sequence[str]) -> bool:
    """Whether `owners` ("self" or account IDs) count `image`; "self" counts the caller's."""
    accounts = {o for o in owners if o != "self"}
    return "self" in owners or image.owner_id in accounts


def _image(raw: Mapping[str, Any], region: str) -> Image:
    snapshots = tuple(
        m["Ebs"]["SnapshotId"]
        for m in raw.get("BlockDeviceMappings", [])
        if m.get("Ebs", {}).get("SnapshotId")
    )
    return Image(
        ami_id=raw["ImageId"],
        region=region,
        state=raw.get("State", "error"),
        creation_date=raw.get("CreationDate", ""),
        owner_id=raw.get("OwnerId", ""),
        tags=MappingProxyType({t["Key"]: t["Value"] for t in raw.get("Tags", [])}),
        snapshot_ids=snapshots,
        name=raw.get("Name", ""),
        deprecation_time=str(raw.get("DeprecationTime") or ""),
        protection=str(raw.get("DeregistrationProtection") or ""),
        kms_key_ids=tuple(
            sorted(
                {
                    m["Ebs"].get("KmsKeyId") or "alias/aws/ebs"
                    for m in raw.get("BlockDeviceMappings", [])
                    if m.get("Ebs", {}).get("Encrypted")
                }
            )
        ),
    )


def parse_image(raw: Mapping[str, Any], region: str) -> Image:
    """An image from one DescribeImages entry."""
    return _image(raw, region)


def delete_image(ec2: EC2Client, image: Image) -> None:
    """Deregister `image` and delete its snapshots (gc's deletions, a rejected candidate's): its
    snapshots are marked first (TAG_GC), so a run cut short after deregistering still finds
    them, and its deregistration protection is lifted. An image or snapshot gone already is no
    failure (a retry whose first response was lost, or another gc)."""
    if image.snapshot_ids:
        with aws_call(f"marking the snapshots of {image.ami_id}", "ec2:CreateTags"):
            ec2.create_tags(
                Resources=list(image.snapshot_ids),
                Tags=[{"Key": TAG_GC, "Value": image.ami_id}],
            )
    with _unless_gone(
        f"lifting the deregistration protection of {image.ami_id} in {image.region}",
        "ec2:DisableImageDeregistrationProtection",
    ):
        ec2.disable_image_deregistration_protection(ImageId=image.ami_id)
    with _unless_gone(f"deregistering {image.ami_id} in {image.region}", "ec2:DeregisterImage"):
        ec2.deregister_image(ImageId=image.ami_id)
    for snapshot in image.snapshot_ids:
        delete_snapshot(ec2, image.region, snapshot)


@contextmanager
def _unless_gone(action: str, permission: str) -> Iterator[None]:
    """aws_call, where an image gone already is no failure."""
    from botocore.exceptions import ClientError

    with aws_call(action, permission):
        try:
            yield
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in {
                "InvalidAMIID.NotFound",
                "InvalidAMIID.Unavailable",
            }:
                raise


def delete_snapshot(ec2: EC2Client, region: str, snapshot: str) -> None:
    """Delete `snapshot`; one gone already is no failure, one another image uses is kept."""
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
