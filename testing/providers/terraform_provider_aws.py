"""STAND-IN for hashicorp/aws: resources `aws_autoscaling_group`, `aws_launch_template` and
`aws_s3_object`, data source `aws_region`.

Not the real provider: a Python provider (PyPI `tf` package, plugin protocol 6) for machines that
cannot download hashicorp/aws. It keeps the real provider's attribute names and types for every
attribute this project's modules use, and creates, reads, updates and deletes the objects in
whatever AWS endpoint botocore is pointed at (the sandbox, through AWS_ENDPOINT_URL).

Known differences:

* Nested blocks are declared with set nesting (the real provider uses lists; the configuration
  syntax is the same), and only the attributes below exist.
* Defaults the real provider fills in are not filled in (for example instance_refresh's
  min_healthy_percentage of 90, or a launch template's default metadata options): unset
  attributes stay null and are left out of the API call, so AWS's own defaults apply.
* aws_launch_template reads back only image_id, instance_type and the version numbers: a change
  made outside Terraform to any other attribute is not seen as drift.
* aws_autoscaling_group does not wait for capacity (wait_for_capacity_timeout does not exist),
  deletes with ForceDelete instead of draining the group first, and does not cancel a refresh
  still in progress before starting a new one (sandbox refreshes complete at once). Triggers may
  name availability_zones, desired_capacity, tag and vpc_zone_identifier.
"""

from __future__ import annotations

import copy
import sys
import uuid
from typing import Any

import botocore_data
from botocore.exceptions import ClientError
from tf import blocks, schema, types
from tf import provider as p
from tf.iface import (
    Config,
    CreateContext,
    DeleteContext,
    PlanContext,
    ReadContext,
    ReadDataContext,
    State,
    UpdateContext,
    UpgradeContext,
)
from tf.runner import run_provider
from tf.types import Unknown
from tf.utils import Diagnostics


def _attr(name: str, kind: Any, **flags: Any) -> schema.Attribute:
    return schema.Attribute(name, kind, **flags)


class AwsProvider(p.Provider):
    def __init__(self) -> None:
        self.config: dict[str, Any] = {}
        self._clients: dict[str, Any] = {}

    def full_name(self) -> str:
        return "registry.terraform.io/hashicorp/aws"

    def get_model_prefix(self) -> str:
        return "aws_"

    def get_provider_schema(self, diags: Diagnostics) -> schema.Schema:
        return schema.Schema(
            attributes=[
                _attr("region", types.String(), optional=True),
                _attr("s3_use_path_style", types.Bool(), optional=True),
                _attr("skip_credentials_validation", types.Bool(), optional=True),
                _attr("skip_requesting_account_id", types.Bool(), optional=True),
            ]
        )

    def validate_config(self, diags: Diagnostics, config: Config) -> None:
        pass

    def configure_provider(self, diags: Diagnostics, config: Config) -> None:
        self.config = dict(config)

    def client(self, service: str) -> Any:
        if service not in self._clients:
            # Made here, not at import: Terraform starts the provider several times per command,
            # and most starts only read its schema (botocore's import is most of a start).
            self._clients[service] = botocore_data.session().create_client(
                service, region_name=self.config.get("region")
            )
        return self._clients[service]

    def region(self) -> str:
        return str(self.client("ec2").meta.region_name)

    def get_data_sources(self) -> list[type[p.DataSource]]:
        return [Region]

    def get_resources(self) -> list[type[p.Resource]]:
        return [AutoscalingGroup, LaunchTemplate, S3Object]


class Region(p.DataSource):
    """data "aws_region": the provider's region (no arguments), as the real data source reads it
    with none given: `name` and `id` are the region, `endpoint` its EC2 endpoint host."""

    def __init__(self, provider: AwsProvider) -> None:
        self.provider = provider

    @classmethod
    def get_name(cls) -> str:
        return "region"

    @classmethod
    def get_schema(cls) -> schema.Schema:
        return schema.Schema(
            attributes=[
                _attr("name", types.String(), optional=True, computed=True),
                _attr("endpoint", types.String(), optional=True, computed=True),
                _attr("description", types.String(), computed=True),
                _attr("id", types.String(), computed=True),
            ]
        )

    def read(self, ctx: ReadDataContext, config: Config) -> State | None:
        region = config.get("name") or self.provider.region()
        return {
            "name": region,
            "endpoint": f"ec2.{region}.amazonaws.com",
            "description": region,
            "id": region,
        }


def _error(ctx: Any, summary: str, exc: ClientError) -> None:
    error = exc.response.get("Error", {})
    ctx.diagnostics.add_error(summary, f"{error.get('Code')}: {error.get('Message')}")


def _tags(tags: dict[str, str] | None) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in sorted((tags or {}).items())]


class _Resource(p.Resource):
    """What both resources share: the provider, the type name, schema version 0."""

    name = ""

    def __init__(self, provider: AwsProvider) -> None:
        self.provider = provider

    @classmethod
    def get_name(cls) -> str:
        return cls.name

    def upgrade(self, ctx: UpgradeContext, version: int, old: State) -> State:
        return old


def _flag(value: Any) -> bool | None:
    """The real provider's tri-state strings ("true", "false", "" = unset) as API booleans."""
    if value in (None, ""):
        return None
    if isinstance(value, bool):
        return value
    return str(value).lower() == "true"


def _set(**values: Any) -> dict[str, Any]:
    """An API structure with the unset (None) members dropped."""
    return {k: v for k, v in values.items() if v is not None}


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


class LaunchTemplate(_Resource):
    name = "launch_template"

    @classmethod
    def get_schema(cls) -> schema.Schema:
        metadata = schema.Block(
            attributes=[
                _attr("http_endpoint", types.String(), optional=True),
                _attr("http_tokens", types.String(), optional=True),
                _attr("http_put_response_hop_limit", types.Number(), optional=True),
                _attr("http_protocol_ipv6", types.String(), optional=True),
                _attr("instance_metadata_tags", types.String(), optional=True),
            ]
        )
        tag_spec = schema.Block(
            attributes=[
                _attr("resource_type", types.String(), optional=True),
                _attr("tags", types.Map(types.String()), optional=True),
            ]
        )
        ebs = schema.Block(
            attributes=[
                # Strings in the real provider too: "true", "false" or "" (unset).
                _attr("delete_on_termination", types.String(), optional=True),
                _attr("encrypted", types.String(), optional=True),
                _attr("iops", types.Number(), optional=True),
                _attr("kms_key_id", types.String(), optional=True),
                _attr("snapshot_id", types.String(), optional=True),
                _attr("throughput", types.Number(), optional=True),
                _attr("volume_size", types.Number(), optional=True),
                _attr("volume_type", types.String(), optional=True),
            ]
        )
        mapping = schema.Block(
            attributes=[
                _attr("device_name", types.String(), optional=True),
                _attr("no_device", types.String(), optional=True),
                _attr("virtual_name", types.String(), optional=True),
            ],
            block_types=[blocks.SetNestedBlock("ebs", ebs)],
        )
        profile = schema.Block(
            attributes=[
                _attr("arn", types.String(), optional=True),
                _attr("name", types.String(), optional=True),
            ]
        )
        interface = schema.Block(
            attributes=[
                _attr("associate_public_ip_address", types.String(), optional=True),
                _attr("delete_on_termination", types.String(), optional=True),
                _attr("description", types.String(), optional=True),
                _attr("device_index", types.Number(), optional=True),
                _attr("security_groups", types.Set(types.String()), optional=True),
                _attr("subnet_id", types.String(), optional=True),
            ]
        )
        return schema.Schema(
            attributes=[
                _attr("id", types.String(), computed=True),
                _attr("arn", types.String(), computed=True),
                _attr("name", types.String(), optional=True, computed=True, requires_replace=True),
                _attr("name_prefix", types.String(), optional=True, requires_replace=True),
                _attr("description", types.String(), optional=True),
                _attr("image_id", types.String(), optional=True),
                _attr("instance_type", types.String(), optional=True),
                _attr("key_name", types.String(), optional=True),
                _attr("user_data", types.String(), optional=True),
                _attr("vpc_security_group_ids", types.Set(types.String()), optional=True),
                _attr("update_default_version", types.Bool(), optional=True),
                _attr("default_version", types.Number(), computed=True),
                _attr("latest_version", types.Number(), computed=True),
                _attr("tags", types.Map(types.String()), optional=True),
                _attr("tags_all", types.Map(types.String()), computed=True),
            ],
            block_types=[
                blocks.SetNestedBlock("block_device_mappings", mapping),
                blocks.SetNestedBlock("iam_instance_profile", profile),
                blocks.SetNestedBlock("metadata_options", metadata),
                blocks.SetNestedBlock("network_interfaces", interface),
                blocks.SetNestedBlock("tag_specifications", tag_spec),
            ],
        )

    def _data(self, state: State) -> dict[str, Any]:
        """LaunchTemplateData for CreateLaunchTemplate(Version), as the real provider expands it."""
        data: dict[str, Any] = _set(
            ImageId=state.get("image_id") or None,
            InstanceType=state.get("instance_type") or None,
            KeyName=state.get("key_name") or None,
            UserData=state.get("user_data") or None,
            SecurityGroupIds=sorted(state["vpc_security_group_ids"])
            if state.get("vpc_security_group_ids")
            else None,
        )
        mappings = []
        for m in state.get("block_device_mappings") or []:
            ebs = [
                _set(
                    DeleteOnTermination=_flag(e.get("delete_on_termination")),
                    Encrypted=_flag(e.get("encrypted")),
                    Iops=_int(e.get("iops")),
                    KmsKeyId=e.get("kms_key_id") or None,
                    SnapshotId=e.get("snapshot_id") or None,
                    Throughput=_int(e.get("throughput")),
                    VolumeSize=_int(e.get("volume_size")),
                    VolumeType=e.get("volume_type") or None,
                )
                for e in m.get("ebs") or []
            ]
            mappings.append(
                _set(
                    DeviceName=m.get("device_name") or None,
                    NoDevice=m.get("no_device") or None,
                    VirtualName=m.get("virtual_name") or None,
                    Ebs=ebs[0] if ebs else None,
                )
            )
        if mappings:
            data["BlockDeviceMappings"] = sorted(mappings, key=lambda m: m.get("DeviceName", ""))
        for profile in state.get("iam_instance_profile") or []:
            found = _set(Arn=profile.get("arn") or None, Name=profile.get("name") or None)
            if found:
                data["IamInstanceProfile"] = found
        interfaces = [
            _set(
                AssociatePublicIpAddress=_flag(n.get("associate_public_ip_address")),
                DeleteOnTermination=_flag(n.get("delete_on_termination")),
                Description=n.get("description") or None,
                DeviceIndex=_int(n.get("device_index")),
                Groups=sorted(n["security_groups"]) if n.get("security_groups") else None,
                SubnetId=n.get("subnet_id") or None,
            )
            for n in state.get("network_interfaces") or []
        ]
        if interfaces:
            data["NetworkInterfaces"] = sorted(interfaces, key=lambda n: n.get("DeviceIndex", 0))
        for m in state.get("metadata_options") or []:
            data["MetadataOptions"] = _set(
                HttpEndpoint=m.get("http_endpoint") or None,
                HttpTokens=m.get("http_tokens") or None,
                HttpPutResponseHopLimit=_int(m.get("http_put_response_hop_limit")),
                HttpProtocolIpv6=m.get("http_protocol_ipv6") or None,
                InstanceMetadataTags=m.get("instance_metadata_tags") or None,
            )
        specs = [
            {"ResourceType": s["resource_type"], "Tags": _tags(s.get("tags"))}
            for s in state.get("tag_specifications") or []
            if s.get("resource_type")
        ]
        if specs:
            data["TagSpecifications"] = sorted(specs, key=lambda s: s["ResourceType"])
        return data

    def plan(self, ctx: PlanContext, current: State | None, planned: State) -> State:
        if current is not None and ctx.changed_fields:
            planned["latest_version"] = Unknown
            if planned.get("update_default_version"):
                planned["default_version"] = Unknown
            planned["tags_all"] = Unknown if "tags" in ctx.changed_fields else current["tags_all"]
        return planned

    def create(self, ctx: CreateContext, planned: State) -> State | None:
        ec2 = self.provider.client("ec2")
        name = planned.get("name")
        if name in (None, Unknown):
            name = (planned.get("name_prefix") or "terraform-") + uuid.uuid4().hex[:26]
        kwargs: dict[str, Any] = {
            "LaunchTemplateName": name,
            "LaunchTemplateData": self._data(planned),
        }
        if planned.get("description"):
            kwargs["VersionDescription"] = planned["description"]
        if planned.get("tags"):
            kwargs["TagSpecifications"] = [
                {"ResourceType": "launch-template", "Tags": _tags(planned["tags"])}
            ]
        try:
            template = ec2.create_launch_template(**kwargs)["LaunchTemplate"]
        except ClientError as exc:
            _error(ctx, "creating EC2 Launch Template", exc)
            return None
        state = copy.deepcopy(planned)
        state.update(
            id=template["LaunchTemplateId"],
            arn=self._arn(template),
            name=name,
            latest_version=template["LatestVersionNumber"],
            default_version=template["DefaultVersionNumber"],
            tags_all=dict(planned.get("tags") or {}),
        )
        return state

    def _arn(self, template: dict[str, Any]) -> str:
        account = template.get("CreatedBy", "arn:aws:iam::123456789012:root").split(":")[4]
        return (
            f"arn:aws:ec2:{self.provider.region()}:{account}:launch-template/"
            f"{template['LaunchTemplateId']}"
        )

    def read(self, ctx: ReadContext, current: State) -> State | None:
        ec2 = self.provider.client("ec2")
        try:
            found = ec2.describe_launch_templates(LaunchTemplateIds=[current["id"]])[
                "LaunchTemplates"
            ]
        except ClientError as exc:
            if "NotFound" in exc.response.get("Error", {}).get("Code", ""):
                return None
            _error(ctx, "reading EC2 Launch Template", exc)
            return None
        if not found:
            return None
        template = found[0]
        version = ec2.describe_launch_template_versions(
            LaunchTemplateId=current["id"], Versions=[str(template["DefaultVersionNumber"])]
        )["LaunchTemplateVersions"][0]["LaunchTemplateData"]
        state = copy.deepcopy(current)
        state.update(
            latest_version=template["LatestVersionNumber"],
            default_version=template["DefaultVersionNumber"],
            image_id=version.get("ImageId"),
            instance_type=version.get("InstanceType"),
        )
        return state

    def update(self, ctx: UpdateContext, current: State, planned: State) -> State | None:
        ec2 = self.provider.client("ec2")
        state = copy.deepcopy(planned)
        try:
            if self._data(current) != self._data(planned) or current.get(
                "description"
            ) != planned.get("description"):
                version = ec2.create_launch_template_version(
                    LaunchTemplateId=current["id"],
                    LaunchTemplateData=self._data(planned),
                    VersionDescription=planned.get("description") or "",
                )["LaunchTemplateVersion"]["VersionNumber"]
                if planned.get("update_default_version"):
                    ec2.modify_launch_template(
                        LaunchTemplateId=current["id"], DefaultVersion=str(version)
                    )
            old_tags, new_tags = current.get("tags") or {}, planned.get("tags") or {}
            removed = [{"Key": k} for k in old_tags if k not in new_tags]
            if removed:
                ec2.delete_tags(Resources=[current["id"]], Tags=removed)
            if new_tags and new_tags != old_tags:
                ec2.create_tags(Resources=[current["id"]], Tags=_tags(new_tags))
            template = ec2.describe_launch_templates(LaunchTemplateIds=[current["id"]])[
                "LaunchTemplates"
            ][0]
        except ClientError as exc:
            _error(ctx, "updating EC2 Launch Template", exc)
            return None
        state.update(
            latest_version=template["LatestVersionNumber"],
            default_version=template["DefaultVersionNumber"],
            tags_all=dict(new_tags),
        )
        return state

    def delete(self, ctx: DeleteContext, current: State) -> None:
        try:
            self.provider.client("ec2").delete_launch_template(LaunchTemplateId=current["id"])
        except ClientError as exc:
            if "NotFound" not in exc.response.get("Error", {}).get("Code", ""):
                _error(ctx, "deleting EC2 Launch Template", exc)


class AutoscalingGroup(_Resource):
    """aws_autoscaling_group: a group on a launch template. As in the real provider, a change of
    the group's launch template (its id or version), or of an attribute named in
    instance_refresh's triggers, starts an instance refresh when instance_refresh is set."""

    name = "autoscaling_group"

    # Attributes an instance_refresh trigger may name, besides launch_template (always one).
    TRIGGERS = ("availability_zones", "desired_capacity", "tag", "vpc_zone_identifier")

    @classmethod
    def get_schema(cls) -> schema.Schema:
        template = schema.Block(
            attributes=[
                _attr("id", types.String(), optional=True),
                _attr("name", types.String(), optional=True),
                _attr("version", types.String(), optional=True),
            ]
        )
        preferences = schema.Block(
            attributes=[
                _attr("checkpoint_delay", types.String(), optional=True),
                _attr("checkpoint_percentages", types.List(types.Number()), optional=True),
                # A string of seconds in the real provider too.
                _attr("instance_warmup", types.String(), optional=True),
                _attr("min_healthy_percentage", types.Number(), optional=True),
                _attr("skip_matching", types.Bool(), optional=True),
            ]
        )
        refresh = schema.Block(
            attributes=[
                _attr("strategy", types.String(), required=True),
                _attr("triggers", types.Set(types.String()), optional=True),
            ],
            block_types=[blocks.SetNestedBlock("preferences", preferences)],
        )
        tag = schema.Block(
            attributes=[
                _attr("key", types.String(), required=True),
                _attr("value", types.String(), required=True),
                _attr("propagate_at_launch", types.Bool(), required=True),
            ]
        )
        return schema.Schema(
            attributes=[
                _attr("id", types.String(), computed=True),
                _attr("arn", types.String(), computed=True),
                _attr("name", types.String(), optional=True, computed=True, requires_replace=True),
                _attr("name_prefix", types.String(), optional=True, requires_replace=True),
                _attr("min_size", types.Number(), required=True),
                _attr("max_size", types.Number(), required=True),
                _attr("desired_capacity", types.Number(), optional=True, computed=True),
                _attr(
                    "availability_zones", types.Set(types.String()), optional=True, computed=True
                ),
                _attr(
                    "vpc_zone_identifier", types.Set(types.String()), optional=True, computed=True
                ),
                _attr("health_check_type", types.String(), optional=True, computed=True),
                _attr("health_check_grace_period", types.Number(), optional=True, computed=True),
            ],
            block_types=[
                blocks.SetNestedBlock("launch_template", template),
                blocks.SetNestedBlock("instance_refresh", refresh),
                blocks.SetNestedBlock("tag", tag),
            ],
        )

    @staticmethod
    def _template(state: State) -> dict[str, Any]:
        for t in state.get("launch_template") or []:
            return _set(
                LaunchTemplateId=t.get("id") or None,
                LaunchTemplateName=None if t.get("id") else t.get("name") or None,
                Version=t.get("version") or None,
            )
        return {}

    @staticmethod
    def _tags(state: State, name: str) -> list[dict[str, Any]]:
        return [
            {
                "ResourceId": name,
                "ResourceType": "auto-scaling-group",
                "Key": t["key"],
                "Value": t["value"],
                "PropagateAtLaunch": bool(t["propagate_at_launch"]),
            }
            for t in sorted(state.get("tag") or [], key=lambda t: t["key"])
        ]

    def _settings(self, state: State) -> dict[str, Any]:
        desired = state.get("desired_capacity")
        zones = state.get("availability_zones")
        subnets = state.get("vpc_zone_identifier")
        return _set(
            MinSize=int(state["min_size"]),
            MaxSize=int(state["max_size"]),
            DesiredCapacity=None if desired in (None, Unknown) else int(desired),
            AvailabilityZones=sorted(zones) if zones and zones is not Unknown else None,
            VPCZoneIdentifier=",".join(sorted(subnets))
            if subnets and subnets is not Unknown
            else None,
            LaunchTemplate=self._template(state) or None,
            HealthCheckType=state.get("health_check_type") or None
            if state.get("health_check_type") is not Unknown
            else None,
            HealthCheckGracePeriod=_int(state.get("health_check_grace_period"))
            if state.get("health_check_grace_period") is not Unknown
            else None,
        )

    def plan(self, ctx: PlanContext, current: State | None, planned: State) -> State:
        if current is not None:
            for key in ("arn", "id"):
                planned[key] = current[key]
        return planned

    def _observe(self, name: str, state: State) -> State | None:
        groups = self.provider.client("autoscaling").describe_auto_scaling_groups(
            AutoScalingGroupNames=[name]
        )["AutoScalingGroups"]
        if not groups:
            return None
        group = groups[0]
        state = copy.deepcopy(state)
        state.update(
            id=name,
            name=name,
            arn=group["AutoScalingGroupARN"],
            min_size=group["MinSize"],
            max_size=group["MaxSize"],
            desired_capacity=group["DesiredCapacity"],
            availability_zones=sorted(group.get("AvailabilityZones") or []),
            vpc_zone_identifier=sorted(
                s for s in (group.get("VPCZoneIdentifier") or "").split(",") if s
            ),
            health_check_type=group.get("HealthCheckType") or "EC2",
            health_check_grace_period=group.get("HealthCheckGracePeriod", 300),
        )
        return state

    def create(self, ctx: CreateContext, planned: State) -> State | None:
        name = planned.get("name")
        if name in (None, Unknown):
            name = (planned.get("name_prefix") or "terraform-") + uuid.uuid4().hex[:26]
        try:
            self.provider.client("autoscaling").create_auto_scaling_group(
                AutoScalingGroupName=name,
                Tags=self._tags(planned, name),
                **self._settings(planned),
            )
            return self._observe(name, planned)
        except ClientError as exc:
            _error(ctx, "creating Auto Scaling Group", exc)
            return None

    def read(self, ctx: ReadContext, current: State) -> State | None:
        try:
            return self._observe(current["id"], current)
        except ClientError as exc:
            _error(ctx, "reading Auto Scaling Group", exc)
            return None

    def _refresh_needed(self, current: State, planned: State) -> bool:
        """The real provider's rule: the launch template (id, name or version) changed, or an
        attribute the triggers name."""
        if self._template(current) != self._template(planned):
            return True
        triggers: set[str] = set()
        for refresh in planned.get("instance_refresh") or []:
            triggers |= set(refresh.get("triggers") or ())
        return any(current.get(t) != planned.get(t) for t in triggers & set(self.TRIGGERS))

    def update(self, ctx: UpdateContext, current: State, planned: State) -> State | None:
        autoscaling = self.provider.client("autoscaling")
        name = current["id"]
        try:
            autoscaling.update_auto_scaling_group(
                AutoScalingGroupName=name, **self._settings(planned)
            )
            old, new = self._tags(current, name), self._tags(planned, name)
            removed = [t for t in old if t["Key"] not in {n["Key"] for n in new}]
            if removed:
                autoscaling.delete_tags(Tags=removed)
            if new and new != old:
                autoscaling.create_or_update_tags(Tags=new)
            for refresh in planned.get("instance_refresh") or []:
                if self._refresh_needed(current, planned):
                    self._start_refresh(name, refresh)
            return self._observe(name, planned)
        except ClientError as exc:
            _error(ctx, "updating Auto Scaling Group", exc)
            return None

    def _start_refresh(self, name: str, refresh: State) -> None:
        preferences: dict[str, Any] = {}
        for given in refresh.get("preferences") or []:
            preferences = _set(
                CheckpointDelay=_int(given.get("checkpoint_delay") or None),
                CheckpointPercentages=[int(c) for c in given["checkpoint_percentages"]]
                if given.get("checkpoint_percentages")
                else None,
                InstanceWarmup=_int(given.get("instance_warmup") or None),
                MinHealthyPercentage=_int(given.get("min_healthy_percentage")),
                SkipMatching=given.get("skip_matching"),
            )
        self.provider.client("autoscaling").start_instance_refresh(
            AutoScalingGroupName=name,
            Strategy=refresh["strategy"],
            **({"Preferences": preferences} if preferences else {}),
        )

    def delete(self, ctx: DeleteContext, current: State) -> None:
        try:
            self.provider.client("autoscaling").delete_auto_scaling_group(
                AutoScalingGroupName=current["id"], ForceDelete=True
            )
        except ClientError as exc:
            if "not found" not in exc.response.get("Error", {}).get("Message", ""):
                _error(ctx, "deleting Auto Scaling Group", exc)


class S3Object(_Resource):
    name = "s3_object"

    @classmethod
    def get_schema(cls) -> schema.Schema:
        return schema.Schema(
            attributes=[
                _attr("id", types.String(), computed=True),
                _attr("bucket", types.String(), required=True, requires_replace=True),
                _attr("key", types.String(), required=True, requires_replace=True),
                _attr("content", types.String(), optional=True),
                _attr("content_type", types.String(), optional=True, computed=True),
                _attr("server_side_encryption", types.String(), optional=True, computed=True),
                _attr("etag", types.String(), computed=True),
                _attr("version_id", types.String(), computed=True),
                _attr("tags", types.Map(types.String()), optional=True),
                _attr("tags_all", types.Map(types.String()), computed=True),
            ]
        )

    def plan(self, ctx: PlanContext, current: State | None, planned: State) -> State:
        if current is not None and ctx.changed_fields & {
            "content",
            "content_type",
            "server_side_encryption",
        }:
            planned["etag"] = Unknown
            planned["version_id"] = Unknown
        if current is not None and "tags" in ctx.changed_fields:
            planned["tags_all"] = Unknown
        return planned

    def _put(self, ctx: Any, planned: State) -> State | None:
        s3 = self.provider.client("s3")
        kwargs: dict[str, Any] = {
            "Bucket": planned["bucket"],
            "Key": planned["key"],
            "Body": (planned.get("content") or "").encode(),
            "ContentType": planned.get("content_type") or "application/octet-stream",
        }
        if planned.get("server_side_encryption"):
            kwargs["ServerSideEncryption"] = planned["server_side_encryption"]
        if planned.get("tags"):
            kwargs["Tagging"] = "&".join(f"{k}={v}" for k, v in sorted(planned["tags"].items()))
        try:
            response = s3.put_object(**kwargs)
        except ClientError as exc:
            _error(ctx, "uploading S3 Object", exc)
            return None
        state = copy.deepcopy(planned)
        state.update(
            id=planned["key"],
            etag=response["ETag"].strip('"'),
            version_id=response.get("VersionId", ""),
            content_type=kwargs["ContentType"],
            server_side_encryption=response.get("ServerSideEncryption", ""),
            tags_all=dict(planned.get("tags") or {}),
        )
        return state

    def create(self, ctx: CreateContext, planned: State) -> State | None:
        return self._put(ctx, planned)

    def update(self, ctx: UpdateContext, current: State, planned: State) -> State | None:
        return self._put(ctx, planned)

    def read(self, ctx: ReadContext, current: State) -> State | None:
        try:
            head = self.provider.client("s3").head_object(
                Bucket=current["bucket"], Key=current["key"]
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                return None
            _error(ctx, "reading S3 Object", exc)
            return None
        state = copy.deepcopy(current)
        state.update(etag=head["ETag"].strip('"'), content_type=head.get("ContentType"))
        return state

    def delete(self, ctx: DeleteContext, current: State) -> None:
        try:
            self.provider.client("s3").delete_object(Bucket=current["bucket"], Key=current["key"])
        except ClientError as exc:
            _error(ctx, "deleting S3 Object", exc)


# The AWS services the stand-in calls.
SERVICES = ("autoscaling", "ec2", "s3")


def warm_up() -> None:
    """What the warm server parses once for every start: a client of each service, made with
    placeholder credentials and no call, reads all the data the real ones read."""
    session = botocore_data.session()
    for service in SERVICES:
        session.create_client(
            service, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
        )


if __name__ == "__main__":
    run_provider(AwsProvider(), sys.argv)
