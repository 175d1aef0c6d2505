"""The upstream image is part of a root's identity: source filters are resolved by the bridge,
fingerprinted, and pinned for Packer (sources.py, fingerprint.py, build.py)."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import boto3
import pytest

from bridge.errors import BuildError, FingerprintError
from bridge.sandbox import BASE_IMAGE, access_key
from bridge.sources import SourceFilter, SourcePick, pin
from testing.bridge import run_bridge
from testing.sandbox import builds_per_definition, tags_of

CANONICAL = "099720109477"
FOCAL = "ubuntu/images/hvm-ssd/ubuntu-focal-20.04-amd64-server-"


def publish_upstream(name: str, region: str = "us-east-1") -> str:
    """A new public image in the upstream publisher's account (as Canonical releases one)."""
    ec2 = boto3.client(
        "ec2",
        region_name=region,
        aws_access_key_id=access_key(CANONICAL),
        aws_secret_access_key="sandbox",
    )
    instance = ec2.run_instances(ImageId=BASE_IMAGE, MinCount=1, MaxCount=1)["Instances"][0]
    ami: str = ec2.create_image(InstanceId=instance["InstanceId"], Name=name)["ImageId"]
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
    ec2 = boto3.client("ec2", region_name="us-east-1")
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
        boto3.client("ec2").describe_images(ImageIds=[built["base"]["ami_id"]])["Images"][0]
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


def test_a_filter_with_a_variable_is_refused_as_unknowable(sandbox_env, tracking):
    template = tracking.path / "base" / "base.json"
    data = json.loads(template.read_text())
    data["builders"][0]["source_ami_filter"]["filters"]["name"] = "{{user `image_name`}}"
    tracking.write("base/base.json", json.dumps(data))
    tracking.commit("a filter with a variable")
    code, out = resolve(tracking, sandbox_env, "--on-missing", "build")
    assert code == 1
    assert "not literal" in out["stderr"] and "track_source: false" in out["stderr"]


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
