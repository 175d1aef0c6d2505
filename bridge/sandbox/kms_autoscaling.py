"""The sandbox's additions to moto's KMS and Auto Scaling (the package's docstring lists each
difference from a stock moto server); ec2.patch() applies them with its own."""

from __future__ import annotations

import uuid
from typing import Any


def patch() -> None:
    _patch_kms()
    _patch_instance_refresh()


def _patch_kms() -> None:
    """The keys behind KMS's reserved aliases (alias/aws/ebs, ...) are AWS-managed, as in AWS:
    DescribeKey says KeyManager AWS (stock moto says CUSTOMER); Verify refuses a bad signature."""
    from moto.kms.models import KmsBackend

    generate = KmsBackend._generate_default_keys

    def generate_aws_managed(self: Any, alias_name: str) -> str | None:
        key_id = generate(self, alias_name)
        if key_id is not None:
            self.keys[key_id].key_manager = "AWS"
        return key_id

    KmsBackend._generate_default_keys = generate_aws_managed  # type: ignore[method-assign]

    # Verify refuses a signature that does not match with KMSInvalidSignatureException, as KMS
    # does (stock moto answers SignatureValid false).
    from moto.core.exceptions import JsonRESTError
    from moto.kms.responses import KmsResponse

    verify = KmsResponse.verify

    def refusing_verify(self: Any) -> str:
        import json

        answer = verify(self)
        if json.loads(answer).get("SignatureValid") is False:
            raise JsonRESTError("KMSInvalidSignatureException", "")
        return answer

    KmsResponse.verify = refusing_verify  # type: ignore[method-assign]


def _patch_instance_refresh() -> None:
    """StartInstanceRefresh / DescribeInstanceRefreshes as EC2 Auto Scaling has them (see the
    module docstring for how a sandbox refresh differs: it completes at once)."""
    from datetime import datetime, timezone

    from moto.autoscaling.exceptions import ValidationError
    from moto.autoscaling.models import AutoScalingBackend
    from moto.autoscaling.responses import AutoScalingResponse
    from moto.core.responses import ActionResult

    AutoScalingBackend.instance_refreshes = None  # type: ignore[attr-defined]

    def refreshes(backend: Any) -> list[dict[str, Any]]:
        if backend.instance_refreshes is None:
            backend.instance_refreshes = []
        found: list[dict[str, Any]] = backend.instance_refreshes
        return found

    def start_instance_refresh(self: Any) -> Any:
        name = self._get_param("AutoScalingGroupName")
        backend = self.autoscaling_backend
        if name not in backend.autoscaling_groups:
            raise ValidationError(f"AutoScalingGroup name not found - {name}")
        preferences = self._get_param("Preferences") or {}
        # The refresh's work, done at once: the instances not on the group's launch template
        # version (all of them unless SkipMatching) are replaced.
        group = backend.autoscaling_groups[name]
        for state in list(group.active_instances()):
            if not preferences.get("SkipMatching") or state.instance.image_id != group.image_id:
                backend.terminate_instance(state.instance.id, should_decrement=False)
        group.set_desired_capacity(group.desired_capacity)
        now = datetime.now(timezone.utc)
        refresh: dict[str, Any] = {
            "InstanceRefreshId": str(uuid.uuid4()),
            "AutoScalingGroupName": name,
            "Status": "Successful",
            "StatusReason": "",
            "StartTime": now,
            "EndTime": now,
            "PercentageComplete": 100,
            "InstancesToUpdate": 0,
            "Strategy": self._get_param("Strategy") or "Rolling",
        }
        for key in ("Preferences", "DesiredConfiguration"):
            value = self._get_param(key)
            if value:
                refresh[key] = value
        refreshes(backend).append(refresh)
        return ActionResult({"InstanceRefreshId": refresh["InstanceRefreshId"]})

    def describe_instance_refreshes(self: Any) -> Any:
        name = self._get_param("AutoScalingGroupName")
        wanted = set(self._get_param("InstanceRefreshIds") or ())
        found = [
            r
            for r in reversed(refreshes(self.autoscaling_backend))
            if r["AutoScalingGroupName"] == name
            and (not wanted or r["InstanceRefreshId"] in wanted)
        ]
        return ActionResult({"InstanceRefreshes": found})

    AutoScalingResponse.start_instance_refresh = start_instance_refresh  # type: ignore[attr-defined]
    AutoScalingResponse.describe_instance_refreshes = describe_instance_refreshes  # type: ignore[attr-defined]
