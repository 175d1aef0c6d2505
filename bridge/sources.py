"""Upstream source images: the filters that choose a root image's base, resolved by the bridge.

A root template that takes "the newest Ubuntu" through a filter would otherwise keep its
fingerprint forever while the upstream image moves on. The bridge resolves each filter itself
(one DescribeImages per distinct filter and region), puts the chosen AMI ID into the fingerprint
(fingerprint.py), and pins that exact AMI in the tree Packer builds from (`pin`), so the image is
built on what was fingerprinted even if a newer one appears mid-build.

Filters come from a JSON template's amazon builders (`source_ami_filter`), an HCL2 template's
amazon sources (`source_ami_filter` blocks) and `data "amazon-ami"` blocks (read by templates.py),
or the catalog's `source` (for templates that take `ami_base`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from bridge.aws import aws_call
from bridge.errors import AwsError, BuildError, FingerprintError

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_ec2.type_defs import FilterTypeDef

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
    """A filter from a template's or the catalog's block (`where` names it in messages).

    A value that is an expression (a Packer variable, say) is refused: the bridge cannot know
    which image Packer would choose, and a fingerprint that guesses is worse than none.
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
    return SourcePick(source, images[0]["ImageId"], images[0].get("Name", ""), region)


def pin(root: Path, picks: Sequence[SourcePick]) -> dict[str, str]:
    """Make the template in the exported tree `root` build on exactly the picked images; the
    Packer variables this takes (`ami_base` for the catalog's source).

    A JSON builder gets `source_ami` in place of its filter; an HCL2 source block gets
    `source_ami` in place of its `source_ami_filter` block; references to a `data "amazon-ami"`
    block's ID become the AMI ID. Each rewrite is read back and checked, so a template the
    bridge cannot pin is refused rather than built on another image.
    """
    variables: dict[str, str] = {}
    for pick in picks:
        f = pick.filter
        if f.kind == "catalog":
            variables["ami_base"] = pick.ami_id
        elif f.kind == "json-builder":
            _pin_json(root / f.file, f.index, pick.ami_id)
        else:
            _pin_hcl2(root / f.file, pick)
    return variables


def _pin_json(path: Path, index: int, ami: str) -> None:
    template = json.loads(path.read_bytes())
    builder = template["builders"][index]
    builder.pop("source_ami_filter", None)
    builder["source_ami"] = ami
    path.write_text(json.dumps(template, indent=2) + "\n", encoding="utf-8")


def _pin_hcl2(path: Path, pick: SourcePick) -> None:
    import hcl2

    f = pick.filter
    text = path.read_text(encoding="utf-8")
    _, kind, name = f.origin.split(".", 2)
    if f.kind == "hcl2-data":
        reference = re.compile(rf"\bdata\.{re.escape(kind)}\.{re.escape(name)}\.id\b")
        pinned = reference.sub(json.dumps(pick.ami_id), text)
    else:
        header = re.compile(rf'(?m)^\s*source\s+"{re.escape(kind)}"\s+"{re.escape(name)}"\s*\{{')
        match = header.search(text)
        body_end = _block_end(text, match.end()) if match else -1
        inner = (
            re.compile(r"(?m)^(\s*)source_ami_filter\s*\{").search(text, match.end(), body_end)
            if match
            else None
        )
        if inner is None:
            pinned = text
        else:
            end = _block_end(text, inner.end())
            indent = inner.group(1).lstrip("\n")
            pinned = (
                text[: inner.start()]
                + f"\n{indent}source_ami = {json.dumps(pick.ami_id)}"
                + text[end + 1 :]
            )
    if not _pinned_hcl2(hcl2, pinned, f, pick.ami_id):
        raise BuildError(
            f"Cannot make {path.name} build on the chosen source image {pick.ami_id} "
            f"({f.origin}): the bridge could not rewrite its filter. Choose the image with "
            "the catalog's `source` (passed as `ami_base`), or set `track_source: false`."
        )
    path.write_text(pinned, encoding="utf-8")


def _pinned_hcl2(hcl2: Any, text: str, f: SourceFilter, ami: str) -> bool:
    """Whether `text` parses and builds on `ami` where `f` chose before."""
    try:
        data = hcl2.loads(text)
    except Exception:  # the parser raises its own lark errors
        return False
    _, kind, name = f.origin.split(".", 2)
    if f.kind == "hcl2-data":
        return f"data.{kind}.{name}.id" not in text
    for block in data.get("source", []):
        body = block.get(f'"{kind}"', {}).get(f'"{name}"')
        if isinstance(body, dict):
            return "source_ami_filter" not in body and body.get("source_ami") == json.dumps(ami)
    return False


def _block_end(text: str, start: int) -> int:
    """The index of the `}` closing the block whose `{` is just before `start` (strings and
    comments skipped)."""
    depth, i = 1, start
    while i < len(text):
        c = text[i]
        if c == '"':
            i += 1
            while i < len(text) and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
        elif c == "#" or text.startswith("//", i):
            i = text.find("\n", i)
            if i < 0:
                break
        elif text.startswith("/*", i):
            i = text.find("*/", i) + 1
            if i <= 0:
                break
        elif c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1
