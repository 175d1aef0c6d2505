"""EC2's Recycle Bin in the sandbox (moto has none): the `rbin` service's retention rules, and EC2
keeping what a rule covers when it is deregistered or deleted, until it is restored or its
retention period ends.

- `rbin`: CreateRule, GetRule, ListRules, DeleteRule, with the request and response shapes of
  botocore's `rbin` model (REST-JSON). A rule retains one resource type (`EC2_IMAGE`,
  `EBS_SNAPSHOT`) in its account and region: a tag-level rule the resources carrying any of its
  `ResourceTags` (a tag without a value matches the key with any value), a region-level rule
  (no `ResourceTags`) every resource except those carrying one of its `ExcludeResourceTags`.
  A rule is `available` at once (AWS reports `pending` for a moment); lock configurations are
  recorded but never lock a rule.
- EC2: DeregisterImage and DeleteSnapshot of a covered image or snapshot put it in the bin (with
  its tags and launch permissions) instead of deleting it; ListImagesInRecycleBin /
  ListSnapshotsInRecycleBin list the bin; RestoreImageFromRecycleBin /
  RestoreSnapshotFromRecycleBin put it back under the same ID. An image whose snapshots are still
  in the bin (or gone) is not restored: restore the snapshots first (the error code,
  `IncorrectState`, is the sandbox's). An entry leaves the bin for good when its retention period
  ends; the sandbox drops it the next time the bin is looked at.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

# One store for the server process: (account, region) -> what is there.
_lock = threading.Lock()


@dataclass
class _Bin:
    rules: dict[str, dict[str, Any]] = field(default_factory=dict)
    # ID -> (the moto object, entered, leaves)
    images: dict[str, tuple[Any, datetime, datetime]] = field(default_factory=dict)
    snapshots: dict[str, tuple[Any, datetime, datetime]] = field(default_factory=dict)

    def purge(self, now: datetime) -> None:
        for entries in (self.images, self.snapshots):
            for key in [k for k, (_, _, leaves) in entries.items() if leaves <= now]:
                del entries[key]


_bins: dict[tuple[str, str], _Bin] = {}


def _bin(account: str, region: str) -> _Bin:
    found = _bins.get((account, region))
    if found is None:
        found = _bins[(account, region)] = _Bin()
    found.purge(datetime.now(timezone.utc))
    return found


def reset() -> None:
    """Forget every rule and everything in every bin (with moto's reset)."""
    with _lock:
        _bins.clear()


def covering(account: str, region: str, resource_type: str, tags: dict[str, str]) -> int | None:
    """The retention (days) of the longest available rule that covers a resource of this type
    with these tags, or None."""
    days = []
    for rule in _bin(account, region).rules.values():
        if rule["ResourceType"] != resource_type or rule["Status"] != "available":
            continue
        wanted = rule.get("ResourceTags") or []
        if wanted:
            hit = any(_matches(t, tags) for t in wanted)
        else:
            hit = not any(_matches(t, tags) for t in rule.get("ExcludeResourceTags") or [])
        if hit:
            days.append(int(rule["RetentionPeriod"]["RetentionPeriodValue"]))
    return max(days) if days else None


def _matches(tag: dict[str, str], tags: dict[str, str]) -> bool:
    key = tag["ResourceTagKey"]
    value = tag.get("ResourceTagValue")
    return key in tags and (not value or tags[key] == value)


# -- rbin: the REST-JSON service ------------------------------------------------------------------


class _Refused(Exception):
    def __init__(self, status: int, code: str, message: str, reason: str) -> None:
        super().__init__(message)
        self.status, self.code, self.reason = status, code, reason


_SCOPE = re.compile(r"Credential=([^/]+)/\d{8}/([^/]+)/rbin/aws4_request")


def middleware(app: Any) -> Any:
    """The WSGI app with `rbin` requests answered here and moto's reset clearing the bins."""

    def wrapped(environ: dict[str, Any], start_response: Any) -> Any:
        scope = _SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
        if scope is None:
            if environ.get("PATH_INFO") == "/moto-api/reset":
                reset()
            return app(environ, start_response)
        import moto.iam.models

        account = moto.iam.models.get_account_id_from(scope.group(1))
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        try:
            status, answer = _rbin(
                account,
                scope.group(2),
                environ.get("REQUEST_METHOD", "GET"),
                environ.get("PATH_INFO", "/"),
                json.loads(body or b"{}"),
            )
            headers = [("Content-Type", "application/json")]
        except _Refused as exc:
            status = exc.status
            answer = {"Message": str(exc), "Reason": exc.reason}
            headers = [("Content-Type", "application/json"), ("x-amzn-ErrorType", exc.code)]
        payload = b"" if status == 204 else json.dumps(answer, default=_epoch).encode()
        start_response(f"{status} {_REASONS[status]}", headers)
        return [payload]

    return wrapped


_REASONS = {200: "OK", 201: "Created", 204: "No Content", 400: "Bad Request", 404: "Not Found"}


def _epoch(value: Any) -> float:
    return float(value.timestamp())


def _rbin(
    account: str, region: str, method: str, path: str, body: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    with _lock:
        rules = _bin(account, region).rules
        if method == "POST" and path == "/rules":
            rule = _new_rule(account, region, body)
            rules[rule["Identifier"]] = rule
            return 201, _shown(rule, full=True)
        if method == "POST" and path == "/list-rules":
            return 200, _listed(rules, body)
        found = re.fullmatch(r"/rules/([0-9A-Za-z]+)", path)
        if found and method in ("GET", "DELETE"):
            named = rules.get(found.group(1))
            if named is None:
                raise _Refused(
                    404,
                    "ResourceNotFoundException",
                    f"Rule {found.group(1)} does not exist",
                    "RULE_NOT_FOUND",
                )
            if method == "DELETE":
                del rules[named["Identifier"]]
                return 204, {}
            return 200, _shown(named, full=True)
    raise _Refused(
        400,
        "ValidationException",
        f"{method} {path} is not a Recycle Bin operation the sandbox has",
        "INVALID_PARAMETER_VALUE",
    )


def _invalid(message: str) -> _Refused:
    return _Refused(400, "ValidationException", message, "INVALID_PARAMETER_VALUE")


def _new_rule(account: str, region: str, body: dict[str, Any]) -> dict[str, Any]:
    kind = body.get("ResourceType")
    if kind not in ("EBS_SNAPSHOT", "EC2_IMAGE", "EBS_VOLUME"):
        raise _invalid(f"ResourceType {kind!r} is not one of EBS_SNAPSHOT, EC2_IMAGE, EBS_VOLUME")
    period = body.get("RetentionPeriod") or {}
    days = period.get("RetentionPeriodValue")
    most = 7 if kind == "EBS_VOLUME" else 365
    if period.get("RetentionPeriodUnit") != "DAYS" or not isinstance(days, int):
        raise _invalid("RetentionPeriod needs RetentionPeriodValue (days) and unit DAYS")
    if not 1 <= days <= most:
        raise _invalid(f"RetentionPeriodValue {days} is outside 1-{most} days for {kind}")
    if body.get("ResourceTags") and body.get("ExcludeResourceTags"):
        raise _invalid("A rule takes ResourceTags or ExcludeResourceTags, not both")
    identifier = "".join(secrets.choice("0123456789abcdefghijklmnopqrstuvwxyz") for _ in range(11))
    return {
        "Identifier": identifier,
        "RuleArn": f"arn:aws:rbin:{region}:{account}:rule/{identifier}",
        "Description": body.get("Description", ""),
        "ResourceType": kind,
        "RetentionPeriod": {"RetentionPeriodValue": days, "RetentionPeriodUnit": "DAYS"},
        "ResourceTags": list(body.get("ResourceTags") or []),
        "ExcludeResourceTags": list(body.get("ExcludeResourceTags") or []),
        "Tags": list(body.get("Tags") or []),
        "Status": "available",
        **(
            {"LockConfiguration": body["LockConfiguration"], "LockState": "unlocked"}
            if "LockConfiguration" in body
            else {}
        ),
    }


def _shown(rule: dict[str, Any], *, full: bool) -> dict[str, Any]:
    if full:
        return {k: v for k, v in rule.items() if v != [] or k == "ResourceTags"}
    keys = ("Identifier", "Description", "RetentionPeriod", "LockState", "RuleArn")
    return {k: rule[k] for k in keys if k in rule}


def _listed(rules: dict[str, dict[str, Any]], body: dict[str, Any]) -> dict[str, Any]:
    kind = body.get("ResourceType")
    if kind is None:
        raise _invalid("ListRules needs ResourceType")
    chosen = [
        r
        for r in rules.values()
        if r["ResourceType"] == kind
        and all(t in r["ResourceTags"] for t in body.get("ResourceTags") or [])
        and all(t in r["ExcludeResourceTags"] for t in body.get("ExcludeResourceTags") or [])
        and ("LockState" not in body or r.get("LockState", "unlocked") == body["LockState"])
    ]
    start = int(body.get("NextToken") or 0)
    size = int(body.get("MaxResults") or 100)
    page = chosen[start : start + size]
    answer: dict[str, Any] = {"Rules": [_shown(r, full=False) for r in page]}
    if start + size < len(chosen):
        answer["NextToken"] = str(start + size)
    return answer


# -- EC2: the bin ---------------------------------------------------------------------------------


def _tags(resource: Any) -> dict[str, str]:
    return {t["key"]: t["value"] for t in resource.get_tags()}


def patch() -> None:
    """DeregisterImage and DeleteSnapshot keep what a rule covers; the bin's four EC2 calls."""
    from moto.core.responses import ActionResult
    from moto.ec2.exceptions import EC2ClientError
    from moto.ec2.responses.amis import AmisResponse
    from moto.ec2.responses.elastic_block_store import ElasticBlockStore

    deregister_image = AmisResponse.deregister_image
    delete_snapshot = ElasticBlockStore.delete_snapshot

    def keeping(self: Any, kind: str, resource: Any) -> None:
        days = covering(self.current_account, self.region, kind, _tags(resource))
        if days is not None:
            now = datetime.now(timezone.utc)
            entries = _bin(self.current_account, self.region)
            shelf = entries.images if kind == "EC2_IMAGE" else entries.snapshots
            shelf[resource.id] = (resource, now, now + timedelta(days=days))

    def binned_deregister(self: Any) -> Any:
        image = self.ec2_backend.amis.get(self._get_param("ImageId"))
        result = deregister_image(self)
        if image is not None:
            with _lock:
                keeping(self, "EC2_IMAGE", image)
        return result

    def binned_delete_snapshot(self: Any) -> Any:
        snapshot = self.ec2_backend.snapshots.get(self._get_param("SnapshotId"))
        result = delete_snapshot(self)
        if snapshot is not None:
            with _lock:
                keeping(self, "EBS_SNAPSHOT", snapshot)
        return result

    def listed(self: Any, shelf_of: Any, ids_param: str, key: str, extra: Any) -> Any:
        wanted = set(self._get_param(ids_param, []) or [])
        with _lock:
            shelf = shelf_of(_bin(self.current_account, self.region))
            return [
                {
                    key: rid,
                    "RecycleBinEnterTime": entered,
                    "RecycleBinExitTime": leaves,
                    **extra(resource),
                }
                for rid, (resource, entered, leaves) in sorted(shelf.items())
                if not wanted or rid in wanted
            ]

    def list_images(self: Any) -> Any:
        images = listed(
            self,
            lambda b: b.images,
            "ImageIds",
            "ImageId",
            lambda i: {"Name": i.name, "Description": i.description or ""},
        )
        return ActionResult({"Images": images})

    def list_snapshots(self: Any) -> Any:
        snapshots = listed(
            self,
            lambda b: b.snapshots,
            "SnapshotIds",
            "SnapshotId",
            lambda s: {"Description": s.description or "", "VolumeId": s.volume.id},
        )
        return ActionResult({"Snapshots": snapshots})

    def restore_image(self: Any) -> Any:
        ami_id = self._get_param("ImageId")
        with _lock:
            shelf = _bin(self.current_account, self.region).images
            if ami_id not in shelf:
                raise EC2ClientError(
                    "InvalidAMIID.NotFound", f"The image id '[{ami_id}]' is not in the Recycle Bin"
                )
            image = shelf[ami_id][0]
            missing = [
                m["Ebs"]["SnapshotId"]
                for m in _mappings(image)
                if m["Ebs"]["SnapshotId"] not in self.ec2_backend.snapshots
            ]
            if missing:
                raise EC2ClientError(
                    "IncorrectState",
                    f"The snapshots of {ami_id} are not available ({', '.join(missing)}): "
                    "restore them from the Recycle Bin first",
                )
            del shelf[ami_id]
            self.ec2_backend.amis[ami_id] = image
            if ami_id in self.ec2_backend.deleted_amis:
                self.ec2_backend.deleted_amis.remove(ami_id)
        return ActionResult({"Return": True})

    def restore_snapshot(self: Any) -> Any:
        snapshot_id = self._get_param("SnapshotId")
        with _lock:
            shelf = _bin(self.current_account, self.region).snapshots
            if snapshot_id not in shelf:
                raise EC2ClientError(
                    "InvalidSnapshot.NotFound",
                    f"The snapshot '{snapshot_id}' is not in the Recycle Bin",
                )
            snapshot = shelf.pop(snapshot_id)[0]
            self.ec2_backend.snapshots[snapshot_id] = snapshot
        return ActionResult(
            {
                "SnapshotId": snapshot.id,
                "Description": snapshot.description or "",
                "Encrypted": bool(snapshot.encrypted),
                "OwnerId": snapshot.owner_id,
                "State": snapshot.status,
                "VolumeId": snapshot.volume.id,
                "VolumeSize": snapshot.volume.size,
            }
        )

    AmisResponse.deregister_image = binned_deregister  # type: ignore[method-assign]
    ElasticBlockStore.delete_snapshot = binned_delete_snapshot  # type: ignore[method-assign]
    AmisResponse.list_images_in_recycle_bin = list_images  # type: ignore[attr-defined]
    AmisResponse.restore_image_from_recycle_bin = restore_image  # type: ignore[attr-defined]
    ElasticBlockStore.list_snapshots_in_recycle_bin = list_snapshots  # type: ignore[attr-defined]
    ElasticBlockStore.restore_snapshot_from_recycle_bin = restore_snapshot  # type: ignore[attr-defined]


def _mappings(image: Any) -> list[dict[str, Any]]:
    """The image's EBS mappings with a snapshot."""
    found = []
    for mapping in getattr(image, "block_device_mappings", None) or []:
        ebs = mapping.get("Ebs") if isinstance(mapping, dict) else None
        if ebs and ebs.get("SnapshotId"):
            found.append(mapping)
    if not found and getattr(image, "ebs_snapshot", None) is not None:
        found.append({"Ebs": {"SnapshotId": image.ebs_snapshot.id}})
    return found
