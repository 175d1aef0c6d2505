"""The sandbox's EC2 instances as EC2 reports their health (sandbox/__init__.py lists the
differences from stock moto)."""

from __future__ import annotations

from typing import Any

# The tag that makes an image's instances fail EC2's reachability check (sandbox/__init__.py).
IMPAIRED_TAG = ("sandbox:boot", "impaired")


def patch() -> None:
    """DescribeInstanceStatus reports an instance of an image tagged IMPAIRED_TAG `impaired`, as
    EC2 does for an instance whose operating system does not come up."""
    from datetime import datetime, timezone

    from moto.ec2.models.instances import Instance

    healthy = Instance.instance_status

    def instance_status(self: Any) -> dict[str, Any]:
        status: dict[str, Any] = healthy.fget(self)  # type: ignore[attr-defined]
        key, value = IMPAIRED_TAG
        tags = self.ec2_backend.tags.get(self.image_id, {})
        if status.get("Status") != "ok" or tags.get(key) != value:
            return status
        since = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        return {
            "Details": [{"Name": "reachability", "Status": "failed", "ImpairedSince": since}],
            "Status": "impaired",
        }

    Instance.instance_status = property(instance_status)  # type: ignore[method-assign,assignment]
