"""Compatibility with the seed pipeline's Packer manifests (`manifest-<definition>.json`).

The seed's jobs hand a just-built image to the next job through the Packer manifest
post-processor's file. The bridge reads it in two places: a root image the seed pipeline built in
the same workflow (AMI_BRIDGE_PACKER_MANIFESTS), and a template that reports its artifacts only
through such a file.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from bridge import registry
from bridge.errors import AwsError
from bridge.packer import manifest_artifacts
from bridge.registry import Image

if TYPE_CHECKING:
    from bridge.aws import AwsClients

log = logging.getLogger(__name__)


def manifest_path(directory: Path, definition: str) -> Path:
    """Where the seed pipeline keeps a definition's Packer manifest."""
    return directory / f"manifest-{definition}.json"


def built_images(
    clients: AwsClients, directory: Path, definition: str, regions: Sequence[str]
) -> dict[str, Image] | None:
    """The images of a seed build's manifest in `directory`, described in EC2, or None.

    None when there is no manifest, it lacks one of `regions`, or an image cannot be described.
    The seed tagged its images with a literal placeholder, so they cannot be found by fingerprint;
    the planner uses them for a root only when every copy is available.
    """
    path = manifest_path(directory, definition)
    if not path.is_file():
        return None
    amis = manifest_artifacts(path)
    if not all(r in amis for r in regions):
        return None
    try:
        images = {r: registry.describe_image(clients.ec2(r), r, amis[r]) for r in regions}
    except AwsError as exc:
        log.warning("%s: ignoring %s: %s", definition, path, exc)
        return None
    return images


def build_artifacts(directory: Path, definition: str) -> dict[str, str]:
    """Region -> AMI from a manifest a build wrote to `directory`, or {} when there is none."""
    path = manifest_path(directory, definition)
    return manifest_artifacts(path) if path.is_file() else {}
