"""The root configuration (terraform/) and the modules, driven by the real Terraform binary.

Tests taking `any_terraform` run with the pinned Terraform and with a newer one when there is one
(testing.terraform.binaries): CI runs them as the users' Terraform would.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from bridge import model
from bridge.sandbox import BASE_IMAGE
from testing import ROOT
from testing.bridge import bridge_command, run_bridge
from testing.sandbox import BUCKET, aws_client, own_images, tags_of
from testing.terraform import Terraform, copy_tree


def root_vars(repo, build_phase: str = "apply") -> list[str]:
    return [
        "-var", f"repo_dir={repo.path}",
        "-var", f"manifest_bucket={BUCKET}",
        "-var", "s3_use_path_style=true",
        "-var", f"build_phase={build_phase}",
        "-var", f"bridge_command={json.dumps(bridge_command())}",
    ]  # fmt: skip


@pytest.fixture
def root_tf(tmp_path, sandbox_env, any_terraform, terraform_env, packer) -> Terraform:
    tf = Terraform(any_terraform, copy_tree(tmp_path / "tf"), {**sandbox_env, **terraform_env})
    tf.init()
    return tf


def images_by_definition() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for image in own_images():
        found.setdefault(tags_of(image)[model.TAG_DEFINITION], []).append(image["ImageId"])
    return found


def launch_template_image(template_id: str) -> tuple[int, str]:
    ec2 = aws_client("ec2")
    template = ec2.describe_launch_templates(LaunchTemplateIds=[template_id])["LaunchTemplates"][0]
    version = ec2.describe_launch_template_versions(
        LaunchTemplateId=template_id, Versions=[str(template["DefaultVersionNumber"])]
    )["LaunchTemplateVersions"][0]
    return template["DefaultVersionNumber"], version["LaunchTemplateData"]["ImageId"]


def deployment_manifest() -> dict:
    body = aws_client("s3").get_object(Bucket=BUCKET, Key="deployments/main/amis.json")["Body"]
    return json.loads(body.read())


def test_apply_builds_chain_then_plans_nothing_then_rebuilds_on_change(root_tf, repo):
    # First apply: both images are built by Packer through the bridge, once each.
    root_tf.apply(*root_vars(repo))
    out = root_tf.outputs()
    built = images_by_definition()
    assert built == {"base": [out["base_ami_id"]], "snowflake": [out["snowflake_ami_id"]]}
    version, image = launch_template_image(out["launch_template_id"])
    assert (version, image) == (1, out["snowflake_ami_id"])
    assert fleet(out["fleet_name"]) == ("1", [])  # a new group starts no refresh
    manifest = deployment_manifest()
    assert manifest["images"]["base"]["ami_id"] == out["base_ami_id"]
    assert manifest["images"]["snowflake"]["ami_id"] == out["snowflake_ami_id"]
    assert manifest["images"]["snowflake"]["parent_ami_id"] == out["base_ami_id"]

    # Second plan: nothing to do.
    again = root_tf.plan(*root_vars(repo))
    assert again.returncode == 0, again.stdout
    assert "No changes." in again.stdout

    # A committed change to the base: the plan shows both rebuilds and the template update.
    repo.write("base/tasks/baseline.sh", "#!/bin/sh\necho baseline v2\n")
    repo.commit("baseline v2")
    changed = root_tf.plan(*root_vars(repo), out="change.tfplan")
    assert changed.returncode == 2
    actions = {
        c["address"]: sorted(c["change"]["actions"])
        for c in root_tf.show_json("change.tfplan")["resource_changes"]
        if c["change"]["actions"] != ["no-op"]
    }
    # Replacements (the order depends on create_before_destroy downstream).
    assert actions['module.images.null_resource.build["base"]'] == ["create", "delete"]
    assert actions['module.images.null_resource.build["snowflake"]'] == ["create", "delete"]
    assert actions["module.launch_template.aws_launch_template.this"] == ["update"]
    assert actions["module.fleet.aws_autoscaling_group.this"] == ["update"]
    assert images_by_definition() == built  # planning built nothing
    assert fleet(out["fleet_name"]) == ("1", [])  # planning refreshed nothing

    root_tf.run("apply", "-input=false", "change.tfplan")
    new = root_tf.outputs()
    assert new["base_ami_id"] != out["base_ami_id"]
    assert new["snowflake_ami_id"] != out["snowflake_ami_id"]
    assert new["launch_template_id"] == out["launch_template_id"]
    assert launch_template_image(new["launch_template_id"]) == (2, new["snowflake_ami_id"])
    assert {k: len(v) for k, v in images_by_definition().items()} == {"base": 2, "snowflake": 2}
    assert deployment_manifest()["images"]["snowflake"]["ami_id"] == new["snowflake_ami_id"]
    # The fleet is on the new version, rolled there by exactly one refresh.
    assert new["fleet_name"] == out["fleet_name"]
    version, refreshes = fleet(new["fleet_name"])
    assert (version, new["fleet_launch_template_version"]) == ("2", 2)
    (refresh,) = refreshes
    assert refresh["Strategy"] == "Rolling"
    assert refresh["Preferences"]["MinHealthyPercentage"] == 90
    assert refresh["Preferences"]["SkipMatching"] is True
    final = root_tf.plan(*root_vars(repo))
    assert final.returncode == 0, final.stdout
    # Applying with nothing changed starts no refresh either.
    root_tf.apply(*root_vars(repo))
    assert fleet(new["fleet_name"]) == ("2", refreshes)


def test_plan_phase_builds_shared_parent_once(root_tf, repo):
    """base and snowflake both resolve base, in parallel data sources: one build."""
    root_tf.apply(*root_vars(repo, build_phase="plan"))
    out = root_tf.outputs()
    assert images_by_definition() == {
        "base": [out["base_ami_id"]],
        "snowflake": [out["snowflake_ami_id"]],
    }


def test_never_phase_fails_plan_with_bridge_message(root_tf, repo):
    proc = root_tf.run("plan", "-input=false", *root_vars(repo, build_phase="never"), check=False)
    assert proc.returncode == 1
    stderr = " ".join(proc.stderr.split())  # Terraform wraps long lines
    assert "External Program Execution Failed" in stderr
    assert "No usable image for definition 'base'" in stderr
    assert "ami-bridge build base" in stderr
    assert own_images() == []


def test_unknown_definition_shows_bridge_stderr(
    tmp_path, sandbox_env, any_terraform, terraform_env, repo
):
    copy_tree(tmp_path / "copy")
    example = tmp_path / "copy" / "modules" / "ami_chain" / "examples" / "basic"
    tf = Terraform(any_terraform, example, {**sandbox_env, **terraform_env})
    tf.init()
    proc = tf.run(
        "plan", "-input=false",
        "-var", f"repo_dir={repo.path}",
        "-var", "definition=ghost",
        "-var", f"bridge_command={json.dumps(bridge_command())}",
        check=False,
    )  # fmt: skip
    assert proc.returncode == 1
    stderr = " ".join(proc.stderr.split())
    assert "Unknown definition 'ghost'" in stderr
    assert "defines base, snowflake" in stderr
    assert own_images() == []


def test_module_validation_rejects_bad_definition(
    tmp_path, sandbox_env, terraform_bin, terraform_env, repo
):
    example = copy_tree(tmp_path / "copy").parent / "modules" / "ami_chain" / "examples" / "basic"
    tf = Terraform(terraform_bin, example, {**sandbox_env, **terraform_env})
    tf.init()
    proc = tf.run(
        "plan",
        "-input=false",
        "-var",
        f"repo_dir={repo.path}",
        "-var",
        "definition=Bad Name!",
        check=False,
    )
    assert proc.returncode == 1
    assert "must be a catalog name" in " ".join(proc.stderr.split())


def terraform_dirs() -> list[Path]:
    found = [ROOT / "terraform"]
    for module in sorted((ROOT / "modules").iterdir()):
        found.append(module)
        found.extend(sorted((module / "examples").iterdir()))
    return found


def test_fmt_is_clean(terraform_bin, terraform_env):
    tf = Terraform(terraform_bin, ROOT, terraform_env)
    proc = tf.run("fmt", "-check", "-recursive", "-diff", check=False)
    assert proc.returncode == 0, proc.stdout


@pytest.mark.parametrize("directory", terraform_dirs(), ids=lambda p: str(p.relative_to(ROOT)))
def test_validate(tmp_path, terraform_bin, terraform_env, directory):
    copy = copy_tree(tmp_path).parent
    target = copy / directory.relative_to(ROOT)
    tf = Terraform(terraform_bin, target, {**terraform_env, "TF_DATA_DIR": str(tmp_path / "data")})
    tf.run("init", "-input=false", "-backend=false")
    proc = tf.run("validate", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Success!" in proc.stdout


# -- how CI runs Terraform ------------------------------------------------------------------------

CONSUMER = """
terraform {
  required_providers {
    aws      = { source = "hashicorp/aws" }
    external = { source = "hashicorp/external" }
    null     = { source = "hashicorp/null" }
  }
}

variable "repo_dir" { type = string }
variable "bridge_command" { type = list(string) }
variable "provider_region" { type = string }

provider "aws" {
  region            = var.provider_region
  s3_use_path_style = true
}

# Known only after apply: the module must plan with it unknown.
resource "null_resource" "deployment" {}

module "chain" {
  source = "../modules/ami_chain"

  definition      = "snowflake"
  repo_dir        = var.repo_dir
  bridge_command  = var.bridge_command
  manifest_bucket = "%(bucket)s"
  manifest_prefix = "deploy-${null_resource.deployment.id}"
  region          = null
  owners          = null
  commit          = null
  allow_dirty     = null
}

output "ami_id" { value = module.chain.ami_id }
output "fingerprint" { value = module.chain.fingerprint }
output "manifest_uri" { value = module.chain.manifest_uri }
output "region" { value = module.chain.region }
"""


@pytest.fixture
def consumer_tf(tmp_path, sandbox_env, any_terraform, terraform_env, packer) -> Terraform:
    """A configuration of an infrastructure repository: the module with null inputs and a
    manifest prefix unknown until apply."""
    copy_tree(tmp_path / "tf")
    workdir = tmp_path / "tf" / "consumer"
    workdir.mkdir()
    (workdir / "main.tf").write_text(CONSUMER % {"bucket": BUCKET})
    tf = Terraform(any_terraform, workdir, {**sandbox_env, **terraform_env})
    tf.init()
    return tf


def consumer_vars(repo, region: str = "us-east-1") -> list[str]:
    return [
        "-var", f"repo_dir={repo.path}",
        "-var", f"bridge_command={json.dumps(bridge_command())}",
        "-var", f"provider_region={region}",
    ]  # fmt: skip


def planned_fingerprint(env, repo, commit: str) -> str:
    proc = run_bridge(
        ["resolve", "snowflake", "--on-missing", "report", "--json", "--commit", commit,
         "--repo", str(repo.path)],
        env,
    )  # fmt: skip
    assert proc.code in (0, 3), proc.stderr
    return str(json.loads(proc.stdout)["snowflake"]["fingerprint"])


def test_a_saved_plan_applies_the_commit_it_reviewed(root_tf, repo, sandbox_env):
    root_tf.apply(*root_vars(repo))
    repo.write("base/tasks/baseline.sh", "#!/bin/sh\necho baseline v2\n")
    reviewed = repo.commit("baseline v2")
    root_tf.plan(*root_vars(repo), out="reviewed.tfplan")
    # Another commit lands between plan and apply.
    repo.write("base/tasks/baseline.sh", "#!/bin/sh\necho baseline v3\n")
    head = repo.commit("baseline v3")
    expected = planned_fingerprint(sandbox_env, repo, reviewed)
    assert expected != planned_fingerprint(sandbox_env, repo, head)

    root_tf.run("apply", "-input=false", "reviewed.tfplan")
    out = root_tf.outputs()
    _, image = launch_template_image(out["launch_template_id"])
    assert image == out["snowflake_ami_id"]
    tags = {i["ImageId"]: tags_of(i) for i in own_images()}
    assert tags[image]["SHA"] == expected
    assert tags[image][model.TAG_COMMIT] == reviewed
    recorded = deployment_manifest()["images"]["snowflake"]
    assert (recorded["ami_id"], recorded["fingerprint"]) == (image, expected)
    # Nothing was built from the commit nobody reviewed.
    assert all(t[model.TAG_COMMIT] != head for t in tags.values())


def test_destroy_with_the_default_phase_builds_nothing(consumer_tf, repo):
    consumer_tf.apply(*consumer_vars(repo))
    before = images_by_definition()
    repo.write("base/tasks/baseline.sh", "#!/bin/sh\necho baseline v2\n")
    repo.commit("baseline v2")
    consumer_tf.run("destroy", "-input=false", "-auto-approve", *consumer_vars(repo))
    assert images_by_definition() == before
    assert consumer_tf.run("state", "list", check=False).stdout.strip() == ""


def test_an_outdated_child_is_built_at_apply_and_shown_in_the_plan(root_tf, repo, sandbox_env):
    root_tf.apply(*root_vars(repo))
    # The base is rebuilt under the same fingerprint: the snowflake on the old one is outdated.
    forced = run_bridge(["build", "base", "--force", "--repo", str(repo.path)], sandbox_env)
    assert forced.code == 0, forced.stderr
    before = {k: len(v) for k, v in images_by_definition().items()}
    assert before == {"base": 2, "snowflake": 1}

    changed = root_tf.plan(*root_vars(repo), out="outdated.tfplan")
    assert changed.returncode == 2
    replaced = {
        c["address"]
        for c in root_tf.show_json("outdated.tfplan")["resource_changes"]
        if "delete" in c["change"]["actions"] or "create" in c["change"]["actions"]
    }
    assert 'module.images.null_resource.build["snowflake"]' in replaced
    assert {k: len(v) for k, v in images_by_definition().items()} == before  # plan built nothing

    root_tf.run("apply", "-input=false", "outdated.tfplan")
    assert {k: len(v) for k, v in images_by_definition().items()} == {"base": 2, "snowflake": 2}
    assert root_tf.plan(*root_vars(repo)).returncode == 0


def test_a_revoked_image_fails_the_plan_or_is_rebuilt_at_apply_as_on_revoked_says(
    root_tf, repo, sandbox_env
):
    root_tf.apply(*root_vars(repo))
    out = root_tf.outputs()
    revoked = run_bridge(
        ["revoke", "base", "--reason", "CVE-2026-7 in the kernel", "--repo", str(repo.path)],
        sandbox_env,
    )
    assert revoked.code == 0, revoked.stderr
    refused = root_tf.run(
        "plan", "-input=false", *root_vars(repo), "-var", "on_revoked=fail", check=False
    )
    assert refused.returncode == 1
    stderr = " ".join(refused.stderr.split())  # Terraform wraps long lines
    assert "revoked" in stderr and "CVE-2026-7 in the kernel" in stderr
    assert images_by_definition() == {
        "base": [out["base_ami_id"]],
        "snowflake": [out["snowflake_ami_id"]],
    }

    changed = root_tf.plan(*root_vars(repo), out="revoked.tfplan")
    assert changed.returncode == 2
    replaced = {
        c["address"]
        for c in root_tf.show_json("revoked.tfplan")["resource_changes"]
        if "create" in c["change"]["actions"]
    }
    assert {
        'module.images.null_resource.build["base"]',
        'module.images.null_resource.build["snowflake"]',
    } <= replaced
    root_tf.run("apply", "-input=false", "revoked.tfplan")
    new = root_tf.outputs()
    assert new["base_ami_id"] != out["base_ami_id"]
    assert new["snowflake_ami_id"] != out["snowflake_ami_id"]
    assert {k: len(v) for k, v in images_by_definition().items()} == {"base": 2, "snowflake": 2}
    assert root_tf.plan(*root_vars(repo)).returncode == 0


def test_a_region_added_to_the_catalog_is_copied_at_apply_not_built(root_tf, repo):
    root_tf.apply(*root_vars(repo))
    base_ami = root_tf.outputs()["base_ami_id"]
    data = repo.catalog()
    data["definitions"]["base"]["regions"] = ["us-east-1", "eu-west-1"]
    repo.set_catalog(data)
    repo.commit("base in eu-west-1 too")
    changed = root_tf.plan(*root_vars(repo), out="region.tfplan")
    assert changed.returncode == 2
    replaced = {
        c["address"]
        for c in root_tf.show_json("region.tfplan")["resource_changes"]
        if "create" in c["change"]["actions"]
    }
    assert replaced == {'module.images.null_resource.build["base"]'}
    assert own_images("eu-west-1") == []  # a plan copies nothing
    root_tf.run("apply", "-input=false", "region.tfplan")
    assert {k: len(v) for k, v in images_by_definition().items()} == {"base": 1, "snowflake": 1}
    (copy,) = own_images("eu-west-1")
    assert copy["Description"] == f"Copy of {base_ami} from us-east-1"
    assert root_tf.outputs()["base_ami_id"] == base_ami
    assert root_tf.plan(*root_vars(repo)).returncode == 0


def test_unknown_inputs_and_nulls_plan_then_apply_then_plan_nothing(consumer_tf, repo):
    planned = consumer_tf.plan(*consumer_vars(repo))
    assert planned.returncode == 2
    assert own_images() == []
    consumer_tf.apply(*consumer_vars(repo))
    out = consumer_tf.outputs()
    assert out["region"] == "us-east-1"  # the provider's
    assert out["manifest_uri"].startswith(f"s3://{BUCKET}/deploy-")
    assert {i["ImageId"] for i in own_images()} >= {out["ami_id"]}
    again = consumer_tf.plan(*consumer_vars(repo))
    assert again.returncode == 0, again.stdout


def test_the_providers_region_is_the_default(consumer_tf, repo):
    """The catalog distributes to us-east-1 only: resolving for a provider in eu-west-1 refuses,
    instead of handing a us-east-1 AMI to eu-west-1 resources."""
    consumer_tf.env = {
        k: v for k, v in consumer_tf.env.items() if k not in ("AWS_REGION", "AWS_DEFAULT_REGION")
    }
    proc = consumer_tf.run("apply", "-input=false", "-auto-approve",
                           *consumer_vars(repo, "eu-west-1"), check=False)  # fmt: skip
    assert proc.returncode == 1
    assert "not distributed to eu-west-1" in " ".join(proc.stderr.split())
    assert own_images() == []


def test_a_failing_provisioner_shows_its_own_error(root_tf, repo):
    root_tf.apply(*root_vars(repo))
    repo.write(
        "base/tasks/baseline.sh",
        "#!/bin/sh\necho 'E: Unable to locate package docker-ce' >&2\nexit 100\n",
    )
    repo.commit("a package that does not exist")
    proc = root_tf.run("apply", "-input=false", "-auto-approve", *root_vars(repo), check=False)
    assert proc.returncode == 1
    stderr = " ".join(proc.stderr.split())
    assert "Error running command 'ami-bridge build base'" in stderr
    assert "E: Unable to locate package docker-ce" in stderr
    # The build's progress streamed through local-exec, Packer's steps included.
    assert re.search(r"\(local-exec\): +\d+s \[base\] packer: ==> ", proc.stdout), proc.stdout


def test_a_missing_repo_dir_is_named(tmp_path, sandbox_env, any_terraform, terraform_env):
    example = copy_tree(tmp_path / "copy").parent / "modules" / "ami_chain" / "examples" / "basic"
    tf = Terraform(any_terraform, example, {**sandbox_env, **terraform_env})
    tf.init()
    proc = tf.run(
        "plan", "-input=false",
        "-var", f"repo_dir={tmp_path / 'nowhere'}",
        "-var", f"bridge_command={json.dumps(bridge_command())}",
        check=False,
    )  # fmt: skip
    assert proc.returncode == 1
    stderr = " ".join(proc.stderr.split())
    assert "directory not found" in stderr and "'repo_dir'" in stderr


# -- launch templates a fleet runs ----------------------------------------------------------------

FULL_TEMPLATE = """
terraform {
  required_providers {
    aws = { source = "hashicorp/aws" }
  }
}

variable "image_id" { type = string }
variable "security_group" { type = string }
variable "kms_key" { type = string }
variable "profile" { type = string }
variable "public_ip" {
  type    = bool
  default = null
}

provider "aws" {
  region = "us-east-1"
}

module "launch_template" {
  source = "../modules/launch_template"

  name_prefix            = "fleet-"
  image_id               = var.image_id
  instance_type          = "t3.small"
  description            = "the fleet"
  vpc_security_group_ids = [var.security_group]
  user_data              = "#!/bin/sh\\necho hello\\n"
  iam_instance_profile   = var.profile
  key_name               = "deployer"
  root_volume_size       = 16
  root_volume_type       = "gp2"
  root_volume_kms_key_id = var.kms_key
  metadata_options       = { instance_metadata_tags = "enabled" }
  fingerprint            = "%(fingerprint)s"
  tags                   = { Team = "platform" }

  associate_public_ip_address = var.public_ip
}

output "id" { value = module.launch_template.id }
output "arn" { value = module.launch_template.arn }
output "latest_version" { value = module.launch_template.latest_version }
output "default_version" { value = module.launch_template.default_version }
output "image_id" { value = module.launch_template.image_id }
output "fingerprint" { value = module.launch_template.fingerprint }
"""

FINGERPRINT = "0123456789abcdef0123456789abcdef01234567"


def template_data(template_id: str, version: int) -> dict:
    (found,) = aws_client("ec2").describe_launch_template_versions(
        LaunchTemplateId=template_id, Versions=[str(version)]
    )["LaunchTemplateVersions"]
    return dict(found)


def test_a_full_launch_template_carries_every_input_and_requires_imdsv2(
    tmp_path, sandbox_env, any_terraform, terraform_env
):
    import base64

    copy_tree(tmp_path / "tf")
    workdir = tmp_path / "tf" / "fleet"
    workdir.mkdir()
    (workdir / "main.tf").write_text(FULL_TEMPLATE % {"fingerprint": FINGERPRINT})
    tf = Terraform(any_terraform, workdir, {**sandbox_env, **terraform_env})
    tf.init()
    ec2 = aws_client("ec2")
    group = ec2.create_security_group(GroupName="fleet", Description="fleet")["GroupId"]
    key = aws_client("kms").create_key()["KeyMetadata"]["Arn"]
    variables = [
        "-var", f"image_id={BASE_IMAGE}", "-var", f"security_group={group}",
        "-var", f"kms_key={key}", "-var", "profile=fleet-profile",
    ]  # fmt: skip
    tf.apply(*variables)
    out = tf.outputs()
    assert (out["latest_version"], out["default_version"]) == (1, 1)
    assert out["arn"].endswith(f":launch-template/{out['id']}")
    assert (out["image_id"], out["fingerprint"]) == (BASE_IMAGE, FINGERPRINT)
    version = template_data(out["id"], 1)
    assert version["VersionDescription"] == "the fleet"
    data = version["LaunchTemplateData"]
    assert data["ImageId"] == BASE_IMAGE
    assert data["InstanceType"] == "t3.small"
    assert data["KeyName"] == "deployer"
    assert data["SecurityGroupIds"] == [group]
    assert base64.b64decode(data["UserData"]).decode() == "#!/bin/sh\necho hello\n"
    assert data["IamInstanceProfile"] == {"Name": "fleet-profile"}
    assert data["BlockDeviceMappings"] == [
        {
            "DeviceName": "/dev/sda1",
            "Ebs": {
                "DeleteOnTermination": True,
                "Encrypted": True,
                "KmsKeyId": key,
                "VolumeSize": 16,
                "VolumeType": "gp2",
            },
        }
    ]
    # IMDSv2 required, one hop: the defaults; the override changed only what it names.
    assert data["MetadataOptions"] == {
        "HttpEndpoint": "enabled",
        "HttpTokens": "required",
        "HttpPutResponseHopLimit": 1,
        "InstanceMetadataTags": "enabled",
    }
    assert "NetworkInterfaces" not in data  # no public IP unless asked
    specs = {s["ResourceType"]: s["Tags"] for s in data["TagSpecifications"]}
    # (moto also lists the template's own tags there, as "launch-template")
    assert {"instance", "volume"} <= set(specs)
    for tags in (specs["instance"], specs["volume"]):
        assert {t["Key"]: t["Value"] for t in tags} == {
            "Team": "platform",
            "Fingerprint": FINGERPRINT,
            "ImageId": BASE_IMAGE,
        }
    (template,) = ec2.describe_launch_templates(LaunchTemplateIds=[out["id"]])["LaunchTemplates"]
    assert {t["Key"]: t["Value"] for t in template["Tags"]} == {
        "Team": "platform",
        "Fingerprint": FINGERPRINT,
    }
    assert tf.plan(*variables).returncode == 0

    # Asking for a public IP and naming the profile by ARN: a new version of the same template.
    profile_arn = "arn:aws:iam::123456789012:instance-profile/fleet-profile"
    asked = [*variables[:-2], "-var", f"profile={profile_arn}", "-var", "public_ip=true"]
    tf.apply(*asked)
    again = tf.outputs()
    assert (again["id"], again["latest_version"], again["default_version"]) == (out["id"], 2, 2)
    data = template_data(out["id"], 2)["LaunchTemplateData"]
    assert data["IamInstanceProfile"] == {"Arn": profile_arn}
    assert data["NetworkInterfaces"] == [
        {
            "AssociatePublicIpAddress": True,
            "DeleteOnTermination": True,
            "DeviceIndex": 0,
            "Groups": [group],
        }
    ]
    assert "SecurityGroupIds" not in data  # EC2 takes them on the interface instead
    assert tf.plan(*asked).returncode == 0


def fleet(name: str) -> tuple[str, list[dict]]:
    """The group's launch template version and its instance refreshes (newest first)."""
    autoscaling = aws_client("autoscaling")
    (group,) = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])[
        "AutoScalingGroups"
    ]
    refreshes = autoscaling.describe_instance_refreshes(AutoScalingGroupName=name)
    return group["LaunchTemplate"]["Version"], refreshes["InstanceRefreshes"]


FLEET = """
terraform {
  required_providers {
    aws = { source = "hashicorp/aws" }
  }
}

variable "image_id" { type = string }
variable "team" { type = string }

provider "aws" {
  region = "us-east-1"
}

module "launch_template" {
  source = "../modules/launch_template"

  name_prefix = "fleet-"
  image_id    = var.image_id
}

module "asg" {
  source = "../modules/asg"

  name_prefix             = "fleet-"
  launch_template_id      = module.launch_template.id
  launch_template_version = module.launch_template.latest_version
  availability_zones      = ["us-east-1a", "us-east-1b"]
  min_size                = 1
  max_size                = 3
  desired_capacity        = 2
  min_healthy_percentage  = 50
  instance_warmup         = 60
  tags                    = { Team = var.team }
}

output "name" { value = module.asg.name }
output "version" { value = module.asg.launch_template_version }
"""


def test_a_group_refreshes_when_its_image_changes_and_not_otherwise(
    tmp_path, sandbox_env, any_terraform, terraform_env
):
    copy_tree(tmp_path / "tf")
    workdir = tmp_path / "tf" / "fleet"
    workdir.mkdir()
    (workdir / "main.tf").write_text(FLEET)
    tf = Terraform(any_terraform, workdir, {**sandbox_env, **terraform_env})
    tf.init()
    images = aws_client("ec2").describe_images(Owners=["099720109477"])["Images"]
    (other_image,) = [i["ImageId"] for i in images if i["ImageId"] != BASE_IMAGE]

    tf.apply("-var", f"image_id={BASE_IMAGE}", "-var", "team=a")
    name = tf.outputs()["name"]
    assert fleet(name) == ("1", [])
    # A change to the group that leaves its launch template alone replaces no instance.
    tf.apply("-var", f"image_id={BASE_IMAGE}", "-var", "team=b")
    (group,) = aws_client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[name])[
        "AutoScalingGroups"
    ]
    assert {t["Key"]: t["Value"] for t in group["Tags"]}["Team"] == "b"
    assert fleet(name) == ("1", [])

    # A new image: a new template version, and the group rolls onto it in one refresh.
    changed = [*("-var", f"image_id={other_image}"), *("-var", "team=b")]
    assert tf.plan(*changed).returncode == 2
    assert fleet(name) == ("1", [])
    tf.apply(*changed)
    assert tf.outputs()["version"] == 2
    version, refreshes = fleet(name)
    assert version == "2"
    (refresh,) = refreshes
    assert refresh["Strategy"] == "Rolling"
    assert refresh["Preferences"] == {
        "MinHealthyPercentage": 50,
        "InstanceWarmup": 60,
        "SkipMatching": True,
    }
    # The sandbox's refresh completes at once: every instance runs the new image.
    (group,) = aws_client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[name])[
        "AutoScalingGroups"
    ]
    ids = [i["InstanceId"] for i in group["Instances"]]
    reservations = aws_client("ec2").describe_instances(InstanceIds=ids)["Reservations"]
    assert [i["ImageId"] for r in reservations for i in r["Instances"]] == [other_image] * 2
    assert tf.plan(*changed).returncode == 0
    tf.apply(*changed)
    assert fleet(name) == ("2", refreshes)


def test_require_provenance_fails_the_plan_for_an_unsigned_image_and_passes_signed_ones(
    root_tf, repo, sandbox_env
):
    root_tf.apply(*root_vars(repo))  # built before the catalog signed anything
    base = root_tf.outputs()["base_ami_id"]
    kms = aws_client("kms")
    key = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["Arn"]
    data = repo.catalog()
    data["provenance"] = {"key": key}
    repo.set_catalog(data)
    repo.commit("signed provenance")
    strict = [*root_vars(repo), "-var", "require_provenance=true"]
    refused = root_tf.run("plan", "-input=false", *strict, check=False)
    assert refused.returncode == 1
    stderr = " ".join(refused.stderr.split())  # Terraform wraps long lines
    assert f"The provenance of base ({base} in us-east-1) does not verify" in stderr
    assert "does not exist" in stderr

    rebuilt = run_bridge(["build", "--all", "--force", "--repo", str(repo.path)], sandbox_env)
    assert rebuilt.code == 0, rebuilt.stderr
    signed = root_tf.run("plan", "-input=false", "-detailed-exitcode", *strict, check=False)
    assert signed.returncode == 2, signed.stderr  # the signed images replace the old ones
    assert "does not verify" not in signed.stderr


CHANNEL_ROOT = """
variable "bridge_command" { type = list(string) }
variable "provenance_key" { type = string }
variable "manifest_bucket" { type = string }

provider "aws" {
  region = "us-east-1"
}

module "channel" {
  source             = "../modules/ami_channel"
  catalog_id         = "example"
  definition         = "base"
  channel            = "prod"
  require_provenance = true
  provenance_key     = var.provenance_key
  manifest_bucket    = var.manifest_bucket
  manifest_prefix    = "images"
  bridge_command     = var.bridge_command
}

output "ami_id" {
  value = module.channel.ami_id
}
"""


def test_ami_channel_with_require_provenance_refuses_an_unsigned_image_and_takes_a_signed_one(
    tmp_path, sandbox_env, any_terraform, terraform_env, repo, packer
):
    """A workload account consumes images through a channel: with `require_provenance` and its
    own pinned key, the plan fails while the channel holds an unsigned image and reads the
    signed one once it is promoted (the statement beside the builder's manifest)."""
    kms = aws_client("kms")
    key = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["Arn"]
    unsigned = run_bridge(["build", "base", "--repo", str(repo.path), "--json"], sandbox_env)
    assert unsigned.code == 0, unsigned.stderr
    promote = ["promote", "base", "prod", "--repo", str(repo.path)]
    assert run_bridge(promote, sandbox_env).code == 0
    root = copy_tree(tmp_path / "tf").parent / "channel"
    root.mkdir()
    (root / "main.tf").write_text(CHANNEL_ROOT)
    tf = Terraform(any_terraform, root, {**sandbox_env, **terraform_env})
    tf.init()
    strict = [
        *("-var", f"bridge_command={json.dumps(bridge_command())}"),
        *("-var", f"provenance_key={key}"),
        *("-var", f"manifest_bucket={BUCKET}"),
    ]
    refused = tf.run("plan", "-input=false", *strict, check=False)
    assert refused.returncode == 1
    old = json.loads(unsigned.stdout)["base"]["ami_id"]
    assert f"The provenance of base ({old} in us-east-1) does not verify" in " ".join(
        refused.stderr.split()
    )

    data = repo.catalog()
    data["provenance"] = {"key": key}
    repo.set_catalog(data)
    repo.commit("signed provenance")
    signed = run_bridge(
        ["build", "base", "--force", "--repo", str(repo.path), "--json"], sandbox_env
    )
    assert signed.code == 0, signed.stderr
    assert run_bridge(promote, sandbox_env).code == 0
    tf.apply(*strict)
    assert tf.outputs()["ami_id"] == json.loads(signed.stdout)["base"]["ami_id"] != old
