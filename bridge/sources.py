"""Upstream source images: the filters that choose a root image's base, resolved by the bridge.

A root template that takes "the newest Ubuntu" through a filter would otherwise keep its
fingerprint forever while the upstream image moves on. The bridge resolves each filter itself
(one DescribeImages per distinct filter and region), puts the chosen AMI ID into the fingerprint
(fingerprint.py), and pins that exact AMI in the tree Packer builds from (templates/pinning.py),
so the image is built on what was fingerprinted even if a newer one appears mid-build.

Filters come from a JSON template's amazon builders (`source_ami_filter`), an HCL2 template's
amazon sources (`source_ami_filter` blocks) and `data "amazon-ami"` blocks (read by
templates/filters.py, their variables, locals and interpolation evaluated as Packer would by
templates/evaluate.py), or the catalog's `source` (for templates that take `ami_base`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from bridge.aws.clients import aws_call
from bridge.errors import AwsError, FingerprintError

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_ec2.type_defs import FilterTypeDef

log = logging.getLogger(__name__)

FilterKind = Literal["catalog", "json-builder", "hcl2-source", "hcl2-data"]


@dataclass(frozen=True)
class SourceFilter:
    """One filter that chooses an upstream image, and where it is written."""

    # How messages and the fingerprint name it: "catalog source", "builder 0",
    # "source.amazon-ebs.ubuntu", "data.amazon-ami.ubuntu".
    origin: str
    kind: FilterKind
    owners: tuple[str, ...]
    filters: tuple[tuple[str, str], ...]
    most_recent: bool
    # The template file it is in (repository-relative), and for a JSON builder its index.
    file: str = ""
    index: int = 0

    def key(self) -> str:
        """What makes two filters choose the same image (in one region)."""
        return json.dumps([sorted(self.owners), self.filters, self.most_recent])


@dataclass(frozen=True)
class SourcePick:
    """The image a filter chose, in the region the definition is built in."""

    filter: SourceFilter
    ami_id: str
    name: str
    region: str


def filter_from(
    where: str,
    spec: Mapping[str, Any],
    *,
    origin: str,
    kind: FilterKind,
    file: str = "",
    index: int = 0,
    most_recent_default: bool = False,
) -> SourceFilter:
    """A filter from a template's block, its values evaluated, or the catalog's (`where` names
    it in messages).

    A value that is still an expression is refused: the bridge cannot know which image Packer
    would choose, and a fingerprint that guesses is worse than none.
    """
    raw_filters = spec.get("filters")
    raw_owners = spec.get("owners")
    if not isinstance(raw_filters, Mapping) or not raw_filters:
        raise FingerprintError(
            f"{where} has a source image filter without `filters`, so the bridge cannot know "
            "which upstream image it chooses. Give it filters (EC2 DescribeImages names), or set "
            "`track_source: false` in the catalog to leave the choice to Packer."
        )
    if not isinstance(raw_owners, list) or not raw_owners:
        raise FingerprintError(
            f"{where} has a source image filter without `owners`. Name the accounts whose images "
            'may be chosen ("self", "amazon" or account IDs), as Packer requires for safety.'
        )
    values = [*raw_owners, *raw_filters.keys(), *raw_filters.values()]
    dynamic = [str(v) for v in values if not isinstance(v, str) or "{{" in v or "${" in v]
    if dynamic:
        raise FingerprintError(
            f"{where} has a source image filter whose values are not literal "
            f"({', '.join(dynamic)}), so the bridge cannot know which upstream image Packer "
            "would choose. Write the owners and filters literally, choose the image with the "
            "catalog's `source` (passed as `ami_base`), or set `track_source: false`."
        )
    most_recent = spec.get("most_recent", most_recent_default)
    return SourceFilter(
        origin=origin,
        kind=kind,
        owners=tuple(str(o) for o in raw_owners),
        filters=tuple(sorted((str(k), str(v)) for k, v in raw_filters.items())),
        most_recent=bool(most_recent),
        file=file,
        index=index,
    )


def find_source(
    ec2: EC2Client, region: str, source: SourceFilter, *, definition: str
) -> SourcePick:
    """The image `source` chooses in `region`: the newest available match (or the only one)."""
    names = {name for name, _ in source.filters}
    filters: list[FilterTypeDef] = [{"Name": k, "Values": [v]} for k, v in source.filters]
    if "state" not in names:
        filters.append({"Name": "state", "Values": ["available"]})
    with aws_call(
        f"choosing the source image of {definition!r} ({source.origin}) in {region}",
        "ec2:DescribeImages",
    ):
        response = ec2.describe_images(Owners=list(source.owners), Filters=filters)
    images = sorted(
        response.get("Images", []),
        key=lambda i: (i.get("CreationDate", ""), i["ImageId"]),
        reverse=True,
    )
    shown = ", ".join(f"{k}={v}" for k, v in source.filters)
    if not images:
        raise AwsError(
            f"The source image filter of {definition!r} ({source.origin}: {shown}; owners "
            f"{', '.join(source.owners)}) matches no available image in {region}. Check the "
            "filter and the owners, and that the image exists in that region."
        )
    if len(images) > 1 and not source.most_recent:
        raise AwsError(
            f"The source image filter of {definition!r} ({source.origin}: {shown}) matches "
            f"{len(images)} images in {region} ({', '.join(i['ImageId'] for i in images[:5])}) "
            "and does not ask for the most recent, so Packer would refuse it too. Set "
            "`most_recent = true`, or narrow the filter to one image."
        )
    newest = images[0]
    tied = [i["ImageId"] for i in images if i.get("CreationDate") == newest.get("CreationDate")]
    if len(tied) > 1:
        # EC2's CreationDate is in whole seconds: Packer would take any of them.
        log.warning(
            "%s: its source image filter (%s: %s) matches %d images created in the same second "
            "in %s (%s). The bridge builds on %s, the highest AMI ID, and pins it; Packer alone "
            "would take any of them. Narrow the filter (an architecture, a name) so that its "
            "newest match is one image.",
            definition,
            source.origin,
            shown,
            len(tied),
            region,
            ", ".join(tied),
            newest["ImageId"],
        )
    return SourcePick(source, newest["ImageId"], newest.get("Name", ""), region)
