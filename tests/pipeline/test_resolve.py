"""Resolving and building chains against the sandbox with real Packer and git (resolve.py)."""

from __future__ import annotations

import json

from bridge import model
from testing.bridge import external
from testing.sandbox import BUCKET, aws_client, deregister, manifest_keys, own_images, tags_of

HCL_TEMPLATE = """
variable "ami_sha" {
  type    = string
  default = ""
}
variable "ami_base" {
  type    = string
  default = ""
}
variable "ec2_endpoint" {
  type    = string
  default = ""
}
source "amazon-ebs" "tools" {
  region                 = "us-east-1"
  source_ami             = var.ami_base
  instance_type          = "t3.micro"
  ami_name               = "tools-${var.ami_sha}"
  communicator           = "none"
  custom_endpoint_ec2    = var.ec2_endpoint
  skip_region_validation = true
}
build {
  sources = ["source.amazon-ebs.tools"]
  provisioner "shell-local" {
    inline = ["echo tools"]
  }
}
"""


def resolve(env, repo, definition="snowflake", **extra):
    proc = external(env, {"definition": definition, "repo": str(repo.path), **extra})
    assert proc.code == 0, proc.stderr
    return json.loads(proc.stdout)


def test_build_on_miss_tags_image_with_provenance(sandbox_env, repo, packer):
    result = resolve(sandbox_env, repo)
    images = {i["ImageId"]: i for i in own_images()}
    base = tags_of(images[result["parent_ami_id"]])
    snow = tags_of(images[result["ami_id"]])
    assert base["SHA"] == repo.tree_sha("base")  # the seed's own identity for a root
    assert base[model.TAG_DEFINITION] == "base"
    assert model.TAG_PARENT_AMI not in base
    assert snow["SHA"] == result["fingerprint"]
    assert snow[model.TAG_DEFINITION] == "snowflake"
    assert snow[model.TAG_PARENT_AMI] == result["parent_ami_id"]
    assert snow[model.TAG_PARENT_FINGERPRINT] == base["SHA"]
    assert snow[model.TAG_COMMIT] == repo.git("rev-parse", "HEAD")
    assert snow[model.TAG_PACKER_VERSION] == "1.6.6"
    assert snow["Team"] == "platform"
    # Snapshots carry the same tags.
    snap_id = images[result["ami_id"]]["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]
    snap = aws_client("ec2").describe_snapshots(SnapshotIds=[snap_id])["Snapshots"][0]
    assert tags_of(snap)["SHA"] == result["fingerprint"]


def test_second_resolve_builds_nothing(sandbox_env, repo, packer):
    first = resolve(sandbox_env, repo)
    second = resolve(sandbox_env, repo)
    assert second["built"] == "false"
    assert second["ami_id"] == first["ami_id"]
    assert second["parent_ami_id"] == first["parent_ami_id"]
    assert len(own_images()) == 2


def test_base_change_rebuilds_both(sandbox_env, repo, packer):
    first = resolve(sandbox_env, repo)
    repo.write("base/tasks/baseline.sh", "#!/bin/sh\necho v2\n")
    repo.commit("baseline v2")
    second = resolve(sandbox_env, repo)
    assert second["built"] == "true"
    assert second["parent_ami_id"] != first["parent_ami_id"]
    assert second["ami_id"] != first["ami_id"]
    assert len(own_images()) == 4
    assert len(manifest_keys()) == 4


def test_child_change_rebuilds_only_child(sandbox_env, repo, packer):
    first = resolve(sandbox_env, repo)
    repo.write("snowflake/tasks/docker.sh", "#!/bin/sh\necho docker v2\n")
    repo.commit("docker v2")
    second = resolve(sandbox_env, repo)
    assert second["parent_ami_id"] == first["parent_ami_id"]
    assert second["ami_id"] != first["ami_id"]
    assert len(own_images()) == 3


def test_child_on_outdated_parent_ami_is_rebuilt(sandbox_env, repo, packer):
    first = resolve(sandbox_env, repo)
    # The base is rebuilt (same fingerprint, new AMI) and the old one deregistered.
    deregister("us-east-1", first["parent_ami_id"])
    report = resolve(sandbox_env, repo, on_missing="report")
    assert report["found"] == "false" and report["ami_id"] == ""
    rebuilt = resolve(sandbox_env, repo)
    assert rebuilt["built"] == "true"
    assert rebuilt["parent_ami_id"] != first["parent_ami_id"]
    assert rebuilt["fingerprint"] == first["fingerprint"]
    assert rebuilt["ami_id"] != first["ami_id"]


def test_outdated_state_is_reported(sandbox_env, repo, packer):
    first = resolve(sandbox_env, repo)
    from testing.bridge import run_bridge

    build = run_bridge(["build", "base", "--force", "--repo", str(repo.path)], sandbox_env)
    assert build.code == 0, build.stderr
    status = run_bridge(["status", "--json", "--repo", str(repo.path)], sandbox_env)
    states = {k: v["state"] for k, v in json.loads(status.stdout).items()}
    assert states == {"base": "found", "snowflake": "outdated"}
    assert " carry " not in status.stderr  # the first build, kept until gc, is no duplicate
    fail = external(
        sandbox_env, {"definition": "snowflake", "repo": str(repo.path), "on_missing": "fail"}
    )
    assert fail.code == 3 and fail.stdout == ""
    assert "outdated" in fail.stderr
    again = resolve(sandbox_env, repo)
    assert again["built"] == "true" and again["ami_id"] != first["ami_id"]


def test_build_ids_are_known_before_the_build_and_kept_after(sandbox_env, repo, packer):
    """What a Terraform plan relies on: the build ID reported for a missing image is the one the
    image has once built, and a rebuild of the parent changes the child's."""
    from testing.bridge import run_bridge

    planned = resolve(sandbox_env, repo, on_missing="report")
    assert planned["found"] == "false" and len(planned["build_id"]) == 40
    planned_base = resolve(sandbox_env, repo, definition="base", on_missing="report")
    built = resolve(sandbox_env, repo)
    assert built["build_id"] == planned["build_id"]
    assert resolve(sandbox_env, repo, definition="base")["build_id"] == planned_base["build_id"]
    assert resolve(sandbox_env, repo)["build_id"] == planned["build_id"]  # found, same ID

    build = run_bridge(["build", "base", "--force", "--repo", str(repo.path)], sandbox_env)
    assert build.code == 0, build.stderr
    outdated = resolve(sandbox_env, repo, on_missing="report")
    assert outdated["state"] == "outdated"
    assert outdated["build_id"] != planned["build_id"]
    assert resolve(sandbox_env, repo)["build_id"] == outdated["build_id"]


def test_on_missing_fail_names_everything(sandbox_env, repo):
    proc = external(
        sandbox_env, {"definition": "snowflake", "repo": str(repo.path), "on_missing": "fail"}
    )
    assert proc.code == 3 and proc.stdout == ""
    msg = proc.stderr
    for part in (
        "'base'",
        repo.tree_sha("base"),
        "us-east-1",
        "owners self",
        "tag SHA",
        "ami-bridge build base",
    ):
        assert part in msg
    assert own_images() == []


def test_on_missing_report_gives_fingerprint_without_building(sandbox_env, repo):
    result = resolve(sandbox_env, repo, on_missing="report")
    assert result["found"] == "false" and result["built"] == "false" and result["ami_id"] == ""
    assert len(result["fingerprint"]) == 40
    assert own_images() == []


def test_seed_built_image_is_found(sandbox_env, repo):
    """An image tagged the seed's way (SHA = git ls-tree tree hash) is used as is."""
    ec2 = aws_client("ec2")
    reservation = ec2.run_instances(ImageId="ami-0c55b159cbfafe1f0", MinCount=1, MaxCount=1)
    ami = ec2.create_image(InstanceId=reservation["Instances"][0]["InstanceId"], Name="seed-base")
    ec2.create_tags(
        Resources=[ami["ImageId"]], Tags=[{"Key": "SHA", "Value": repo.tree_sha("base")}]
    )
    result = resolve(sandbox_env, repo, definition="base", on_missing="fail")
    assert result["ami_id"] == ami["ImageId"] and result["built"] == "false"
    # Identified by what it carries: no build-ID or commit tag, so its AMI and no commit (not
    # the commit looked at now, which would change with every commit).
    assert result["build_id"] == ami["ImageId"] and result["git_commit"] == ""
    repo.write("unrelated.txt", "x\n")
    repo.commit("an unrelated commit")
    again = resolve(sandbox_env, repo, definition="base", on_missing="fail")
    assert (again["build_id"], again["git_commit"]) == (result["build_id"], "")


def test_failed_build_leaves_nothing(sandbox_env, repo, packer):
    template = json.loads(repo.path.joinpath("snowflake/snowflake.json").read_text())
    template["provisioners"].insert(
        0, {"type": "shell-local", "inline": ["echo boom >&2", "exit 3"]}
    )
    repo.write("snowflake/snowflake.json", json.dumps(template))
    repo.commit("broken provisioner")
    proc = external(sandbox_env, {"definition": "snowflake", "repo": str(repo.path)})
    assert proc.code == 1 and proc.stdout == ""
    assert "Packer failed to build snowflake/snowflake.json" in proc.stderr
    assert "exit status" in proc.stderr or "non-zero" in proc.stderr
    assert ".log" in proc.stderr
    # The base was built and published; the snowflake left no image, tag or manifest.
    images = own_images()
    assert [tags_of(i)[model.TAG_DEFINITION] for i in images] == ["base"]
    assert [k.split("/")[1] for k in manifest_keys()] == ["base"]


def test_hcl2_template_child(sandbox_env, repo, packer):
    repo.write("tools/tools.pkr.hcl", HCL_TEMPLATE)
    data = repo.catalog()
    data["definitions"]["tools"] = {"template": "tools", "parent": "base"}
    repo.set_catalog(data)
    repo.commit("tools")
    result = resolve(sandbox_env, repo, definition="tools")
    assert result["built"] == "true"
    images = {i["ImageId"]: i for i in own_images()}
    assert images[result["ami_id"]]["Name"] == f"tools-{result['fingerprint']}"
    assert tags_of(images[result["ami_id"]])[model.TAG_PARENT_AMI] == result["parent_ami_id"]


def test_manifest_matches_schema_and_images(sandbox_env, repo, packer):
    from bridge.aws.manifests import validate

    result = resolve(sandbox_env, repo)
    key = result["manifest_uri"].removeprefix(f"s3://{BUCKET}/")
    body = json.loads(aws_client("s3").get_object(Bucket=BUCKET, Key=key)["Body"].read())
    validate(body, key)
    assert body["definition"] == "snowflake"
    assert body["fingerprint"] == result["fingerprint"]
    assert body["amis"] == {"us-east-1": result["ami_id"]}
    assert body["parent"]["ami"] == result["parent_ami_id"]
    assert body["parent"]["definition"] == "base"
    assert body["git_commit"] == result["git_commit"]
    assert body["packer_version"] == "1.6.6"


def test_build_url_from_ci_variables(sandbox_env, repo, packer):
    env = {
        **sandbox_env,
        "GITHUB_SERVER_URL": "https://github.example",
        "GITHUB_REPOSITORY": "org/images",
        "GITHUB_RUN_ID": "42",
    }
    result = resolve(env, repo, definition="base")
    image = next(i for i in own_images() if i["ImageId"] == result["ami_id"])
    assert (
        tags_of(image)[model.TAG_BUILD_URL] == "https://github.example/org/images/actions/runs/42"
    )


def test_no_bucket_means_no_manifest(sandbox_env, repo, packer):
    data = repo.catalog()
    del data["manifest"]
    repo.set_catalog(data)
    repo.commit("no manifests")
    result = resolve(sandbox_env, repo, definition="base")
    assert result["manifest_uri"] == "" and result["built"] == "true"
    assert manifest_keys() == []


def test_image_owned_by_another_account_is_ignored(sandbox_env, repo, packer):
    built = resolve(sandbox_env, repo, definition="base")
    assert built["found"] == "true"
    other = resolve(
        sandbox_env, repo, definition="base", on_missing="report", owners="210987654321"
    )
    assert other["found"] == "false" and other["ami_id"] == ""


def test_a_visible_image_of_another_account_carrying_our_tag_is_never_used(sandbox_env, repo):
    """The sandbox's public base image belongs to another account but is visible to ours: with
    the fingerprint tag on it, a search without the owner filter would return it."""
    from bridge.sandbox import BASE_IMAGE

    ec2 = aws_client("ec2")
    me = aws_client("sts").get_caller_identity()["Account"]
    (public,) = ec2.describe_images(ImageIds=[BASE_IMAGE])["Images"]
    assert public["OwnerId"] != me
    fp = resolve(sandbox_env, repo, definition="base", on_missing="report")["fingerprint"]
    ec2.create_tags(Resources=[BASE_IMAGE], Tags=[{"Key": "SHA", "Value": fp}])
    tagged = ec2.describe_images(Filters=[{"Name": "tag:SHA", "Values": [fp]}])["Images"]
    assert [i["ImageId"] for i in tagged] == [BASE_IMAGE]

    report = resolve(sandbox_env, repo, definition="base", on_missing="report")
    assert report["found"] == "false" and report["ami_id"] == ""
    fail = external(
        sandbox_env, {"definition": "base", "repo": str(repo.path), "on_missing": "fail"}
    )
    assert fail.code == 3 and BASE_IMAGE not in fail.stdout


def test_multi_region_image_is_tagged_and_found_in_every_region(sandbox_env, repo, packer):
    template = json.loads(repo.path.joinpath("base/base.json").read_text())
    template["builders"][0]["ami_regions"] = ["us-west-2"]
    repo.write("base/base.json", json.dumps(template, indent=2))
    data = repo.catalog()
    data["definitions"]["base"]["regions"] = ["us-east-1", "us-west-2"]
    repo.set_catalog(data)
    repo.commit("base in two regions")
    result = resolve(sandbox_env, repo, definition="base")
    amis = json.loads(result["amis_json"])
    assert set(amis) == {"us-east-1", "us-west-2"} and amis["us-east-1"] == result["ami_id"]
    west = own_images("us-west-2")
    assert [i["ImageId"] for i in west] == [amis["us-west-2"]]
    assert tags_of(west[0])["SHA"] == result["fingerprint"]
    again = resolve(sandbox_env, repo, definition="base")
    assert again["built"] == "false" and json.loads(again["amis_json"]) == amis
    # Losing the copy in one region makes the image partial: it is copied again, not rebuilt.
    deregister("us-west-2", amis["us-west-2"])
    report = resolve(sandbox_env, repo, definition="base", on_missing="report")
    assert report["state"] == "partial" and report["ami_id"] == amis["us-east-1"]
    assert json.loads(report["regions_json"]) == {"us-east-1": "found", "us-west-2": "missing"}
    repaired = resolve(sandbox_env, repo, definition="base")
    assert repaired["built"] == "false" and repaired["state"] == "found"
    assert json.loads(repaired["amis_json"])["us-east-1"] == amis["us-east-1"]
    assert len(own_images("us-east-1")) == 1 and len(own_images("us-west-2")) == 1


def test_seed_manifest_gives_a_just_built_parent(sandbox_env, repo, packer, tmp_path):
    """The seed pipeline's manifest-base.json (Packer manifest format) from the same workflow."""
    ec2 = aws_client("ec2")
    instance = ec2.run_instances(ImageId="ami-0c55b159cbfafe1f0", MinCount=1, MaxCount=1)
    seed_base = ec2.create_image(
        InstanceId=instance["Instances"][0]["InstanceId"], Name="seed-base"
    )["ImageId"]
    ec2.create_tags(
        Resources=[seed_base], Tags=[{"Key": "SHA", "Value": "!!sha!!"}]
    )  # the seed's bug
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    (workspace / "manifest-base.json").write_text(
        json.dumps(
            {
                "builds": [{"artifact_id": f"us-east-1:{seed_base}", "packer_run_uuid": "r1"}],
                "last_run_uuid": "r1",
            }
        )
    )
    env = {**sandbox_env, "AMI_BRIDGE_PACKER_MANIFESTS": str(workspace)}
    result = resolve(env, repo)
    assert result["parent_ami_id"] == seed_base and result["built"] == "true"
    assert len(own_images()) == 2  # the seed's base and the new snowflake; no base rebuilt
    deregister("us-east-1", seed_base)
    rebuilt = resolve(env, repo, on_missing="report")
    assert rebuilt["found"] == "false"  # a manifest pointing at a gone image is not trusted


UNQUOTED_CHILD = """
variable ami_base {
  type    = string
  default = "ami-0c55b159cbfafe1f0"
}
variable ami_sha {
  type    = string
  default = ""
}
variable ec2_endpoint {
  type    = string
  default = ""
}
source "amazon-ebs" "child" {
  region                 = "us-east-1"
  source_ami             = var.ami_base
  instance_type          = "t3.micro"
  ami_name               = "child-${var.ami_sha}"
  communicator           = "none"
  custom_endpoint_ec2    = var.ec2_endpoint
  skip_region_validation = true
  run_tags = {
    Name = "packer-child-${var.ami_sha}"
  }
}
build {
  sources = ["source.amazon-ebs.child"]
}
"""


def launched_from(name: str) -> set[str]:
    """The AMIs the build instances named `name` ran (what EC2 recorded)."""
    ec2 = aws_client("ec2", "us-east-1")
    found = ec2.describe_instances(Filters=[{"Name": "tag:Name", "Values": [name]}])
    return {i["ImageId"] for r in found["Reservations"] for i in r["Instances"]}


def test_a_child_declaring_ami_base_without_quotes_is_built_on_its_parent(
    sandbox_env, repo, packer
):
    """HCL allows a bare label (`variable ami_base {`): the child still gets its parent's AMI,
    not the template's default image."""
    repo.write("child/child.pkr.hcl", UNQUOTED_CHILD)
    data = repo.catalog()
    data["definitions"]["child"] = {"template": "child", "parent": "base"}
    repo.set_catalog(data)
    repo.commit("a child with bare labels")
    result = resolve(sandbox_env, repo, definition="child")
    assert result["built"] == "true"
    assert launched_from(f"packer-child-{result['fingerprint']}") == {result["parent_ami_id"]}


def test_a_child_whose_template_cannot_take_its_parent_is_refused_before_any_build(
    sandbox_env, repo, packer
):
    repo.write("child/child.pkr.hcl", UNQUOTED_CHILD.replace("variable ami_base", "variable other"))
    data = repo.catalog()
    data["definitions"]["child"] = {"template": "child", "parent": "base"}
    repo.set_catalog(data)
    repo.commit("a child that cannot take its parent")
    proc = external(sandbox_env, {"definition": "child", "repo": str(repo.path)})
    assert proc.code == 1
    assert "declares no variable `ami_base`" in proc.stderr and "template child" in proc.stderr
    assert own_images() == []  # not even the parent was built


def test_pkr_var_is_refused_until_the_catalog_lists_it_then_packer_builds_with_it(
    sandbox_env, repo, packer
):
    """PKR_VAR_flavor in the CI job's (or Terraform's) environment sets `flavor` as Packer reads
    it (HCL2): refused, with nothing built, unless the catalog's `env` lists it; then Packer
    builds with that value, and another value is another image."""
    template = HCL_TEMPLATE.replace(
        'variable "ami_base" {',
        'variable "flavor" {\n  type    = string\n  default = "plain"\n}\nvariable "ami_base" {',
    ).replace(
        'ami_name               = "tools-${var.ami_sha}"',
        'ami_name               = "tools-${var.flavor}-${var.ami_sha}"',
    )
    repo.write("tools/tools.pkr.hcl", template)
    data = repo.catalog()
    data["definitions"]["tools"] = {"template": "tools", "parent": "base"}
    repo.set_catalog(data)
    repo.commit("tools with a flavor")
    query = {"definition": "tools", "repo": str(repo.path)}
    proc = external({**sandbox_env, "PKR_VAR_flavor": "spicy"}, query)
    assert proc.code == 1 and proc.stdout == ""
    assert "PKR_VAR_flavor (as the value of variable `flavor`)" in proc.stderr
    assert own_images() == []
    # The refusal's advice, followed: list it in the catalog's `env`.
    data["definitions"]["tools"]["env"] = ["PKR_VAR_flavor"]
    repo.set_catalog(data)
    repo.commit("tools takes its flavor from the environment")
    names = {}
    for flavor in ("spicy", "mild"):
        proc = external({**sandbox_env, "PKR_VAR_flavor": flavor}, query)
        assert proc.code == 0, proc.stderr
        result = json.loads(proc.stdout)
        images = {i["ImageId"]: i for i in own_images()}
        names[flavor] = images[result["ami_id"]]["Name"]
        assert names[flavor] == f"tools-{flavor}-{result['fingerprint']}"
    assert names["spicy"] != names["mild"].replace("mild", "spicy")  # two fingerprints


def test_the_not_found_message_says_whether_the_image_was_ever_built(sandbox_env, repo, packer):
    """A commit not built yet asks for a build (a -refresh-only apply never builds); only an
    image built and then deregistered is pointed at `terraform apply -replace`."""
    data = repo.catalog()
    data["manifest"] = {"bucket": BUCKET, "prefix": "images"}
    repo.set_catalog(data)
    repo.commit("manifests")
    query = {"definition": "base", "repo": str(repo.path), "on_missing": "fail"}
    never = external(sandbox_env, query)
    assert never.code == 3
    assert "has not been built yet" in never.stderr and "-replace" not in never.stderr
    built = resolve(sandbox_env, repo, "base")
    deregister("us-east-1", built["ami_id"])
    gone = external(sandbox_env, query)
    assert gone.code == 3
    assert "deregistered since" in gone.stderr and "-replace=" in gone.stderr


def test_copies_packer_makes_itself_are_warned_about(sandbox_env, repo, packer):
    """A template's own `ami_regions` copies are untracked (no tags): the build names them and
    says how to let the bridge track them, instead of leaving them unseen."""
    from testing.bridge import run_bridge

    template = json.loads((repo.path / "base" / "base.json").read_text())
    template["builders"][0]["ami_regions"] = ["eu-west-1"]
    repo.write("base/base.json", json.dumps(template, indent=2))
    repo.commit("the template copies the image itself")
    proc = run_bridge(["build", "base", "--repo", str(repo.path)], sandbox_env)
    assert proc.code == 0, proc.stderr
    (copy,) = aws_client("ec2", "eu-west-1").describe_images(Owners=["self"])["Images"]
    assert f"Packer also copied the image to eu-west-1 ({copy['ImageId']})" in proc.stderr
    assert "list the regions in the definition's `regions`" in proc.stderr
