"""The upstream image is part of a root's identity: source filters are resolved by the bridge,
fingerprinted, and pinned for Packer (sources.py, fingerprint.py, build.py)."""

from __future__ import annotations

import json
import sys
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import boto3
import pytest

from bridge import model
from bridge.aws.clients import AwsClients
from bridge.errors import BuildError, FingerprintError
from bridge.sandbox import BASE_IMAGE, access_key
from bridge.sources import SourceFilter, SourcePick, find_source
from bridge.templates import pin
from testing.bridge import run_bridge
from testing.faultproxy import FaultProxy, creation_dates
from testing.fingerprint import rewrite_template
from testing.hold import wait_for
from testing.sandbox import aws_client, builds_per_definition, make_image, tags_of

CANONICAL = "099720109477"
FOCAL = "ubuntu/images/hvm-ssd/ubuntu-focal-20.04-amd64-server-"


_RELEASED: list[str] = []  # the CreationDate of the images published so far


def publish_upstream(name: str, region: str = "us-east-1") -> str:
    """A new public image in the upstream publisher's account (as Canonical releases one), in a
    later second than the one before: EC2's CreationDate has whole seconds, and a release the
    same second as another would tie with it (the bridge then warns and takes the higher ID)."""
    ec2 = boto3.client(
        "ec2",
        region_name=region,
        aws_access_key_id=access_key(CANONICAL),
        aws_secret_access_key="sandbox",
    )
    if _RELEASED:
        last = model.parse_time(_RELEASED[-1])
        assert last is not None
        wait_for(lambda: datetime.now(timezone.utc).replace(microsecond=0) > last)
    instance = ec2.run_instances(ImageId=BASE_IMAGE, MinCount=1, MaxCount=1)["Instances"][0]
    ami: str = ec2.create_image(InstanceId=instance["InstanceId"], Name=name)["ImageId"]
    (image,) = ec2.describe_images(ImageIds=[ami])["Images"]
    _RELEASED.append(image["CreationDate"])
    ec2.modify_image_attribute(
        ImageId=ami, LaunchPermission={"Add": [{"Group": "all"}]}, Attribute="launchPermission"
    )
    return ami


def resolve(repo, env, *flags: str) -> tuple[int, dict]:
    proc = run_bridge(["resolve", "--all", "--repo", str(repo.path), "--json", *flags], env)
    return proc.code, (json.loads(proc.stdout) if proc.stdout else {"stderr": proc.stderr})


def launched_from(result: dict) -> str:
    """The AMI Packer's build instance ran (what EC2 recorded), for a resolved image."""
    name = f"packer-{result['definition']}-{result['fingerprint'][:12]}"
    ec2 = aws_client("ec2", "us-east-1")
    found = ec2.describe_instances(Filters=[{"Name": "tag:Name", "Values": [name]}])
    images = {i["ImageId"] for r in found["Reservations"] for i in r["Instances"]}
    assert len(images) == 1, images
    return images.pop()


def packer_that_sees_a_release(tmp_path: Path, packer: str, name: str) -> str:
    """Packer, run after the upstream publisher releases a new image: as if it appeared between
    the bridge's look-up and the build."""
    script = tmp_path / "packer"
    script.write_text(
        f"#!{sys.executable}\n"
        "import os, sys\n"
        f"sys.path.insert(0, {str(Path(__file__).parent.parent)!r})\n"
        "if sys.argv[1:2] == ['build']:\n"
        "    from tests.test_sources import publish_upstream\n"
        f"    publish_upstream({name!r})\n"
        f"os.execv({packer!r}, [{packer!r}, *sys.argv[1:]])\n"
    )
    script.chmod(0o755)
    return str(script)


@pytest.fixture
def tracking(repo):
    """The example repository with the base tracking its upstream image (the default)."""
    data = repo.catalog()
    del data["track_source"]
    repo.set_catalog(data)
    repo.commit("track the upstream image")
    return repo


def test_a_new_upstream_image_rebuilds_the_base_and_its_children_on_exactly_that_image(
    sandbox_env, tracking, packer
):
    code, first = resolve(tracking, sandbox_env, "--on-missing", "build")
    assert code == 0, first
    assert launched_from(first["base"]) == BASE_IMAGE  # the newest focal image now

    code, again = resolve(tracking, sandbox_env, "--on-missing", "fail")
    assert code == 0, again  # nothing upstream changed: the same identity, found
    assert again["base"]["fingerprint"] == first["base"]["fingerprint"]

    patched = publish_upstream(FOCAL + "20261127")
    code, stale = resolve(tracking, sandbox_env, "--on-missing", "report")
    assert code == 3, stale
    assert stale["base"]["state"] == "missing"
    assert stale["base"]["fingerprint"] != first["base"]["fingerprint"]
    assert stale["snowflake"]["fingerprint"] != first["snowflake"]["fingerprint"]

    code, second = resolve(tracking, sandbox_env, "--on-missing", "build")
    assert code == 0, second
    assert second["base"]["fingerprint"] == stale["base"]["fingerprint"]
    assert launched_from(second["base"]) == patched
    assert second["snowflake"]["parent_ami_id"] == second["base"]["ami_id"]
    assert builds_per_definition() == Counter({"base": 2, "snowflake": 2})


def test_packer_builds_on_the_fingerprinted_image_even_when_a_newer_one_appears(
    sandbox_env, tracking, packer, tmp_path
):
    """The filter is resolved once, before the build; Packer gets that AMI, not the filter."""
    env = {
        **sandbox_env,
        "AMI_BRIDGE_PACKER": packer_that_sees_a_release(tmp_path, packer, FOCAL + "20270101"),
    }
    code, built = resolve(tracking, env, "--on-missing", "build")
    assert code == 0, built
    assert launched_from(built["base"]) == BASE_IMAGE  # what was fingerprinted
    tags = tags_of(
        aws_client("ec2").describe_images(ImageIds=[built["base"]["ami_id"]])["Images"][0]
    )
    assert tags["ami-chain:source-ami"] == BASE_IMAGE
    # The release is seen by the next resolve: a new identity.
    code, after = resolve(tracking, sandbox_env, "--on-missing", "report")
    assert after["base"]["fingerprint"] != built["base"]["fingerprint"]


def test_track_source_false_leaves_the_filter_to_packer(sandbox_env, repo, packer):
    code, first = resolve(repo, sandbox_env, "--on-missing", "build")
    assert code == 0, first
    assert first["base"]["fingerprint"] == repo.tree_sha("base")  # the seed's identity
    publish_upstream(FOCAL + "20261127")
    code, again = resolve(repo, sandbox_env, "--on-missing", "fail")
    assert code == 0, again
    assert again["base"]["ami_id"] == first["base"]["ami_id"]


def test_the_source_is_chosen_in_the_home_region_whichever_region_resolves(
    sandbox_env, tracking, packer
):
    data = tracking.catalog()
    data["regions"] = ["us-east-1", "eu-west-1"]
    tracking.set_catalog(data)
    tracking.commit("two regions")
    publish_upstream(FOCAL + "20261127", region="eu-west-1")  # newer, but only in eu-west-1
    east = run_bridge(["status", "--repo", str(tracking.path), "--json"], sandbox_env)
    west = run_bridge(
        ["status", "--repo", str(tracking.path), "--json", "--region", "eu-west-1"], sandbox_env
    )
    assert east.code == west.code == 0, (east.stderr, west.stderr)
    assert (
        json.loads(east.stdout)["base"]["fingerprint"]
        == (json.loads(west.stdout)["base"]["fingerprint"])
    )


def test_a_filter_matching_nothing_fails_naming_the_filter(sandbox_env, tracking):
    template = tracking.path / "base" / "base.json"
    data = json.loads(template.read_text())
    data["builders"][0]["source_ami_filter"]["filters"]["name"] = "no-such-image-*"
    tracking.write("base/base.json", json.dumps(data))
    tracking.commit("a filter that matches nothing")
    code, out = resolve(tracking, sandbox_env, "--on-missing", "build")
    assert code == 1
    assert "no-such-image-*" in out["stderr"] and "matches no available image" in out["stderr"]
    assert "Traceback" not in out["stderr"]
    assert builds_per_definition() == Counter()


def test_the_catalog_source_is_passed_as_ami_base(sandbox_env, tracking, packer):
    """A root template that takes `ami_base` (as a child's does) gets the catalog's choice."""
    template = tracking.path / "base" / "base.json"
    data = json.loads(template.read_text())
    builder = data["builders"][0]
    del builder["source_ami_filter"]
    builder["source_ami"] = "{{user `ami_base`}}"
    data["variables"]["ami_base"] = ""
    tracking.write("base/base.json", json.dumps(data, indent=2))
    catalog = tracking.catalog()
    catalog["definitions"]["base"]["source"] = {
        "owners": [CANONICAL],
        "filters": {"name": FOCAL + "*"},
    }
    tracking.set_catalog(catalog)
    tracking.commit("the catalog chooses the base's upstream image")
    patched = publish_upstream(FOCAL + "20261127")
    code, built = resolve(tracking, sandbox_env, "--on-missing", "build")
    assert code == 0, built
    assert launched_from(built["base"]) == patched


# -- filters written with variables, locals and interpolation ---------------------------------

AL2023 = "al2023-ami-2023.6."

HCL_VARIABLES = """
variable "ami_sha" {
  type    = string
  default = ""
}
variable "ami_name" {
  type    = string
  default = "templated"
}
variable "region" {
  type    = string
  default = "us-east-1"
}
variable "ec2_endpoint" {
  type    = string
  default = ""
}
variable "source_ami_name" {
  type    = string
  default = "ubuntu/images/hvm-ssd/ubuntu-focal-20.04-amd64-server-*"
}
variable "publisher" {
  type    = string
  default = "099720109477"
}
"""

HCL_SOURCE = """
source "amazon-ebs" "templated" {
  region = var.region
  source_ami_filter {
    filters = {
      name                = var.source_ami_name
      "root-device-type"  = "ebs"
    }
    owners      = [var.publisher]
    most_recent = true
  }
  instance_type          = "t3.micro"
  ami_name               = "${var.ami_name}-${var.ami_sha}"
  communicator           = "none"
  custom_endpoint_ec2    = var.ec2_endpoint
  skip_region_validation = true
  run_tags = {
    Name = "packer-${var.ami_name}"
  }
}

build {
  sources = ["source.amazon-ebs.templated"]
}
"""


def add_templated(repo, files: dict[str, str], **entry) -> None:
    """A tracked root `templated` whose HCL2 directory template is `files` (name -> text)."""
    for name, text in files.items():
        repo.write(f"templated/{name}", text)
    data = repo.catalog()
    data["definitions"]["templated"] = {"template": "templated", "track_source": True, **entry}
    repo.set_catalog(data)
    repo.commit("a root whose filter is written with variables")


def resolve_one(repo, env, name: str, on_missing: str) -> tuple[int, dict]:
    args = ["resolve", name, "--repo", str(repo.path), "--json", "--on-missing", on_missing]
    proc = run_bridge(args, env)
    return proc.code, (json.loads(proc.stdout)[name] if proc.stdout else {"stderr": proc.stderr})


def rebuilds_on_each_new_match(repo, env, name: str, first: str, matching: str, other: str):
    """`name` is built on `first`; an image matching the filter as evaluated (named
    `matching`) is a new identity built on exactly that image; one that does not match
    (`other`) changes nothing."""
    code, built = resolve_one(repo, env, name, "build")
    assert code == 0, built
    assert launched_from(built) == first
    publish_upstream(other)
    code, same = resolve_one(repo, env, name, "fail")
    assert code == 0, same
    assert same["fingerprint"] == built["fingerprint"]
    patched = publish_upstream(matching)
    code, stale = resolve_one(repo, env, name, "report")
    assert code == 3 and stale["state"] == "missing", stale
    code, rebuilt = resolve_one(repo, env, name, "build")
    assert code == 0, rebuilt
    assert rebuilt["fingerprint"] == stale["fingerprint"] != built["fingerprint"]
    assert launched_from(rebuilt) == patched
    image = aws_client("ec2").describe_images(ImageIds=[rebuilt["ami_id"]])["Images"][0]
    assert tags_of(image)["ami-chain:source-ami"] == patched


def test_a_filter_through_a_variable_default_tracks_the_upstream_image(sandbox_env, repo, packer):
    add_templated(repo, {"variables.pkr.hcl": HCL_VARIABLES, "main.pkr.hcl": HCL_SOURCE})
    rebuilds_on_each_new_match(
        repo, sandbox_env, "templated", BASE_IMAGE, FOCAL + "20261127", AL2023 + "20261127"
    )


def test_a_filter_under_unquoted_block_labels_tracks_the_upstream_image(sandbox_env, repo, packer):
    """HCL takes a block's labels quoted or not (`source amazon-ebs templated {`): the filter
    under such labels is tracked as under quoted ones, not skipped."""
    unquoted = HCL_SOURCE.replace(
        'source "amazon-ebs" "templated" {', "source amazon-ebs templated {"
    )
    assert unquoted != HCL_SOURCE
    add_templated(repo, {"variables.pkr.hcl": HCL_VARIABLES, "main.pkr.hcl": unquoted})
    rebuilds_on_each_new_match(
        repo, sandbox_env, "templated", BASE_IMAGE, FOCAL + "20261127", AL2023 + "20261127"
    )


def test_two_roots_whose_filters_share_owners_each_get_their_own_image_in_one_run(
    sandbox_env, tracking, packer
):
    """Filters of one publisher that match different names choose different images, also when
    one run resolves both (the run looks each filter up once, by all of what it asks)."""
    jammy = "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-"
    template = (tracking.path / "base" / "base.json").read_text()
    assert FOCAL in template
    tracking.write("jammy/jammy.json", template.replace(FOCAL, jammy))
    data = tracking.catalog()
    data["definitions"]["jammy"] = {"template": "jammy/jammy.json"}
    tracking.set_catalog(data)
    tracking.commit("a second root from the same publisher")
    released = publish_upstream(jammy + "20261127")
    code, built = resolve(tracking, sandbox_env, "--on-missing", "build")
    assert code == 0, built
    assert launched_from(built["base"]) == BASE_IMAGE
    assert launched_from(built["jammy"]) == released
    for name, upstream in (("base", BASE_IMAGE), ("jammy", released)):
        (image,) = aws_client("ec2").describe_images(ImageIds=[built[name]["ami_id"]])["Images"]
        assert tags_of(image)["ami-chain:source-ami"] == upstream


def test_a_filter_through_an_auto_loaded_var_file_tracks_the_upstream_image(
    sandbox_env, repo, packer
):
    """The directory's *.auto.pkrvars.hcl files set the variable, the later (lexically) last."""
    first = publish_upstream(AL2023 + "20261101")
    add_templated(
        repo,
        {
            "variables.pkr.hcl": HCL_VARIABLES,
            "main.pkr.hcl": HCL_SOURCE,
            "a.auto.pkrvars.hcl": 'source_ami_name = "no-such-image-*"\n',
            "b.auto.pkrvars.hcl": f'source_ami_name = "{AL2023}*"\n',
        },
    )
    rebuilds_on_each_new_match(
        repo, sandbox_env, "templated", first, AL2023 + "20261127", FOCAL + "20261127"
    )


def test_a_source_ami_variable_left_empty_leaves_the_choice_to_the_filter(
    sandbox_env, repo, packer
):
    """Packer uses the filter when `source_ami` is empty: so does the bridge, and the pinned
    template has only the chosen image as its `source_ami`."""
    variables = HCL_VARIABLES + 'variable "source_ami_id" {\n  default = ""\n}\n'
    main = HCL_SOURCE.replace(
        "  source_ami_filter {", "  source_ami = var.source_ami_id\n  source_ami_filter {"
    )
    add_templated(repo, {"variables.pkr.hcl": variables, "main.pkr.hcl": main})
    rebuilds_on_each_new_match(
        repo, sandbox_env, "templated", BASE_IMAGE, FOCAL + "20261127", AL2023 + "20261127"
    )


JSON_TEMPLATED = {
    "source_ami_id": "",
    "source_ami_filter_name": FOCAL + "*",
    "publisher": CANONICAL,
}


def templated_json(repo, **catalog_variables: str) -> None:
    """The base's filter written with user variables, and a `source_ami` that is empty by
    default, so the filter chooses."""

    def change(template):
        template["variables"].update(JSON_TEMPLATED)
        builder = template["builders"][0]
        builder["source_ami"] = "{{user `source_ami_id`}}"
        builder["source_ami_filter"]["filters"]["name"] = "{{user `source_ami_filter_name`}}"
        builder["source_ami_filter"]["owners"] = ["{{user `publisher`}}"]

    rewrite_template(repo, "base/base.json", change)
    data = repo.catalog()
    data["definitions"]["base"]["track_source"] = True
    if catalog_variables:
        data["definitions"]["base"]["variables"] = catalog_variables
    repo.set_catalog(data)
    repo.commit("the base's filter is written with user variables")


def test_a_json_filter_through_user_variables_tracks_the_upstream_image(sandbox_env, repo, packer):
    templated_json(repo)
    rebuilds_on_each_new_match(
        repo, sandbox_env, "base", BASE_IMAGE, FOCAL + "20261127", AL2023 + "20261127"
    )


def test_the_catalogs_variables_override_the_templates_defaults_in_a_filter(
    sandbox_env, repo, packer
):
    first = publish_upstream(AL2023 + "20261101")
    templated_json(repo, source_ami_filter_name=AL2023 + "*")
    rebuilds_on_each_new_match(
        repo, sandbox_env, "base", first, AL2023 + "20261127", FOCAL + "20261127"
    )


HCL_DATA = """
locals {
  release = "focal-20.04"
}

data "amazon-ami" "ubuntu" {
  filters = {
    name               = "ubuntu/images/hvm-ssd/ubuntu-${local.release}-amd64-server-*"
    "root-device-type" = "ebs"
  }
  owners      = [var.publisher]
  most_recent = true
}
"""


def test_a_data_source_through_locals_and_interpolation_tracks_the_upstream_image(
    sandbox_env, repo, packer
):
    """The data source is in its own file; the pinned template no longer has it, so even a
    Packer without data sources (1.6) builds on exactly the chosen image."""
    main = HCL_SOURCE.replace(
        HCL_SOURCE[HCL_SOURCE.index("  source_ami_filter") : HCL_SOURCE.index("  instance_type")],
        "  source_ami = data.amazon-ami.ubuntu.id\n",
    )
    add_templated(
        repo, {"variables.pkr.hcl": HCL_VARIABLES, "data.pkr.hcl": HCL_DATA, "main.pkr.hcl": main}
    )
    rebuilds_on_each_new_match(
        repo,
        sandbox_env,
        "templated",
        BASE_IMAGE,
        FOCAL + "20261127",
        "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-20261127",
    )


@pytest.mark.parametrize(
    ("files", "field", "shown"),
    [
        (
            {"main.pkr.hcl": HCL_SOURCE, "variables.pkr.hcl": HCL_VARIABLES.replace(
                'default = "ubuntu/images/hvm-ssd/ubuntu-focal-20.04-amd64-server-*"',
                'default = env("SOURCE_AMI_NAME")')},
            "`filters.name`",
            'env("SOURCE_AMI_NAME") (through var.source_ami_name from the defaults in the '
            "template), which comes from the environment Packer runs in",
        ),
        (
            {"main.pkr.hcl": HCL_SOURCE.replace(
                "name                = var.source_ami_name",
                'name = "${var.source_ami_name}-${local.day}"',
             ) + 'locals {\n  day = formatdate("YYYYMMDD", timestamp())\n}\n',
             "variables.pkr.hcl": HCL_VARIABLES},
            "`filters.name`",
            "timestamp() (through local.day), which changes with every run",
        ),
        (
            {"main.pkr.hcl": HCL_SOURCE.replace("[var.publisher]", "[var.ami_sha]"),
             "variables.pkr.hcl": HCL_VARIABLES},
            "`owners[0]`",
            "ami_sha, which the bridge sets for each build (the fingerprint)",
        ),
    ],
)  # fmt: skip
def test_a_filter_only_the_build_can_know_is_refused_saying_why(
    sandbox_env, repo, files, field, shown
):
    add_templated(repo, files)
    code, out = resolve_one(repo, sandbox_env, "templated", "build")
    assert code == 1, out
    error = out["stderr"]
    assert error.count("\n") == 1 and "Traceback" not in error  # one paragraph
    assert "source.amazon-ebs.templated in templated/main.pkr.hcl (definition 'templated')" in (
        error
    )
    assert field in error and shown in error
    assert "so the bridge cannot know before the build which image Packer would build on" in error
    assert "set `track_source: false`" in error
    assert builds_per_definition() == Counter()


def test_a_json_filter_with_an_environment_value_is_refused_saying_why(sandbox_env, tracking):
    def change(template):
        filters = template["builders"][0]["source_ami_filter"]["filters"]
        filters["name"] = "ubuntu/images/{{env `UBUNTU_RELEASE`}}-*"

    rewrite_template(tracking, "base/base.json", change)
    tracking.commit("a filter from the environment")
    code, out = resolve(tracking, sandbox_env, "--on-missing", "build")
    assert code == 1
    error = out["stderr"]
    assert error.count("\n") == 1
    assert "Builder 0 of base/base.json (definition 'base')" in error
    assert "`filters.name` depending on {{env `UBUNTU_RELEASE`}}" in error
    assert "comes from the environment Packer runs in" in error
    assert "in the catalog's `variables`" in error and "`track_source: false`" in error
    assert builds_per_definition() == Counter()


# -- unit: fingerprints and pinning ----------------------------------------------------------


def test_without_ec2_a_tracked_filter_is_an_error_not_a_fingerprint(tracking):
    from bridge.catalog import load_catalog
    from bridge.fingerprint import fingerprint_all
    from bridge.git import open_repo

    catalog = load_catalog(tracking.path)
    with pytest.raises(FingerprintError, match="track_source: false"):
        fingerprint_all(open_repo(tracking.path), catalog.closure(["base"]))


def test_the_chosen_image_is_in_the_fingerprint_of_the_root_and_its_children(tracking):
    from bridge.catalog import load_catalog
    from bridge.fingerprint import fingerprint_all
    from bridge.git import open_repo

    catalog = load_catalog(tracking.path)

    def chooser(ami: str):
        def pick(d, filters):
            return [SourcePick(f, ami, "", "us-east-1") for f in filters]

        return pick

    def fps(ami: str) -> dict[str, str]:
        snap = fingerprint_all(open_repo(tracking.path), catalog.all(), pick_sources=chooser(ami))
        return {n: f.value for n, f in snap.fingerprints.items()}

    one, same, other = fps("ami-1"), fps("ami-1"), fps("ami-2")
    assert one == same
    assert one["base"] != other["base"] and one["snowflake"] != other["snowflake"]
    assert one["base"] != tracking.tree_sha("base")


def chosen_filters(repo, name: str) -> list[SourceFilter]:
    """The filters fingerprinting `name` asks to resolve (an image per filter, made up)."""
    from bridge.catalog import load_catalog
    from bridge.fingerprint import fingerprint_all
    from bridge.git import open_repo

    asked: list[SourceFilter] = []

    def pick(d, filters):
        asked.extend(filters)
        return [SourcePick(f, "ami-1", "", "us-east-1") for f in filters]

    catalog = load_catalog(repo.path)
    fingerprint_all(open_repo(repo.path), catalog.closure([name]), pick_sources=pick)
    return asked


@pytest.mark.parametrize(
    ("source_ami_id", "tracked"), [("", True), ("ami-0123456789abcdef0", False)]
)
def test_a_source_ami_is_fixed_only_when_it_has_a_value(repo, source_ami_id, tracked):
    """An empty `source_ami` leaves the choice to the filter: tracked, never "fixed"."""
    templated_json(repo)
    rewrite_template(
        repo, "base/base.json", lambda t: t["variables"].update(source_ami_id=source_ami_id)
    )
    repo.commit("source_ami_id")
    filters = chosen_filters(repo, "base")
    assert [(f.origin, dict(f.filters)["name"], f.owners) for f in filters] == (
        [("builder 0", FOCAL + "*", (CANONICAL,))] if tracked else []
    )


def test_a_source_ami_from_the_environment_is_refused_beside_a_filter(repo):
    """Whether the filter chooses the image would depend on the environment."""
    templated_json(repo)
    rewrite_template(
        repo, "base/base.json", lambda t: t["variables"].update(source_ami_id="{{env `AMI`}}")
    )
    repo.commit("source_ami from the environment")
    with pytest.raises(FingerprintError) as caught:
        chosen_filters(repo, "base")
    message = str(caught.value)
    assert "Builder 0 of base/base.json (definition 'base')" in message
    assert "`source_ami` depending on {{env `AMI`}} (through {{user `source_ami_id`}}" in message
    assert "`track_source: false`" in message and "\n" not in message


def test_a_source_built_on_a_data_source_leaves_its_filter_to_check_it(repo):
    """`source_ami = data.amazon-ami.x.id` has a value: the data source is what chooses."""
    main = HCL_SOURCE.replace(
        "  source_ami_filter {", "  source_ami = data.amazon-ami.ubuntu.id\n  source_ami_filter {"
    )
    add_templated(
        repo, {"variables.pkr.hcl": HCL_VARIABLES, "data.pkr.hcl": HCL_DATA, "main.pkr.hcl": main}
    )
    (data,) = chosen_filters(repo, "templated")
    assert data.origin == "data.amazon-ami.ubuntu"
    assert dict(data.filters)["name"] == FOCAL + "*"


def test_var_files_beside_a_single_file_template_are_not_read(repo):
    """Packer loads *.auto.pkrvars.* for a template directory only; JSON after HCL ones."""
    files = {
        "variables.pkr.hcl": HCL_VARIABLES,
        "main.pkr.hcl": HCL_SOURCE,
        "a.auto.pkrvars.json": json.dumps({"source_ami_name": "from-json-*"}),
        "b.auto.pkrvars.hcl": 'source_ami_name = "from-hcl-*"\n',
    }
    add_templated(repo, files)
    (directory,) = chosen_filters(repo, "templated")
    assert dict(directory.filters)["name"] == "from-json-*"
    repo.write("single/main.pkr.hcl", HCL_VARIABLES + HCL_SOURCE)
    repo.write("single/x.auto.pkrvars.hcl", 'source_ami_name = "ignored-*"\n')
    data = repo.catalog()
    data["definitions"]["single"] = {"template": "single/main.pkr.hcl", "track_source": True}
    repo.set_catalog(data)
    repo.commit("a single-file template")
    (single,) = chosen_filters(repo, "single")
    assert dict(single.filters)["name"] == FOCAL + "*"


def test_a_literal_filter_keeps_its_fingerprint(tracking):
    """Evaluating filters changes nothing for one written literally: the same filter values,
    so the same image and fingerprint (this is the example base's, pinned)."""
    (f,) = chosen_filters(tracking, "base")
    assert (f.origin, f.owners, f.most_recent) == ("builder 0", (CANONICAL,), True)
    assert f.filters == (
        ("name", FOCAL + "*"),
        ("root-device-type", "ebs"),
        ("virtualization-type", "hvm"),
    )


HCL = """
source "amazon-ebs" "ubuntu" {
  region = var.region
  source_ami_filter {
    filters = {
      name                = "ubuntu/images/*"   # } a brace in a comment
      "root-device-type"  = "ebs"
    }
    owners      = ["099720109477"]
    most_recent = true
  }
  instance_type = "t3.micro"
}

build {
  sources = ["source.amazon-ebs.ubuntu"]
}
"""


def hcl_filter(kind="hcl2-source", origin="source.amazon-ebs.ubuntu") -> SourceFilter:
    return SourceFilter(origin, kind, ("self",), (("name", "x"),), True, file="t.pkr.hcl")


def test_an_hcl2_source_filter_is_replaced_by_the_chosen_ami(tmp_path: Path):
    import hcl2

    (tmp_path / "t.pkr.hcl").write_text(HCL)
    pin(tmp_path, [SourcePick(hcl_filter(), "ami-0123456789abcdef0", "", "us-east-1")])
    body = hcl2.loads((tmp_path / "t.pkr.hcl").read_text())["source"][0]['"amazon-ebs"']['"ubuntu"']
    assert "source_ami_filter" not in body
    assert body["source_ami"] == '"ami-0123456789abcdef0"'
    assert body["instance_type"] == '"t3.micro"'  # the rest of the block is kept


def test_an_hcl2_data_source_reference_becomes_the_chosen_ami(tmp_path: Path):
    text = (
        'data "amazon-ami" "ubuntu" {\n  filters = { name = "x" }\n  owners = ["self"]\n}\n'
        'source "amazon-ebs" "a" {\n  source_ami = data.amazon-ami.ubuntu.id\n}\n'
    )
    (tmp_path / "t.pkr.hcl").write_text(text)
    f = hcl_filter("hcl2-data", "data.amazon-ami.ubuntu")
    pin(tmp_path, [SourcePick(f, "ami-0abc", "", "us-east-1")])
    assert 'source_ami = "ami-0abc"' in (tmp_path / "t.pkr.hcl").read_text()


def test_a_template_the_bridge_cannot_pin_is_refused(tmp_path: Path):
    (tmp_path / "t.pkr.hcl").write_text(HCL.replace("source_ami_filter {", "source_ami_filter = {"))
    with pytest.raises(BuildError, match="could not rewrite"):
        pin(tmp_path, [SourcePick(hcl_filter(), "ami-0abc", "", "us-east-1")])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c["definitions"]["snowflake"].update(source=SOURCE), "both a `parent`"),
        (
            lambda c: c["definitions"]["base"].update(source=SOURCE, track_source=False),
            "does not track it",
        ),
    ],
)
def test_a_catalog_source_that_cannot_be_honoured_is_refused(tracking, change, message):
    from bridge.catalog import load_catalog
    from bridge.errors import CatalogError

    data = tracking.catalog()
    change(data)
    tracking.set_catalog(data)
    with pytest.raises(CatalogError, match=message):
        load_catalog(tracking.path)


SOURCE = {"owners": [CANONICAL], "filters": {"name": FOCAL + "*"}}


def test_a_source_ami_variable_is_replaced_with_the_filter(tmp_path: Path):
    (tmp_path / "t.pkr.hcl").write_text(
        HCL.replace(
            "  source_ami_filter {", "  source_ami = var.source_ami_id  \n  source_ami_filter {"
        )
    )
    pin(tmp_path, [SourcePick(hcl_filter(), "ami-0abc", "", "us-east-1")])
    text = (tmp_path / "t.pkr.hcl").read_text()
    assert text.count("source_ami") == 1 and 'source_ami = "ami-0abc"' in text


def test_a_data_source_used_in_another_file_is_pinned_there_and_removed(tmp_path: Path):
    (tmp_path / "data.pkr.hcl").write_text(
        'locals {\n  r = "focal"\n}\n'
        'data "amazon-ami" "ubuntu" {\n  filters = { name = "u-${local.r}-*" }\n'
        '  owners = ["self"]\n}\n'
    )
    (tmp_path / "t.pkr.hcl").write_text(
        'source "amazon-ebs" "a" {\n  source_ami = data.amazon-ami.ubuntu.id\n'
        '  ami_description = "from ${data.amazon-ami.ubuntu.id}"\n}\n'
    )
    f = SourceFilter("data.amazon-ami.ubuntu", "hcl2-data", ("self",), (("name", "x"),), True,
                     file="data.pkr.hcl")  # fmt: skip
    pin(tmp_path, [SourcePick(f, "ami-0abc", "", "us-east-1")])
    main = (tmp_path / "t.pkr.hcl").read_text()
    assert 'source_ami = "ami-0abc"' in main and 'from ${"ami-0abc"}' in main
    assert (tmp_path / "data.pkr.hcl").read_text() == 'locals {\n  r = "focal"\n}\n'


def test_a_data_source_still_used_otherwise_is_kept(tmp_path: Path):
    text = (
        'data "amazon-ami" "ubuntu" {\n  filters = { name = "x" }\n  owners = ["self"]\n}\n'
        'source "amazon-ebs" "a" {\n  source_ami = data.amazon-ami.ubuntu.id\n'
        "  ami_description = data.amazon-ami.ubuntu.name\n}\n"
    )
    (tmp_path / "t.pkr.hcl").write_text(text)
    f = hcl_filter("hcl2-data", "data.amazon-ami.ubuntu")
    pin(tmp_path, [SourcePick(f, "ami-0abc", "", "us-east-1")])
    pinned = (tmp_path / "t.pkr.hcl").read_text()
    assert 'source_ami = "ami-0abc"' in pinned and 'data "amazon-ami" "ubuntu"' in pinned


def test_only_the_selected_builds_filter_is_part_of_its_identity(sandbox_env, repo, packer):
    """Two sources in one directory, each definition selecting one with `only`: another source's
    filter neither refuses the definition (matching nothing) nor moves its fingerprint."""
    other = (
        HCL_SOURCE.split("build {")[0]
        .replace('"templated"', '"other"')
        .replace("var.source_ami_name", '"vendor/other-image-*"')
    )
    build = 'build {\n  sources = ["source.amazon-ebs.templated", "source.amazon-ebs.other"]\n}\n'
    files = {
        "variables.pkr.hcl": HCL_VARIABLES,
        "main.pkr.hcl": HCL_SOURCE.split("build {")[0] + other + build,
    }
    add_templated(repo, files, only="amazon-ebs.templated")
    data = repo.catalog()
    data["definitions"]["other"] = {
        "template": "templated",
        "only": "amazon-ebs.other",
        "track_source": True,
    }
    repo.set_catalog(data)
    repo.commit("a second definition of the directory")
    code, first = resolve_one(repo, sandbox_env, "templated", "report")
    assert code == 3 and first["state"] == "missing", first  # not refused for `other`'s filter
    code, refused = resolve_one(repo, sandbox_env, "other", "report")
    assert code == 1 and "vendor/other-image-*" in refused["stderr"]  # its own filter counts
    publish_upstream("vendor/other-image-20261201")  # `other`'s upstream moves
    code, after = resolve_one(repo, sandbox_env, "templated", "report")
    assert code == 3 and after["fingerprint"] == first["fingerprint"]
    code, found = resolve_one(repo, sandbox_env, "other", "report")
    assert code == 3, found


@pytest.mark.parametrize("tie", [True, False])
def test_a_filter_whose_newest_matches_share_a_second_is_warned_about(
    sandbox_env, sandbox_server, monkeypatch, caplog, tie
):
    """EC2's CreationDate is in whole seconds: two matches made in the newest one (an amd64 and
    an arm64 image, by a filter naming no architecture) leave Packer a choice. The bridge takes
    the highest AMI ID, pins it, and says so."""
    made = [make_image(aws_client("ec2"), f"vendor-{arch}") for arch in ("amd64", "arm64")]
    seconds = iter(range(10, 60))  # one second for every image, or each its own
    dates = creation_dates(lambda: f"2026-12-01T10:00:{10 if tie else next(seconds)}.000Z")
    source = SourceFilter("builder 0", "json-builder", ("self",), (("name", "vendor-*"),), True)
    with FaultProxy(sandbox_server.endpoint, rate=0.0, rewrite=dates) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
        with caplog.at_level("WARNING", logger="bridge.sources"):
            pick = find_source(
                AwsClients().ec2("us-east-1"), "us-east-1", source, definition="base"
            )
    warned = [r.getMessage() for r in caplog.records if "same second" in r.getMessage()]
    if tie:
        assert pick.ami_id == max(made)
        (message,) = warned
        assert all(ami in message for ami in made) and "Narrow the filter" in message
    else:
        assert pick.ami_id in made and warned == []


def test_a_var_files_undeclared_source_ami_is_what_packer_builds_on(sandbox_env, repo, packer):
    """Packer uses a var file's value for a variable a JSON template does not declare: a var
    file that pins `source_ami` makes the filter only a check, and the build runs on the
    pinned image, not the filter's newest match."""
    templated_json(repo)
    rewrite_template(repo, "base/base.json", lambda t: t["variables"].pop("source_ami_id"))
    repo.write("base/pin.json", json.dumps({"source_ami_id": BASE_IMAGE}))
    data = repo.catalog()
    data["definitions"]["base"]["var_files"] = ["base/pin.json"]
    repo.set_catalog(data)
    repo.commit("a var file pins the source image")
    newer = publish_upstream(FOCAL + "20261127")
    code, built = resolve(repo, sandbox_env, "--on-missing", "build")
    assert code == 0, built
    assert launched_from(built["base"]) == BASE_IMAGE != newer
    assert chosen_filters(repo, "base") == []  # the image is fixed: no filter chooses it


@pytest.mark.parametrize(
    ("owners", "expected"),
    [(CANONICAL, (CANONICAL,)), (f"{CANONICAL},self", (CANONICAL, "self"))],
)
def test_a_templated_string_owners_is_decoded_into_a_list_as_packer_does(repo, owners, expected):
    """`"owners": "{{user `x`}}"`: Packer decodes a string where it takes a list, split at
    commas."""
    templated_json(repo)

    def change(template):
        template["variables"]["filter_owners"] = owners
        template["builders"][0]["source_ami_filter"]["owners"] = "{{user `filter_owners`}}"

    rewrite_template(repo, "base/base.json", change)
    repo.commit("owners as a templated string")
    (found,) = chosen_filters(repo, "base")
    assert found.owners == expected
