"""Compatibility with the seed pipeline's Packer manifests (`manifest-<definition>.json`).

The seed's jobs hand a just-built image to the next job through the Packer manifest
post-processor's file. The bridge reads it in two places: a root image the seed pipeline built in
the same workflow (AMI_BRIDGE_PACKER_MANIFESTS), and a template that reports its artifacts only
through such a file.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from bridge import model
from bridge.aws import registry
from bridge.errors import AwsError, BuildError
from bridge.model import Image
from bridge.packer import manifest_artifacts

if TYPE_CHECKING:
    from bridge.aws.clients import AwsClients

log = logging.getLogger(__name__)

# A git tree SHA (the seed's own identity) or a composite fingerprint: 40 hex digits.
_FINGERPRINT = re.compile(r"[0-9a-f]{40}")


def manifest_path(directory: Path, definition: str) -> Path:
    """Where the seed pipeline keeps a definition's Packer manifest."""
    return directory / f"manifest-{definition}.json"


def built_images(
    clients: AwsClients,
    directory: Path,
    definition: str,
    regions: Sequence[str],
    *,
    fingerprint: str,
    tag_key: str,
) -> dict[str, Image] | None:
    """The images of a seed build's manifest in `directory`, described in EC2, or None.

    None when there is no manifest, it lacks one of `regions`, an image cannot be described, or
    an image's tags say it is another image (a fingerprint other than `fingerprint`, another
    definition). The seed tagged its images with a placeholder, so they cannot be found by
    fingerprint; the planner uses them for a root only when every copy is available.
    """
    path = manifest_path(directory, definition)
    if not path.is_file():
        return None
    try:
        amis = manifest_artifacts(path)
    except BuildError as exc:
        log.warning("%s: ignoring %s: %s", definition, path, exc)
        return None
    if not all(r in amis for r in regions):
        return None
    try:
        images = {r: registry.describe_image(clients.ec2(r), r, amis[r]) for r in regions}
    except AwsError as exc:
        log.warning("%s: ignoring %s: %s", definition, path, exc)
        return None
    for image in images.values():
        other = contradiction(image, definition, fingerprint=fingerprint, tag_key=tag_key)
        if other:
            log.warning("%s: ignoring %s: %s is %s", definition, path, image.ami_id, other)
            return None
    return images


def contradiction(image: Image, definition: str, *, fingerprint: str, tag_key: str) -> str:
    """What in an image's tags says it is not `definition` at `fingerprint` ("" when nothing)."""
    tagged = image.tag(tag_key) or ""
    if _FINGERPRINT.fullmatch(tagged) and tagged != fingerprint:
        return f"tagged {tag_key}={tagged}, another fingerprint than {fingerprint}"
    named = image.tag(model.TAG_DEFINITION)
    if named is not None and named != definition:
        return f"tagged as an image of {named!r}"
    return ""


def build_artifacts(directory: Path, definition: str, *, written_since: float) -> dict[str, str]:
    """Region -> AMI from the manifest a build wrote to `directory`, or {} when there is none.

    A manifest older than `written_since` (the build's start, as a timestamp) is an earlier
    build's: its AMIs are not this build's, so it counts as none.
    """
    path = manifest_path(directory, definition)
    try:
        written = path.stat().st_mtime
    except FileNotFoundError:
        return {}
    if written < written_since:
        log.warning(
            "%s: ignoring %s, written before this build started (an earlier build's AMIs)",
            definition,
            path,
        )
        return {}
    return manifest_artifacts(path)
