"""The sandbox's corrections and additions to moto's EC2, and through kms_autoscaling.py to its KMS
and Auto Scaling (the package's docstring lists each difference from a stock moto server).
`patch()` applies them all, once, in the server process."""

from __future__ import annotations

from typing import Any

from bridge.sandbox import instances, kms_autoscaling


def patch() -> None:
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
    kms_autoscaling.patch()
    _patch_root_volume()
    _patch_last_launched()
    _patch_disable_image()
    _patch_deregistration_protection()
    _patch_archived_launch()
    instances.patch()


def _patch_accounts() -> None:
    """Accounts as AWS has them: the access key AKIA<account ID>SBOX acts as that account, and
    an image another account shared with this one (a UserId launch permission) is described
    like AWS describes it: listed with `Owners` naming its owner (or none), found by ID (with
    `Owners`, only when they name its owner: "self" is never another account's image), and
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
        # `Owners` applies to images asked for by ID too; "self" is the viewer's account, which
        # never owns an image shared with it.
        wanted = set(owners or ())
        extra = [ami for ami in shared if not wanted or ami.owner_id in wanted]
        if ami_ids:
            own = [i for i in ami_ids if i not in ids]
            images = describe_images(self, own, filters, exec_users, owners) if own else []
            extra = [ami for ami in extra if ami.id in ami_ids]
        else:
            images = describe_images(self, ami_ids, filters, exec_users, owners)
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


def _patch_archived_launch() -> None:
    """RunInstances refuses an image whose snapshot is in the archive tier (restore it first)."""
    from moto.ec2.exceptions import EC2ClientError
    from moto.ec2.responses.instances import InstanceResponse

    run_instances = InstanceResponse.run_instances

    def launchable_only(self: Any) -> Any:
        image = self.ec2_backend.amis.get(self._get_param("ImageId"))
        snapshot = getattr(image, "ebs_snapshot", None)
        if snapshot is not None and getattr(snapshot, "storage_tier", "standard") == "archive":
            raise EC2ClientError(
                "IncorrectState",
                f"The snapshot {snapshot.id} of {image.id} is archived: restore it "
                "(RestoreSnapshotTier) before launching the image",
            )
        return run_instances(self)

    InstanceResponse.run_instances = launchable_only  # type: ignore[method-assign]


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
