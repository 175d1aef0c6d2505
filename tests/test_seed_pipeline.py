"""The seed pipeline's own templates (examples/seed-repo: the published base.json and
snowflake.json with their variables, `{{env}}` defaults, tags, provisioners and scripts, made to
run on the sandbox) build through `resolve` and then the Terraform module, as a team moving off
the seed's bash would run them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bridge import model
from testing import ROOT, SEED_REPO
from testing.bridge import run_bridge
from testing.git import GitRepo, make_repo
from testing.sandbox import aws_client, own_images, tags_of
from testing.terraform import Terraform, copy_tree
from tests.test_terraform import root_vars

# The seed repository as published, where this checkout sits beside it.
PUBLISHED = ROOT.parent / "shared" / "seed" / "circleci-packer"
# What running on the sandbox changes in a builder, and the provisioner type it runs as.
SANDBOX_KEYS = {"communicator", "custom_endpoint_ec2", "skip_region_validation"}


@pytest.fixture
def seed_repo(tmp_path: Path) -> GitRepo:
    return make_repo(tmp_path / "seed", SEED_REPO)


def resolve_all(repo: GitRepo, env) -> dict:
    proc = run_bridge(
        ["resolve", "--all", "--repo", str(repo.path), "--json", "--on-missing", "build"], env
    )
    assert proc.code == 0, proc.stderr
    return json.loads(proc.stdout)


def images() -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for image in own_images():
        found.setdefault(tags_of(image)[model.TAG_DEFINITION], []).append(image)
    return found


def launched_from(ami_name: str) -> set[str]:
    """The AMIs the build instances Packer tagged `ami-create: <ami_name>` ran."""
    found = aws_client("ec2").describe_instances(
        Filters=[{"Name": "tag:ami-create", "Values": [ami_name]}]
    )
    return {i["ImageId"] for r in found["Reservations"] for i in r["Instances"]}


def test_the_seed_chain_builds_once_then_through_terraform_and_rebuilds_on_a_shared_task(
    seed_repo, sandbox_env, tmp_path, any_terraform, terraform_env, packer
):
    first = resolve_all(seed_repo, sandbox_env)
    base, snowflake = first["base"], first["snowflake"]
    assert base["built"] == snowflake["built"] == "true"
    assert snowflake["parent_ami_id"] == base["ami_id"]
    built = images()
    assert {k: [i["ImageId"] for i in v] for k, v in built.items()} == {
        "base": [base["ami_id"]],
        "snowflake": [snowflake["ami_id"]],
    }
    # The snowflake was built on its parent's new AMI, not on the `{{env `AMI_BASE`}}` default.
    assert launched_from(f"snowflake-{snowflake['fingerprint'][:12]}") == {base["ami_id"]}
    # The templates' own tags reached the images; SHA names the fingerprint on both (the base's
    # template writes `ami_sha`, which the bridge passes; the snowflake's `!!sha!!` is replaced).
    for result, image in ((base, built["base"][0]), (snowflake, built["snowflake"][0])):
        tags = tags_of(image)
        assert tags["SHA"] == result["fingerprint"]
        assert (tags["OS_Name"], tags["OS_Version"]) == ("Ubuntu", "16.04")

    again = resolve_all(seed_repo, sandbox_env)
    assert again["base"]["built"] == again["snowflake"]["built"] == "false"
    assert again["snowflake"]["ami_id"] == snowflake["ami_id"]

    tf = Terraform(any_terraform, copy_tree(tmp_path / "tf"), {**sandbox_env, **terraform_env})
    tf.init()
    tf.apply(*root_vars(seed_repo))
    out = tf.outputs()
    assert (out["base_ami_id"], out["snowflake_ami_id"]) == (base["ami_id"], snowflake["ami_id"])
    plan = tf.plan(*root_vars(seed_repo))
    assert plan.returncode == 0 and "No changes." in plan.stdout, plan.stdout
    assert {k: len(v) for k, v in images().items()} == {"base": 1, "snowflake": 1}

    # The snowflake runs the base's cleanup task too: a change to it rebuilds both.
    seed_repo.write("base/tasks/cleanup.sh", "#!/bin/bash\nset -e\necho cleanup v2\n")
    seed_repo.commit("cleanup v2")
    tf.apply(*root_vars(seed_repo))
    new = tf.outputs()
    assert new["base_ami_id"] not in (base["ami_id"], snowflake["ami_id"])
    assert new["snowflake_ami_id"] != snowflake["ami_id"]
    assert {k: len(v) for k, v in images().items()} == {"base": 2, "snowflake": 2}
    assert launched_from(
        f"snowflake-{(resolve_all(seed_repo, sandbox_env))['snowflake']['fingerprint'][:12]}"
    ) == {new["base_ami_id"]}


def _shape(template: dict) -> dict:
    """What the seed's templates say, without what running on the sandbox changes."""
    builders = [{k: v for k, v in b.items() if k not in SANDBOX_KEYS} for b in template["builders"]]
    provisioners = [
        {**{k: v for k, v in p.items() if k != "execute_command"},
         "type": "shell" if p["type"] == "shell-local" else p["type"]}
        for p in template["provisioners"]
    ]  # fmt: skip
    variables = {k: v for k, v in template["variables"].items() if k != "ec2_endpoint"}
    return {
        "builders": builders,
        "provisioners": [{k: v for k, v in p.items() if k != "inline"} for p in provisioners],
        "post-processors": template["post-processors"],
        "variables": variables,
    }


@pytest.mark.parametrize("template", ["base/base.json", "snowflake/snowflake.json"])
def test_the_fixture_has_the_published_seeds_shape(template):
    """The fixture's templates are the published ones but for what the sandbox needs: the same
    variables and `{{env}}` defaults (the base's `ami_base` is the sandbox's Ubuntu image), tags,
    provisioners and scripts, post-processors."""
    if not PUBLISHED.is_dir():
        pytest.skip(f"the published seed repository is not beside this checkout ({PUBLISHED})")
    ours = _shape(json.loads((SEED_REPO / template).read_text()))
    published = _shape(json.loads((PUBLISHED / template).read_text()))
    if template == "base/base.json":
        ours["variables"]["ami_base"] = published["variables"]["ami_base"]
    assert ours == published
    scripts = [s for p in ours["provisioners"] for s in p.get("scripts", [])]
    assert all((SEED_REPO / s).is_file() and (PUBLISHED / s).is_file() for s in scripts)
