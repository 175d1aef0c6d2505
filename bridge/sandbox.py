"""The sandbox: a local AWS (moto in server mode) for demos, tests and benchmarks.

It is a real HTTP endpoint that boto3, Packer and Terraform talk to. These things differ from a
stock moto server:

* Images made by CreateImage or CopyImage get root device type `ebs`, as EBS-backed images do in
  AWS. Stock moto says `standard`, and Packer's amazon-ebs builder then refuses them as a source
  AMI, so a child could never be built on a sandbox-built parent.
* CopyImage honours `CopyImageTags`, `Encrypted` and `KmsKeyId` (stock moto ignores all three;
  without a key, the copy is under the account's AWS-managed `alias/aws/ebs` key, reported by its
  ARN), and DescribeImages reports `Encrypted` and `KmsKeyId` in each EBS block device mapping.
* The keys behind KMS's reserved aliases (`alias/aws/ebs`) are AWS-managed: DescribeKey says
  `KeyManager: AWS` (stock moto says `CUSTOMER`).
* Accounts: the access key `AKIA<account ID>SBOX` acts as that account (any other key, as
  123456789012). An image shared with an account (a UserId launch permission) is visible to it
  as in AWS: listed when `Owners` names its owner or is absent, found by ID, with the viewer's
  own tags only (an owner's tags never reach other accounts). A public image (a launch
  permission for the group `all`) is visible to every account the same way, so an upstream
  publisher (say Canonical's 099720109477) can release a new image. Sharing with organizations
  and OUs is recorded but not resolved into accounts.
* EnableImageDeprecation and DisableImageDeprecation exist (stock moto has neither), and
  DescribeImages reports an image's `DeprecationTime` (`2026-01-01T00:00:00.000Z`) while it has
  one. As in EC2, `DeprecateAt` is rounded to the nearest minute, a time in the past is
  refused (`InvalidParameterValue`), and only the image's owner may set or clear it (another
  account gets `AuthFailure`, "Not authorized for image:<id>"); the owner still sees a
  deprecated image in every listing (EC2 hides deprecated images only from other accounts'
  listings, which the sandbox does not).
* DescribeImageReferences (which moto lacks) answers as EC2 does, for the resource types moto
  has: instances (its `state-name` option; default all states), launch templates (the newest
  `version-depth` versions, default 10), and SSM parameters of DataType `aws:ec2:image` (their
  current value); Image Builder recipes, which moto does not model, are never references.
* DescribeImageAttribute answers `lastLaunchedTime` (stock moto answers nothing): the time the
  last instance was launched from the image by any account, for the image's owner only (another
  account gets `AuthFailure`). EC2 updates it within 24 hours of a launch; the sandbox at once.
* DisableImage and EnableImage follow EC2's rules (stock moto only flips the state): only the
  owner may call them (`AuthFailure` otherwise), disabling removes every launch permission and
  enabling restores none, and DescribeImages leaves disabled images out unless
  `IncludeDisabled` is true.
* Deregistration protection (stock moto has none): EnableImageDeregistrationProtection (with
  `WithCooldown`) and DisableImageDeregistrationProtection for the owner only, DescribeImages'
  `DeregistrationProtection`, and DeregisterImage refusing a protected image (or one in its
  24-hour cooldown) with `OperationNotPermitted`: EC2's documentation names no error code for
  that refusal, so the code is the sandbox's.
* Writes are served one at a time. moto checks S3's conditional writes (`If-None-Match: *`,
  `If-Match`) and then writes, in separate steps; in a threaded server two racing requests could
  both pass the check, where S3 lets only one win. Build leases rely on that guarantee.
* Its public image catalog is a small file (sandbox_images.json) with Ubuntu base images, which
  keeps start-up fast and the example templates' `source_ami` stable. Their creation dates are
  their release dates (stock moto stamps its catalog with the time an account is first used, so
  an image published before that would look older than the catalog's).
* A launch template's (or RunInstances') mapping for the image's root device that names neither
  a size nor a snapshot gets the image's root snapshot, as in EC2 (stock moto refuses it with
  `MissingParameter`), so a template can set only the root volume's type or encryption.
* Auto Scaling's StartInstanceRefresh and DescribeInstanceRefreshes exist (stock moto has
  neither), with EC2 Auto Scaling's request and response shapes. A refresh needs a known group
  and is recorded with its strategy and preferences. It completes at once (`Successful`,
  `PercentageComplete` 100, no instances left to update): the group's instances are replaced in
  one step (with `SkipMatching`, only those not on the group's launch template version's image)
  instead of in batches over time, warm-up and minimum healthy percentage are not applied, and a
  second refresh is never refused as `InstanceRefreshInProgress`.
  DescribeInstanceRefreshes lists a group's refreshes newest first and ignores paging.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Any, TextIO

from bridge.errors import BridgeError

BASE_IMAGE = "ami-0c55b159cbfafe1f0"
ACCESS_KEY = "sandbox"
# The account behind ACCESS_KEY, and a second one (a workload account images are shared with).
ACCOUNT = "123456789012"
OTHER_ACCOUNT = "210987654321"
SECRET_KEY = "sandbox"  # noqa: S105 - the emulator accepts any credentials


def _patch_moto() -> None:
    from moto.ec2.models.amis import AmiBackend

    create_image = AmiBackend.create_image
    copy_image = AmiBackend.copy_image

    def create_ebs_image(self: Any, *args: Any, **kwargs: Any) -> Any:
        image = create_image(self, *args, **kwargs)
        image.root_device_type = "ebs"
        return image

    def copy_ebs_image(self: Any, *args: Any, **kwargs: Any) -> Any:
        image = copy_image(self, *args, **kwargs)
        image.root_device_type = "ebs"
        return image

    AmiBackend.create_image = create_ebs_image  # type: ignore[method-assign]
    AmiBackend.copy_image = copy_ebs_image  # type: ignore[method-assign]
    _patch_copy_image()
    _patch_image_deprecation()
    _patch_image_references()
    _patch_accounts()
    _patch_kms()
    _patch_instance_refresh()
    _patch_root_volume()
    _patch_last_launched()
    _patch_disable_image()
    _patch_deregistration_protection()


def access_key(account: str) -> str:
    """The sandbox access key that acts as `account` (an access key ID's shape: 20 characters)."""
    return f"AKIA{account}SBOX"


def _patch_accounts() -> None:
    """Accounts as AWS has them: the access key AKIA<account ID>SBOX acts as that account, and
    an image another account shared with this one (a UserId launch permission) is described
    like AWS describes it: listed with `Owners` naming its owner (or none), found by ID, and
    without the owner's tags, which never leave the owner's account (the viewer sees its own)."""
    import copy

    import moto.iam.models
    from moto.ec2.models import ec2_backends
    from moto.ec2.models.amis import Ami, AmiBackend
    from moto.ec2.utils import generic_filter

    by_key = moto.iam.models.get_account_id_from

    def account_of(access_key: str) -> str:
        if len(access_key) == 20 and access_key.startswith("AKIA") and access_key.endswith("SBOX"):
            account = access_key[4:16]
            if account.isdigit():
                return account
        return by_key(access_key)

    moto.iam.models.get_account_id_from = account_of

    class SharedAmi(Ami):
        viewer: Any

        def get_tags(self) -> list[dict[str, str]]:
            tags: list[dict[str, str]] = self.viewer.describe_tags(
                filters={"resource-id": [self.id]}
            )
            return tags

    def shared_with(backend: Any) -> list[Any]:
        found = []
        for account in list(ec2_backends.keys()):
            if account == backend.account_id:
                continue
            owner = ec2_backends[account][backend.region_name]
            for ami in list(owner.amis.values()):
                if ami.id in backend.amis:
                    continue  # the stock public catalog, which every account holds itself
                if {"UserId": backend.account_id} in ami.launch_permissions or {
                    "Group": "all"
                } in ami.launch_permissions:
                    view: Any = copy.copy(ami)
                    view.__class__ = SharedAmi
                    view.viewer = backend
                    found.append(view)
        return found

    describe_images = AmiBackend.describe_images

    def describe_with_shared(
        self: Any,
        ami_ids: list[str] | None = None,
        filters: dict[str, Any] | None = None,
        exec_users: list[str] | None = None,
        owners: list[str] | None = None,
    ) -> list[Any]:
        shared = shared_with(self)
        if not shared:
            return describe_images(self, ami_ids, filters, exec_users, owners)
        ids = {ami.id for ami in shared}
        if ami_ids:
            own = [i for i in ami_ids if i not in ids]
            images = describe_images(self, own, filters, exec_users, owners) if own else []
            extra = [ami for ami in shared if ami.id in ami_ids]
        else:
            images = describe_images(self, ami_ids, filters, exec_users, owners)
            wanted = set(owners or ())
            extra = [ami for ami in shared if not wanted or ami.owner_id in wanted]
        return images + (generic_filter(filters, extra) if filters else extra)

    AmiBackend.describe_images = describe_with_shared  # type: ignore[method-assign]


def _patch_copy_image() -> None:
    """CopyImage as EC2 has it: `CopyImageTags` copies the source's tags, `Encrypted` and
    `KmsKeyId` encrypt the copy's snapshot (a copy of an encrypted image stays encrypted), and
    DescribeImages reports each snapshot's encryption and key in its block device mapping."""
    from moto.core.responses import ActionResult
    from moto.ec2.models import ec2_backends
    from moto.ec2.models.amis import Ami
    from moto.ec2.responses.amis import AmisResponse

    def copy_image(self: Any) -> Any:
        source_id = self._get_param("SourceImageId")
        source_region = self._get_param("SourceRegion")
        self.error_on_dryrun()
        image = self.ec2_backend.copy_image(
            source_id, source_region, self._get_param("Name"), self._get_param("Description")
        )
        source_backend = ec2_backends[self.current_account][source_region]
        source = source_backend.describe_images(ami_ids=[source_id])[0]
        if self._get_bool_param("CopyImageTags", False):
            tags = source_backend.describe_tags(filters={"resource-id": [source_id]})
            if tags:
                self.ec2_backend.create_tags([image.id], {t["key"]: t["value"] for t in tags})
        key = self._get_param("KmsKeyId")
        if self._get_bool_param("Encrypted", False) or key or source.ebs_snapshot.encrypted:
            image.ebs_snapshot.encrypted = True
            image.ebs_snapshot.kms_key_id = (
                key or source.ebs_snapshot.kms_key_id or _default_ebs_key(self)
            )
        return ActionResult({"ImageId": image.id})

    mappings = Ami.block_device_mappings

    def block_device_mappings(self: Any) -> Any:
        found = mappings.fget(self)  # type: ignore[attr-defined]
        for mapping in found:
            if mapping.get("Ebs", {}).get("SnapshotId") == self.ebs_snapshot.id:
                mapping["Ebs"]["Encrypted"] = bool(self.ebs_snapshot.encrypted)
                if self.ebs_snapshot.kms_key_id:
                    mapping["Ebs"]["KmsKeyId"] = self.ebs_snapshot.kms_key_id
        return found

    AmisResponse.copy_image = copy_image  # type: ignore[method-assign]
    Ami.block_device_mappings = property(block_device_mappings)  # type: ignore[method-assign,assignment]


def _owned_image(response: Any) -> Any:
    """The image a request's ImageId names, for a call only its owner may make (EC2 answers
    another account `AuthFailure`, and an unknown image InvalidAMIID.NotFound/.Unavailable)."""
    from moto.ec2.exceptions import EC2ClientError

    ami_id = response._get_param("ImageId")
    response.error_on_dryrun()
    image = response.ec2_backend.describe_images(ami_ids=[ami_id])[0]
    if image.owner_id != response.ec2_backend.account_id:
        raise EC2ClientError("AuthFailure", f"Not authorized for image:{ami_id}")
    return image


def _patch_image_deprecation() -> None:
    """EnableImageDeprecation / DisableImageDeprecation as EC2 has them: ImageId and DeprecateAt
    in, `Return` true out; DescribeImages shows `DeprecationTime` while one is set."""
    from datetime import datetime, timedelta, timezone

    from moto.core.responses import ActionResult
    from moto.ec2.exceptions import InvalidParameterValueError
    from moto.ec2.models.amis import Ami
    from moto.ec2.responses.amis import AmisResponse

    Ami.deprecation_time = None  # type: ignore[attr-defined]

    def enable_image_deprecation(self: Any) -> Any:
        raw = str(self._get_param("DeprecateAt") or "")
        try:
            at = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidParameterValueError(raw) from None
        if at.tzinfo is None:
            at = at.replace(tzinfo=timezone.utc)
        at = at.astimezone(timezone.utc)
        # EC2 rounds to the nearest minute.
        at = (at + timedelta(seconds=30)).replace(second=0, microsecond=0)
        if at < datetime.now(timezone.utc):
            raise InvalidParameterValueError(raw)
        image = _owned_image(self)
        image.deprecation_time = at.strftime("%Y-%m-%dT%H:%M:%S.000Z")
        return ActionResult({"Return": True})

    def disable_image_deprecation(self: Any) -> Any:
        image = _owned_image(self)
        image.deprecation_time = None
        return ActionResult({"Return": True})

    AmisResponse.enable_image_deprecation = enable_image_deprecation  # type: ignore[attr-defined]
    AmisResponse.disable_image_deprecation = disable_image_deprecation  # type: ignore[attr-defined]


def _patch_image_references() -> None:
    """DescribeImageReferences, as EC2 answers it (see the module docstring)."""
    from moto.core.responses import ActionResult
    from moto.ec2.responses import EC2Response
    from moto.ssm.models import ssm_backends

    def describe_image_references(self: Any) -> Any:
        self.error_on_dryrun()
        wanted = set(self._get_param("ImageIds", []))
        asked = {
            t["ResourceType"]: {
                o["OptionName"]: o.get("OptionValues", []) for o in t.get("ResourceTypeOptions", [])
            }
            for t in self._get_param("ResourceTypes", [])
        }
        if self._get_bool_param("IncludeAllResourceTypes", False):
            for kind in ("ec2:Instance", "ec2:LaunchTemplate", "ssm:Parameter"):
                asked.setdefault(kind, {})
        region, account = self.region, self.current_account
        found: list[dict[str, str]] = []
        if "ec2:Instance" in asked:
            states = set(asked["ec2:Instance"].get("state-name", []))
            for instance in self.ec2_backend.all_instances():
                if instance.image_id in wanted and (not states or instance.state in states):
                    arn = f"arn:aws:ec2:{region}:{account}:instance/{instance.id}"
                    found.append(
                        {"ImageId": instance.image_id, "ResourceType": "ec2:Instance", "Arn": arn}
                    )
        if "ec2:LaunchTemplate" in asked:
            depth = int((asked["ec2:LaunchTemplate"].get("version-depth") or ["10"])[0])
            for template in self.ec2_backend.launch_templates.values():
                images = {v.image_id for v in template.versions[-depth:]} & wanted
                arn = f"arn:aws:ec2:{region}:{account}:launch-template/{template.id}"
                found += [
                    {"ImageId": i, "ResourceType": "ec2:LaunchTemplate", "Arn": arn}
                    for i in sorted(images)
                ]
        if "ssm:Parameter" in asked:
            ssm = ssm_backends[account][region]
            for versions in list(ssm._parameters.values()):
                if not versions:
                    continue
                current = versions[-1]
                if current.data_type == "aws:ec2:image" and current.value in wanted:
                    arn = f"arn:aws:ssm:{region}:{account}:parameter{current.name}"
                    found.append(
                        {"ImageId": current.value, "ResourceType": "ssm:Parameter", "Arn": arn}
                    )
        return ActionResult({"ImageReferences": found})

    EC2Response.describe_image_references = describe_image_references  # type: ignore[attr-defined]


def _default_ebs_key(response: Any) -> str:
    """The ARN of the account's AWS-managed EBS key (alias/aws/ebs), which EC2 encrypts with
    when no key is named, as EC2 reports it: a key ARN, not the alias."""
    from moto.kms.models import kms_backends

    kms = kms_backends[response.current_account][response.region]
    key_id = kms.get_key_id_from_alias("alias/aws/ebs")  # made on first use, as in AWS
    assert key_id is not None
    arn: str = kms.describe_key(key_id).arn
    return arn


def _patch_kms() -> None:
    """The keys behind KMS's reserved aliases (alias/aws/ebs, ...) are AWS-managed, as in AWS:
    DescribeKey says KeyManager AWS (stock moto says CUSTOMER)."""
    from moto.kms.models import KmsBackend

    generate = KmsBackend._generate_default_keys

    def generate_aws_managed(self: Any, alias_name: str) -> str | None:
        key_id = generate(self, alias_name)
        if key_id is not None:
            self.keys[key_id].key_manager = "AWS"
        return key_id

    KmsBackend._generate_default_keys = generate_aws_managed  # type: ignore[method-assign]


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


def _patch_last_launched() -> None:
    """DescribeImageAttribute `lastLaunchedTime` as EC2 has it: when an instance was last
    launched from the image, by any account; only the image's owner may ask."""
    from datetime import datetime, timezone

    from moto.core.responses import ActionResult
    from moto.ec2.responses.amis import AmisResponse
    from moto.ec2.responses.instances import InstanceResponse

    launched: dict[tuple[str, str], str] = {}  # (region, AMI) -> when, as EC2 writes it
    run_instances = InstanceResponse.run_instances
    describe_image_attribute = AmisResponse.describe_image_attribute

    def recording_run_instances(self: Any) -> Any:
        result = run_instances(self)
        now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        launched[(self.region, str(self._get_param("ImageId")))] = now
        return result

    def last_launched(self: Any) -> Any:
        if self._get_param("Attribute") != "lastLaunchedTime":
            return describe_image_attribute(self)
        ami_id = _owned_image(self).id
        when = launched.get((self.region, ami_id))
        return ActionResult(
            {"ImageId": ami_id, "LastLaunchedTime": {"Value": when} if when else {}}
        )

    InstanceResponse.run_instances = recording_run_instances  # type: ignore[method-assign]
    AmisResponse.describe_image_attribute = last_launched  # type: ignore[method-assign]


def _patch_disable_image() -> None:
    """DisableImage and EnableImage as EC2 has them: only the owner may; disabling removes every
    launch permission (a shared or public image becomes private) and enabling restores none; a
    disabled image is left out of DescribeImages unless `IncludeDisabled` is true."""
    from moto.core.responses import ActionResult
    from moto.ec2.responses.amis import AmisResponse

    describe_images = AmisResponse.describe_images
    disable_image = AmisResponse.disable_image
    enable_image = AmisResponse.enable_image

    def disabling(self: Any) -> Any:
        image = _owned_image(self)
        result = disable_image(self)
        image.launch_permissions = []
        return result

    def enabling(self: Any) -> Any:
        _owned_image(self)
        return enable_image(self)

    def without_disabled(self: Any) -> Any:
        result = describe_images(self)
        if str(self._get_param("IncludeDisabled", "false")).lower() == "true":
            return result
        images = result.result["Images"]  # type: ignore[index]
        return ActionResult({"Images": [i for i in images if i.state != "disabled"]})

    AmisResponse.disable_image = disabling  # type: ignore[method-assign]
    AmisResponse.enable_image = enabling  # type: ignore[method-assign]
    AmisResponse.describe_images = without_disabled  # type: ignore[method-assign]


def _patch_deregistration_protection() -> None:
    """EnableImageDeregistrationProtection / DisableImageDeregistrationProtection (stock moto has
    neither): only the owner may call them; DescribeImages reports `DeregistrationProtection`;
    DeregisterImage refuses a protected image, and one whose protection was lifted less than 24
    hours ago when it was enabled `WithCooldown`."""
    from datetime import datetime, timedelta, timezone

    from moto.core.responses import ActionResult
    from moto.ec2.exceptions import EC2ClientError
    from moto.ec2.models.amis import Ami
    from moto.ec2.responses.amis import AmisResponse

    Ami.deregistration_protection = "disabled"  # type: ignore[attr-defined]
    Ami.protection_cooldown = False  # type: ignore[attr-defined]
    Ami.protection_lifted = None  # type: ignore[attr-defined]
    deregister_image = AmisResponse.deregister_image

    def enable(self: Any) -> Any:
        image = _owned_image(self)
        cooldown = str(self._get_param("WithCooldown", "false")).lower() == "true"
        image.protection_cooldown = cooldown
        image.protection_lifted = None
        image.deregistration_protection = "enabled-with-cooldown" if cooldown else "enabled"
        return ActionResult({"Return": image.deregistration_protection})

    def disable(self: Any) -> Any:
        image = _owned_image(self)
        if image.deregistration_protection != "disabled" and image.protection_cooldown:
            image.protection_lifted = datetime.now(timezone.utc)
        image.deregistration_protection = "disabled"
        return ActionResult({"Return": "disabled"})

    def guarded_deregister(self: Any) -> Any:
        ami_id = self._get_param("ImageId")
        found = [a for a in self.ec2_backend.amis.values() if a.id == ami_id]
        if found:
            image = found[0]
            lifted = image.protection_lifted
            cooling = lifted is not None and datetime.now(timezone.utc) - lifted < timedelta(1)
            if image.deregistration_protection != "disabled" or cooling:
                raise EC2ClientError(
                    "OperationNotPermitted",
                    f"The image {ami_id} has deregistration protection enabled"
                    + (" (its 24-hour cooldown has not ended)" if cooling else "")
                    + ". Disable deregistration protection first.",
                )
        return deregister_image(self)

    AmisResponse.enable_image_deregistration_protection = enable  # type: ignore[attr-defined]
    AmisResponse.disable_image_deregistration_protection = disable  # type: ignore[attr-defined]
    AmisResponse.deregister_image = guarded_deregister  # type: ignore[method-assign]


def _patch_root_volume() -> None:
    """A mapping of the image's root device without a size or snapshot uses the image's root
    snapshot, as EC2 does."""
    from moto.ec2.models.instances import Instance

    add_block_device = Instance.add_block_device

    def add_root_aware(
        self: Any, size: Any, device_path: str, snapshot_id: Any, *args: Any, **kwargs: Any
    ) -> None:
        if size is None and snapshot_id is None:
            image = self.ec2_backend.amis.get(self.image_id)
            if image is not None and device_path == image.root_device_name:
                snapshot_id = image.ebs_snapshot.id
        add_block_device(self, size, device_path, snapshot_id, *args, **kwargs)

    Instance.add_block_device = add_root_aware  # type: ignore[method-assign]


def _serialized_writes(app: Any) -> Any:
    lock = threading.Lock()

    def wrapped(environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
            return app(environ, start_response)
        with lock:
            return list(app(environ, start_response))

    return wrapped


def serve(host: str, port: int, *, announce: TextIO) -> None:
    """Serve the sandbox until SIGTERM/SIGINT; prints `endpoint <url>` once it listens."""
    images = resources.files("bridge").joinpath("sandbox_images.json")
    with resources.as_file(images) as path:
        os.environ.setdefault("MOTO_AMIS_PATH", str(path))
        try:
            from moto.moto_server.werkzeug_app import (
                DomainDispatcherApplication,
                MotoRequestHandler,
                create_backend_app,
            )
            from werkzeug.serving import make_server
        except ImportError:
            raise BridgeError(
                "The sandbox needs moto's server mode, which is not installed. Install it with "
                "`pip install 'ami-chain-bridge[sandbox]'` (or run `make setup`)."
            ) from None
        _patch_moto()
        app = _serialized_writes(DomainDispatcherApplication(create_backend_app))
        try:
            server = make_server(host, port, app, threaded=True, request_handler=MotoRequestHandler)
        except OSError as exc:
            raise BridgeError(
                f"The sandbox cannot listen on {host}:{port}: {exc.strerror}. Pick another port "
                "(--port 0 picks a free one)."
            ) from None

        def stop(signum: int, frame: Any) -> None:
            threading.Thread(target=server.shutdown, daemon=True).start()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        print(f"endpoint http://{host}:{server.server_port}", file=announce, flush=True)
        server.serve_forever()


@dataclass
class Sandbox:
    """A running sandbox server process."""

    endpoint: str
    process: subprocess.Popen[str]

    def env(self, region: str = "us-east-1", account: str = ACCOUNT) -> dict[str, str]:
        """Environment variables that point AWS SDKs, the bridge and Packer at the sandbox, as
        `account` (ACCOUNT, or OTHER_ACCOUNT for a second one)."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY if account == ACCOUNT else access_key(account),
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": region,
            "AWS_DEFAULT_REGION": region,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def reset(self) -> None:
        """Forget every resource (moto's reset API)."""
        # The endpoint is always the http:// loopback URL this module started.
        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")  # noqa: S310
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            response.read()

    def stop(self) -> None:
        """Stop the server process."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start(host: str = "127.0.0.1", port: int = 0, *, log: TextIO | None = None) -> Sandbox:
    """Start a sandbox server process on a free loopback port and wait until it answers."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bridge", "sandbox", "--host", host, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=log if log is not None else subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if not line.startswith("endpoint "):
        process.kill()
        process.wait()
        raise BridgeError(
            f"The sandbox did not start (it said {line!r}). Run `ami-bridge sandbox` to see why; "
            "`make setup` installs what it needs."
        )
    return Sandbox(endpoint=line.split(" ", 1)[1], process=process)


@contextmanager
def running(**kwargs: Any) -> Iterator[Sandbox]:
    """A sandbox for the duration of a with-block."""
    box = start(**kwargs)
    try:
        yield box
    finally:
        box.stop()
