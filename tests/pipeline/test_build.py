"""The build step (build.py): Packer variables and one real `packer build`."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from bridge.catalog import Definition, load_catalog
from bridge.errors import BuildError
from bridge.packer import PackerRunner, parse_line
from bridge.pipeline.build import build_image, packer_value, packer_variables
from testing.bridge import run_bridge
from testing.fingerprint import fingerprints
from testing.sandbox import aws_client

FP = "0123456789abcdef" * 2 + "01234567"
SEED_VARIABLES = {"ami_sha", "ami_name", "ami_base", "region", "ec2_endpoint"}


def definition(**variables: str) -> Definition:
    return Definition("app", "app/app.json", "json", "app", (), parent="base", variables=variables)


def test_declared_seed_variables_are_filled_in():
    variables = packer_variables(
        definition(),
        FP,
        declared=SEED_VARIABLES,
        parent_ami="ami-1",
        region="eu-west-1",
        ec2_endpoint="http://127.0.0.1:5000",
    )
    assert variables == {
        "ami_sha": FP,
        "ami_name": f"app-{FP[:12]}",
        "ami_base": "ami-1",
        "region": "eu-west-1",
        "ec2_endpoint": "http://127.0.0.1:5000",
    }


def test_undeclared_variables_are_not_passed():
    # Packer refuses -var for a variable the template does not declare.
    variables = packer_variables(
        definition(), FP, declared={"ami_sha"}, parent_ami="ami-1", region="us-east-1",
        ec2_endpoint="http://x",
    )  # fmt: skip
    assert variables == {"ami_sha": FP}


def test_a_root_gets_no_ami_base_and_no_endpoint_means_none():
    variables = packer_variables(
        definition(docker="27"),
        FP,
        declared=SEED_VARIABLES,
        parent_ami=None,
        region="us-east-1",
        ec2_endpoint=None,
    )
    assert variables["docker"] == "27"
    assert variables["region"] == "us-east-1"  # the bridge's own (catalog.py refuses others)
    # No parent, no ami_base: the template's own default stands.
    assert "ami_base" not in variables
    assert "ec2_endpoint" not in variables


@pytest.fixture
def runner(sandbox_env, packer) -> PackerRunner:
    return PackerRunner(packer, env=sandbox_env)


def test_build_image_runs_packer_and_returns_every_region(repo, runner, sandbox_env, tmp_path):
    catalog = load_catalog(repo.path)
    artifacts = build_image(
        runner,
        repo.path,
        catalog.get("base"),
        FP,
        regions=["us-east-1"],
        parent=None,
        ec2_endpoint=sandbox_env["AWS_ENDPOINT_URL"],
        log_dir=tmp_path / "logs",
        declared=fingerprints(repo, ["base"])[1].fingerprints["base"].variables,
        manifest_dir=None,
    )
    ami = artifacts.amis["us-east-1"]
    image = aws_client("ec2").describe_images(ImageIds=[ami])["Images"][0]
    assert image["Name"].startswith(f"base-{FP[:12]}-")  # the template names images by ami_name
    assert "Tags" not in image or not any(t["Key"] == "SHA" for t in image["Tags"])
    assert artifacts.log_path.parent == tmp_path / "logs"
    assert f"us-east-1:{ami}" in artifacts.log_path.read_text()


def test_build_image_returns_the_regions_packer_built(repo, runner, sandbox_env, tmp_path):
    """The other regions get copies from the resolver (copied, not built)."""
    catalog = load_catalog(repo.path)
    artifacts = build_image(
        runner,
        repo.path,
        catalog.get("base"),
        FP,
        regions=["us-east-1", "eu-west-1"],
        parent=None,
        ec2_endpoint=sandbox_env["AWS_ENDPOINT_URL"],
        log_dir=tmp_path / "logs",
        declared=fingerprints(repo, ["base"])[1].fingerprints["base"].variables,
        manifest_dir=None,
    )
    assert list(artifacts.amis) == ["us-east-1"]


def quiet_template(repo, *commands: str) -> Definition:
    """A template whose Packer output names no AMI (a null builder), running `commands`."""
    (repo.path / "quiet").mkdir(exist_ok=True)
    provisioners = [{"type": "shell-local", "inline": list(commands)}] if commands else []
    Path(repo.path / "quiet" / "quiet.json").write_text(
        json.dumps(
            {"builders": [{"type": "null", "communicator": "none"}], "provisioners": provisioners}
        )
    )
    return Definition("quiet", "quiet/quiet.json", "json", "quiet", ())


MANIFEST = json.dumps({"builds": [{"artifact_id": "us-east-1:ami-0123456789abcdef0"}]})


def test_artifacts_from_the_manifest_this_build_wrote(repo, runner, tmp_path):
    """A seed-style template reports its AMI in manifest-<name>.json (post-processor)."""
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    target = workspace / "manifest-quiet.json"
    quiet = quiet_template(repo, f"printf '%s' '{MANIFEST}' > {target}")
    artifacts = build_image(
        runner, repo.path, quiet, FP, regions=["us-east-1"], parent=None, ec2_endpoint=None,
        log_dir=tmp_path / "logs", declared=(), manifest_dir=workspace,
    )  # fmt: skip
    assert dict(artifacts.amis) == {"us-east-1": "ami-0123456789abcdef0"}


def test_an_earlier_builds_manifest_is_not_this_builds_artifact(repo, runner, tmp_path):
    (repo.path / "manifest-quiet.json").write_text(MANIFEST)
    os.utime(repo.path / "manifest-quiet.json", (1, 1))  # written by an earlier build
    quiet = quiet_template(repo)
    with pytest.raises(BuildError, match="reported no AMI in us-east-1"):
        build_image(
            runner, repo.path, quiet, FP, regions=["us-east-1"], parent=None, ec2_endpoint=None,
            log_dir=tmp_path / "logs", declared=(), manifest_dir=None,
        )  # fmt: skip


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("1.31", "1.31"),  # a string as it is, as before typed variables
        ('["a"]', '["a"]'),
        (20, "20"),
        (20.0, "20"),
        (0.5, "0.5"),
        (True, "true"),
        (False, "false"),
        (["curl", "jq"], '["curl", "jq"]'),
        ({"b": 1, "a": [True]}, '{"a" = [true], "b" = 1}'),
        # HCL's own escapes: no template sequence is interpreted, no JSON-only escape is used.
        (["${var.x}", "%{if}", "$${y}"], '["$${var.x}", "%%{if}", "$$${y}"]'),
        (['a"b\\c', "\n\t\b\x7f", "é"], '["a\\"b\\\\c", "\\n\\t\\u0008\\u007f", "é"]'),
    ],
)
def test_typed_values_are_written_as_packer_takes_them(value, text):
    assert packer_value(value) == text


HCL_ECHO = """
variable "value" {
  type = %s
}
source "null" "echo" {
  communicator = "none"
}
build {
  sources = ["source.null.echo"]
  provisioner "shell-local" {
    inline = ["cat <<'EOF'\\n${jsonencode(var.value)}\\nEOF"]
  }
}
"""


@pytest.mark.parametrize(
    ("hcl_type", "value"),
    [
        ("list(string)", ["${var.x}", "%{if}", 'q"uote', "back\\slash", "tab\there", "é"]),
        ("map(number)", {"b": 2, "a": 0.5}),
        ("bool", True),
        ("number", 1e100),
        ("string", "${not.interpolated}"),
    ],
)
def test_packer_reads_each_typed_value_back(repo, runner, tmp_path, hcl_type, value):
    """Real Packer parses the -var text into the catalog's value (jsonencode prints it)."""
    repo.write("echo/echo.pkr.hcl", HCL_ECHO % hcl_type)
    d = Definition("echo", "echo", "hcl2", "echo", (), variables={"value": value})
    variables = packer_variables(
        d, FP, declared=set(), parent_ami=None, region="us-east-1", ec2_endpoint=None
    )
    log = tmp_path / "echo.log"
    runner.build(d.template, variables, repo.path, log)
    printed = [
        line.data[1].split(": ", 1)[1]
        for line in map(parse_line, log.read_text().splitlines())
        if line and line.type == "ui" and line.data[0] == "message" and ": " in line.data[1]
    ]
    assert json.loads(printed[-1]) == value


def test_a_template_with_several_builds_needs_only(repo, runner, tmp_path):
    """Refused before Packer runs: it would make an image per build under one fingerprint."""
    d = Definition("app", "app", "hcl2", "app", ())
    with pytest.raises(BuildError, match=r"has 2 builds \(null.a, null.b\).*`only`"):
        build_image(
            runner, repo.path, d, FP, regions=["us-east-1"], parent=None, ec2_endpoint=None,
            log_dir=tmp_path / "logs", builds=("null.a", "null.b"), declared=(),
            manifest_dir=None,
        )  # fmt: skip
    assert not (tmp_path / "logs").exists()


def echo_template(repo, *builders: str) -> None:
    """app/app.json: null builders that print their name and three variables."""
    echo = "echo {{build_name}} {{user `first`}} {{user `second`}} {{user `third`}}"
    repo.write("app/app.json", json.dumps({
        "variables": {"first": "", "second": "", "third": ""},
        "builders": [{"type": "null", "name": n, "communicator": "none"} for n in builders],
        "provisioners": [{"type": "shell-local", "inline": [echo]}],
    }))  # fmt: skip


def run(runner, repo, d: Definition, log: Path) -> str:
    variables = packer_variables(
        d, FP, declared=set(), parent_ami=None, region="us-east-1", ec2_endpoint=None
    )
    runner.build(d.template, variables, repo.path, log, only=d.only, var_files=d.var_files)
    return log.read_text()


def test_var_files_reach_packer_in_order_before_the_variables(repo, runner, tmp_path):
    """Each later var file wins, and the catalog's variables over them all."""
    repo.write("vars/a.json", json.dumps({"first": "a", "second": "a", "third": "a"}))
    repo.write("vars/b.json", json.dumps({"second": "b", "third": "b"}))
    echo_template(repo, "x")
    d = Definition(
        "app", "app/app.json", "json", "app", (), variables={"third": "catalog"},
        var_files=("vars/a.json", "vars/b.json"),
    )  # fmt: skip
    assert "x: x a b catalog" in run(runner, repo, d, tmp_path / "app.log")


def test_only_builds_the_builder_it_names(repo, runner, tmp_path):
    echo_template(repo, "x", "y")
    d = Definition("app", "app/app.json", "json", "app", (), only="y")
    text = run(runner, repo, d, tmp_path / "app.log")
    assert "y: y" in text and "x: x" not in text


SECRETS = {
    "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI-K7MDENG-secret-for-the-test",
    "AWS_SESSION_TOKEN": "IQoJb3JpZ2luX2VjE-session-token-for-the-test",
}


def _prints_its_environment(repo, then: str) -> None:
    template = json.loads(repo.path.joinpath("base/base.json").read_text())
    template["provisioners"].append({"type": "shell-local", "inline": [f"env; {then}"]})
    repo.write("base/base.json", json.dumps(template, indent=2))
    repo.commit("a provisioner that prints its environment")


def _leaks(env, proc) -> list[str]:
    """Where a secret value shows: stderr, stdout, the build logs."""
    logs = Path(env["AMI_BRIDGE_STATE_DIR"]).rglob("*.log")
    places = {"stderr": proc.stderr, "stdout": proc.stdout}
    places.update({str(p): p.read_text(errors="replace") for p in logs})
    return [where for where, text in places.items() for s in SECRETS.values() if s in text]


def test_secrets_in_the_environment_are_masked_in_everything_written(sandbox_env, repo, packer):
    env = {**sandbox_env, **SECRETS}
    _prints_its_environment(repo, "true")
    ok = run_bridge(["build", "base", "--verbose", "--repo", str(repo.path)], env)
    assert ok.code == 0, ok.stderr
    assert _leaks(env, ok) == []
    assert "AWS_SESSION_TOKEN=***" in ok.stderr  # printed, and masked
    _prints_its_environment(repo, "echo $AWS_SECRET_ACCESS_KEY >&2; exit 1")
    failed = run_bridge(["build", "base", "--repo", str(repo.path)], env)
    assert failed.code == 1
    assert _leaks(env, failed) == []
    assert "***" in failed.stderr  # the provisioner's error, quoted, masked


def built_twice(repo, env) -> tuple[dict, dict, dict[str, str]]:
    """`build base`, then `build base --force`: both results, and every image's name by AMI."""
    first = run_bridge(["build", "base", "--repo", str(repo.path), "--json"], env)
    assert first.code == 0, first.stderr
    again = run_bridge(["build", "base", "--force", "--repo", str(repo.path), "--json"], env)
    assert again.code == 0, again.stderr
    one, two = json.loads(first.stdout)["base"], json.loads(again.stdout)["base"]
    names = {
        i["ImageId"]: i["Name"]
        for i in aws_client("ec2").describe_images(Owners=["self"])["Images"]
    }
    return one, two, names


def test_a_second_build_of_a_fingerprint_gets_a_name_of_its_own(sandbox_env, repo, packer):
    """Templates often name the image by `ami_name` alone; EC2 refuses a name the account has in
    the region, so a forced rebuild (or one after expiry or revocation) is named apart."""
    template = repo.path / "base" / "base.json"
    template.write_text(
        template.read_text().replace("{{user `ami_name`}}-{{timestamp}}", "{{user `ami_name`}}")
    )
    repo.commit("the image is named by ami_name alone")
    one, two, names = built_twice(repo, sandbox_env)
    assert one["fingerprint"] == two["fingerprint"] and one["ami_id"] != two["ami_id"]
    assert names[one["ami_id"]] == f"base-{one['fingerprint'][:12]}"
    assert names[two["ami_id"]] == f"base-{one['fingerprint'][:12]}-{two['build_id'][:8]}"


def test_a_rebuild_is_named_apart_when_the_template_adds_a_timestamp(sandbox_env, repo, packer):
    """The example names its image `{{user `ami_name`}}-{{timestamp}}`: Packer's timestamp is in
    seconds, so a second build of the fingerprint within the same second as the first would ask
    EC2 for a name it has. A second build carries its build ID whenever it comes."""
    one, two, names = built_twice(repo, sandbox_env)
    prefix = f"base-{one['fingerprint'][:12]}-"
    assert re.fullmatch(rf"{prefix}\d+", names[one["ami_id"]]), names
    assert re.fullmatch(rf"{prefix}{two['build_id'][:8]}-\d+", names[two["ami_id"]]), names
