"""What the sandbox holds, read with plain boto3 (the environment points it at the sandbox)."""

from __future__ import annotations

import hashlib
import os
import re
from collections import Counter
from collections.abc import Mapping
from typing import Any

import boto3

from bridge import model
from bridge.sandbox import BASE_IMAGE

BUCKET = "ami-chain-manifests"

_CLIENTS: dict[tuple[str, str | None, tuple[tuple[str, str], ...]], Any] = {}


def aws_client(service: str, region: str | None = None) -> Any:
    """A boto3 client of `service` in `region` (default: the environment's), for the endpoint
    and account the environment names now. Made once per process for each service, region and
    AWS_* environment: making a client (its class built from the service model) costs more than
    most of the calls a test makes with it. A test that registers event handlers on a client
    makes its own with boto3.client."""
    aws = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("AWS_")))
    key = (service, region, aws)
    if key not in _CLIENTS:
        _CLIENTS[key] = boto3.client(service, region_name=region)
    return _CLIENTS[key]


def own_images(region: str = "us-east-1") -> list[dict[str, Any]]:
    """Every image the caller's account owns in `region`."""
    images: list[dict[str, Any]] = aws_client("ec2", region).describe_images(Owners=["self"])[
        "Images"
    ]
    return images


def tags_of(resource: Mapping[str, Any]) -> dict[str, str]:
    """The tags of a described image or snapshot as a dict."""
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}


def builds_per_definition(region: str = "us-east-1") -> Counter[str]:
    """Every AMI in `region` Packer made (or copied: a copy keeps its source's name), tagged or
    not, by the definition in its name: the example names images
    `<definition>-<fingerprint[:12]>[-<build ID[:8]>]-<timestamp>` (the build ID on a second
    build of the fingerprint)."""
    return Counter(
        re.sub(r"-[0-9a-f]{12}(-[0-9a-f]{8})?-\d+$", "", image["Name"])
        for image in own_images(region)
    )


def manifest_keys() -> list[str]:
    """Every key in the manifest bucket, sorted."""
    listing = aws_client("s3").list_objects_v2(Bucket=BUCKET)
    return sorted(o["Key"] for o in listing.get("Contents", []))


def deregister(region: str, ami: str) -> None:
    """Deregister an image as a person would: its deregistration protection (the bridge turns it
    on) lifted first."""
    ec2 = aws_client("ec2", region)
    ec2.disable_image_deregistration_protection(ImageId=ami)
    ec2.deregister_image(ImageId=ami)


def make_image(ec2: Any, name: str, fingerprint: str | None = None) -> str:
    """A new image in the sandbox (an instance of the public base, imaged); tagged SHA=fp."""
    instance = ec2.run_instances(ImageId=BASE_IMAGE, MinCount=1, MaxCount=1)["Instances"][0]
    ami: str = ec2.create_image(InstanceId=instance["InstanceId"], Name=name)["ImageId"]
    if fingerprint:
        ec2.create_tags(Resources=[ami], Tags=[{"Key": "SHA", "Value": fingerprint}])
    return ami


def fake_build(
    definition: str,
    build_id: str,
    *,
    parent: Mapping[str, str] | None = None,
    fp: str | None = None,
    catalog: str = "example",
) -> dict[str, str]:
    """A build as the bridge tags it, made without Packer, copied to eu-west-1 with its tags:
    region -> AMI. `parent`: region -> the parent build's AMI there; `catalog`: its catalog's ID
    (the example catalog's)."""
    us, eu = (
        aws_client("ec2", "us-east-1"),
        aws_client("ec2", "eu-west-1"),
    )
    fp = fp or hashlib.sha1(build_id.encode()).hexdigest()
    ami = make_image(us, f"{definition}-{build_id}")
    tags = {
        model.TAG_DEFINITION: definition,
        "SHA": fp,
        model.TAG_BUILD_ID: build_id,
        model.TAG_COMMIT: "0" * 40,
        model.TAG_CATALOG: catalog,
    }
    if parent:
        tags[model.TAG_PARENT_AMI] = parent["us-east-1"]
    us.create_tags(Resources=[ami], Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
    copy: str = eu.copy_image(
        SourceImageId=ami,
        SourceRegion="us-east-1",
        Name=f"{definition}-{build_id}",
        CopyImageTags=True,
    )["ImageId"]
    if parent:  # built on the parent's copy there, as the bridge builds children
        eu.create_tags(
            Resources=[copy], Tags=[{"Key": model.TAG_PARENT_AMI, "Value": parent["eu-west-1"]}]
        )
    return {"us-east-1": ami, "eu-west-1": copy}


def recycle_bin(regions: tuple[str, ...] = ("us-east-1",), days: int = 7, **rule: Any) -> None:
    """Recycle Bin retention rules in `regions` for images and for snapshots (region-level unless
    `rule` gives ResourceTags): what gc deletes there stays restorable for `days`."""
    for region in regions:
        rbin = aws_client("rbin", region)
        for kind in ("EC2_IMAGE", "EBS_SNAPSHOT"):
            rbin.create_rule(
                ResourceType=kind,
                RetentionPeriod={"RetentionPeriodValue": days, "RetentionPeriodUnit": "DAYS"},
                **rule,
            )
