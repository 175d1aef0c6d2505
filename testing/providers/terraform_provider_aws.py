"""STAND-IN for hashicorp/aws: resources `aws_launch_template` and `aws_s3_object`, data source
`aws_region`.

Not the real provider: a Python provider (PyPI `tf` package, plugin protocol 6) for machines that
cannot download hashicorp/aws. It keeps the real provider's attribute names and types for every
attribute this project's modules use, and creates, reads, updates and deletes the objects in
whatever AWS endpoint boto3 is pointed at (the sandbox, through AWS_ENDPOINT_URL).

Known differences: nested blocks are declared with set nesting (the real provider uses lists;
the configuration syntax is the same), and only the attributes below exist.
"""

from __future__ import annotations

import copy
import sys
import uuid
from typing import Any

import boto3
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
            self._clients[service] = boto3.client(service, region_name=self.config.get("region"))
        return self._clients[service]

    def region(self) -> str:
        return str(self.client("ec2").meta.region_name)

    def get_data_sources(self) -> list[type[p.DataSource]]:
        return [Region]

    def get_resources(self) -> list[type[p.Resource]]:
        return [LaunchTemplate, S3Object]


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


class LaunchTemplate(_Resource):
    name = "launch_template"

    @classmethod
    def get_schema(cls) -> schema.Schema:
        metadata = schema.Block(
            attributes=[
                _attr("http_endpoint", types.String(), optional=True),
                _attr("http_tokens", types.String(), optional=True),
                _attr("http_put_response_hop_limit", types.Number(), optional=True),
                _attr("instance_metadata_tags", types.String(), optional=True),
            ]
        )
        tag_spec = schema.Block(
            attributes=[
                _attr("resource_type", types.String(), optional=True),
                _attr("tags", types.Map(types.String()), optional=True),
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
                _attr("update_default_version", types.Bool(), optional=True),
                _attr("default_version", types.Number(), computed=True),
                _attr("latest_version", types.Number(), computed=True),
                _attr("tags", types.Map(types.String()), optional=True),
                _attr("tags_all", types.Map(types.String()), computed=True),
            ],
            block_types=[
                blocks.SetNestedBlock("metadata_options", metadata),
                blocks.SetNestedBlock("tag_specifications", tag_spec),
            ],
        )

    def _data(self, state: State) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if state.get("image_id"):
            data["ImageId"] = state["image_id"]
        if state.get("instance_type"):
            data["InstanceType"] = state["instance_type"]
        for m in state.get("metadata_options") or []:
            options = {
                "HttpEndpoint": m.get("http_endpoint"),
                "HttpTokens": m.get("http_tokens"),
                "HttpPutResponseHopLimit": int(m["http_put_response_hop_limit"])
                if m.get("http_put_response_hop_limit") is not None
                else None,
                "InstanceMetadataTags": m.get("instance_metadata_tags"),
            }
            data["MetadataOptions"] = {k: v for k, v in options.items() if v is not None}
        specs = [
            {"ResourceType": s["resource_type"], "Tags": _tags(s.get("tags"))}
            for s in state.get("tag_specifications") or []
            if s.get("resource_type")
        ]
        if specs:
            data["TagSpecifications"] = specs
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


if __name__ == "__main__":
    run_provider(AwsProvider(), sys.argv)
