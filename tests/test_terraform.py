"""The root configuration (terraform/) and the modules, driven by the real Terraform binary."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest

from bridge import registry
from testing import ROOT
from testing.bridge import bridge_command
from testing.sandbox import BUCKET, own_images, tags_of
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
def root_tf(tmp_path, sandbox_env, terraform_bin, terraform_env, packer) -> Terraform:
    tf = Terraform(terraform_bin, copy_tree(tmp_path / "tf"), {**sandbox_env, **terraform_env})
    tf.init()
    return tf


def images_by_definition() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for image in own_images():
        found.setdefault(tags_of(image)[registry.TAG_DEFINITION], []).append(image["ImageId"])
    return found


def launch_template_image(template_id: str) -> tuple[int, str]:
    ec2 = boto3.client("ec2")
    template = ec2.describe_launch_templates(LaunchTemplateIds=[template_id])["LaunchTemplates"][0]
    version = ec2.describe_launch_template_versions(
        LaunchTemplateId=template_id, Versions=[str(template["DefaultVersionNumber"])]
    )["LaunchTemplateVersions"][0]
    return template["DefaultVersionNumber"], version["LaunchTemplateData"]["ImageId"]


def deployment_manifest() -> dict:
    body = boto3.client("s3").get_object(Bucket=BUCKET, Key="deployments/main/amis.json")["Body"]
    return json.loads(body.read())


def test_apply_builds_chain_then_plans_nothing_then_rebuilds_on_change(root_tf, repo):
    # First apply: both images are built by Packer through the bridge, once each.
    root_tf.apply(*root_vars(repo))
    out = root_tf.outputs()
    built = images_by_definition()
    assert built == {"base": [out["base_ami_id"]], "snowflake": [out["snowflake_ami_id"]]}
    version, image = launch_template_image(out["launch_template_id"])
    assert (version, image) == (1, out["snowflake_ami_id"])
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
    assert actions['module.images["base"].null_resource.build[0]'] == ["create", "delete"]
    assert actions['module.images["snowflake"].null_resource.build[0]'] == ["create", "delete"]
    assert actions["module.launch_template.aws_launch_template.this"] == ["update"]
    assert images_by_definition() == built  # planning built nothing

    root_tf.run("apply", "-input=false", "change.tfplan")
    new = root_tf.outputs()
    assert new["base_ami_id"] != out["base_ami_id"]
    assert new["snowflake_ami_id"] != out["snowflake_ami_id"]
    assert new["launch_template_id"] == out["launch_template_id"]
    assert launch_template_image(new["launch_template_id"]) == (2, new["snowflake_ami_id"])
    assert {k: len(v) for k, v in images_by_definition().items()} == {"base": 2, "snowflake": 2}
    assert deployment_manifest()["images"]["snowflake"]["ami_id"] == new["snowflake_ami_id"]
    final = root_tf.plan(*root_vars(repo))
    assert final.returncode == 0, final.stdout


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
    tmp_path, sandbox_env, terraform_bin, terraform_env, repo
):
    copy_tree(tmp_path / "copy")
    example = tmp_path / "copy" / "modules" / "ami_chain" / "examples" / "basic"
    tf = Terraform(terraform_bin, example, {**sandbox_env, **terraform_env})
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
