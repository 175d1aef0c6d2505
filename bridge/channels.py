"""Promotion channels: named pointers to images, kept as SSM parameters (AWS's own primitive).

A channel of a definition is the parameter `/<prefix>/<definition>/<channel>` (DataType
`aws:ec2:image`) in every region of the definition; its value is the image's AMI in that region,
and its description names the build (`DESCRIPTION`), so any reader can tell which build a value
is. Parameter versions are the channel's history.
"""

from __future__ import annotations

import re

# A channel's name: what people call stages (dev, staging, prod).
CHANNEL_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
DESCRIPTION = "ami-chain {definition} build {build_id} fingerprint {fingerprint}"
_DESCRIBED = re.compile(r"^ami-chain (\S+) build (\S+) fingerprint (\S+)$")


def parameter_name(prefix: str, definition: str, channel: str) -> str:
    """The SSM parameter that holds `definition`'s `channel`."""
    return f"/{prefix.strip('/')}/{definition}/{channel}"


def described(description: str) -> tuple[str, str, str] | None:
    """(definition, build ID, fingerprint) from a channel parameter's description, or None."""
    match = _DESCRIBED.match(description or "")
    return (match[1], match[2], match[3]) if match else None
