"""Several images from one Packer directory, var files and typed variables, built by real Packer
on the sandbox: a definition's `only` selects its source, `var_files` reach Packer in order,
catalog variables keep their types, and an `only`-selected definition counts its directory
through what Packer reads from it (README: precise inputs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bridge.packer import parse_line
from bridge.sandbox import BASE_IMAGE
from testing.bridge import run_bridge
from testing.git import GitRepo
from testing.sandbox import aws_client, own_images, tags_of

VARIABLES = """
variable "ami_name" {
  type    = string
  default = "image"
}
variable "region" {
  type    = string
  default = "us-east-1"
}
variable "ec2_endpoint" {
  type    = string
  default = ""
}
variable "kubernetes_version" {
  type    = string
  default = "unset"
}
variable "packages" {
  type    = list(string)
  default = []
}
variable "volume_size" {
  type    = number
  default = 8
}
variable "harden" {
  type    = bool
  default = false
}
variable "labels" {
  type    = map(string)
  default = {}
}
"""


def source(name: str, instance_type: str) -> str:
    return f"""
source "amazon-ebs" "{name}" {{
  region                 = var.region
  source_ami             = "{BASE_IMAGE}"
  instance_type          = "{instance_type}"
  ami_name               = var.ami_name
  communicator           = "none"
  custom_endpoint_ec2    = var.ec2_endpoint
  skip_region_validation = true
  run_tags               = {{ Name = "packer-${{var.ami_name}}" }}
  tags                   = {{ Source = "{name}" }}
}}
"""


# The repository root as the issue has it: one HCL2 directory, two sources, one build block, and
# provisioners that name the source they run for (`only`, `except`).
ROOT_BUILD = """
build {
  sources = ["source.amazon-ebs.al2023", "source.amazon-ebs.al2023arm"]
  provisioner "shell-local" {
    only   = ["amazon-ebs.al2023"]
    inline = ["echo provisioning-for-al2023"]
  }
  provisioner "shell-local" {
    except = ["amazon-ebs.al2023"]
    inline = ["echo provisioning-for-al2023arm"]
  }
  provisioner "shell-local" {
    inline = [
      "echo packages=${join(",", var.packages)} volume=${var.volume_size} harden=${var.harden}",
      "echo 'labels=${join(",", [for k, v in var.labels : "${k}:${v}"])}' kubernetes=${var.kubernetes_version}",
    ]
  }
}
"""


def add_root_images(repo: GitRepo, **extra: dict) -> None:
    """al2023 and al2023arm: two sources of the HCL2 files at the repository root, each
    selected by a definition with `only`; `extra` adds to both definitions' entries."""
    repo.write("variables.pkr.hcl", VARIABLES)
    repo.write("sources.pkr.hcl", source("al2023", "t3.micro") + source("al2023arm", "t4g.micro"))
    repo.write("build.pkr.hcl", ROOT_BUILD)
    repo.write("README.md", "# images\n")
    data = repo.catalog()
    for name in ("al2023", "al2023arm"):
        data["definitions"][name] = {"template": ".", "only": f"amazon-ebs.{name}", **extra}
    repo.set_catalog(data)
    repo.commit("two images from the root's HCL2 files")


def build(repo: GitRepo, env, *names: str) -> dict:
    proc = run_bridge(["build", *names, "--json", "--repo", str(repo.path)], env)
    assert proc.code == 0, proc.stderr
    return json.loads(proc.stdout)


def resolve(repo: GitRepo, env, name: str, on_missing: str = "fail") -> tuple[int, dict]:
    """`ami-bridge resolve NAME`: its exit status and result (or stderr, when there is none)."""
    proc = run_bridge(
        ["resolve", name, "--on-missing", on_missing, "--json", "--repo", str(repo.path)], env
    )
    return proc.code, json.loads(proc.stdout)[name] if proc.stdout else {"stderr": proc.stderr}


def build_output(env, definition: str) -> str:
    """What Packer printed in the newest build of `definition`, one line per message."""
    logs = (Path(env["AMI_BRIDGE_STATE_DIR"]) / "logs").glob(f"{definition}-*.log")
    newest = max(logs, key=lambda p: p.stat().st_mtime_ns)
    lines = map(parse_line, newest.read_text().splitlines())
    return "\n".join(
        ln.data[1].strip() for ln in lines if ln and ln.type == "ui" and len(ln.data) > 1
    )


def launched_types(ami_name: str) -> set[str]:
    """The instance types Packer launched to build the image named `ami_name`."""
    found = aws_client("ec2").describe_instances(
        Filters=[{"Name": "tag:Name", "Values": [f"packer-{ami_name}"]}]
    )
    return {i["InstanceType"] for r in found["Reservations"] for i in r["Instances"]}


def test_each_definition_builds_one_image_from_its_own_source(sandbox_env, repo, packer):
    add_root_images(repo)
    built = build(repo, sandbox_env, "al2023", "al2023arm")
    images = {i["ImageId"]: tags_of(i) for i in own_images()}
    assert len(images) == 2  # one image per definition, not one per source per build
    for name, instance_type, other in (
        ("al2023", "t3.micro", "al2023arm"),
        ("al2023arm", "t4g.micro", "al2023"),
    ):
        tags = images[built[name]["ami_id"]]
        assert tags["ami-chain:definition"] == name
        assert tags["Source"] == name  # the source block Packer built it from
        assert launched_types(f"{name}-{built[name]['fingerprint'][:12]}") == {instance_type}
        output = build_output(sandbox_env, name).splitlines()
        assert f"amazon-ebs.{name}: provisioning-for-{name}" in output
        assert not any(line.endswith(f"provisioning-for-{other}") for line in output)


def test_typed_variables_reach_packer_as_their_types(sandbox_env, repo, packer):
    add_root_images(
        repo,
        variables={
            "packages": ["curl", "jq"],
            "volume_size": 20,
            "harden": True,
            "labels": {"team": "web", "tier": "${not-interpolated}"},
        },
    )
    built = build(repo, sandbox_env, "al2023")
    assert built["al2023"]["built"] == "true"
    output = build_output(sandbox_env, "al2023")
    assert "packages=curl,jq volume=20 harden=true" in output
    assert "labels=team:web,tier:${not-interpolated} kubernetes=unset" in output


# A JSON template run with two var files, as CI ran it: `-var-file variables-default.json
# -var-file variables-1.31.json`, each later one (and the catalog's variables) winning.
NODE = {
    "variables": {
        "ami_name": "node",
        "region": "us-east-1",
        "ec2_endpoint": "",
        "kubernetes_version": "",
        "containerd_version": "",
        "pause_image": "",
    },
    "builders": [
        {
            "type": "amazon-ebs",
            "region": "{{user `region`}}",
            "source_ami": BASE_IMAGE,
            "instance_type": "t3.micro",
            "ami_name": "{{user `ami_name`}}",
            "communicator": "none",
            "custom_endpoint_ec2": "{{user `ec2_endpoint`}}",
            "skip_region_validation": True,
        }
    ],
    "provisioners": [
        {
            "type": "shell-local",
            "inline": [
                "echo kubernetes={{user `kubernetes_version`}} "
                "containerd={{user `containerd_version`}} pause={{user `pause_image`}}"
            ],
        }
    ],
}


@pytest.fixture
def node(repo: GitRepo) -> GitRepo:
    """A `node` definition: a JSON template and two var files at the repository root."""
    repo.write("node/node.json", json.dumps(NODE, indent=2))
    repo.write(
        "variables-default.json",
        json.dumps(
            {"kubernetes_version": "1.30", "containerd_version": "1.7", "pause_image": "3.9"}
        ),
    )
    repo.write(
        "variables-1.31.json", json.dumps({"kubernetes_version": "1.31", "pause_image": "3.10"})
    )
    data = repo.catalog()
    data["definitions"]["node"] = {
        "template": "node/node.json",
        "var_files": ["variables-default.json", "variables-1.31.json"],
        "variables": {"pause_image": "3.10.1"},
    }
    repo.set_catalog(data)
    repo.commit("a node image built with two var files")
    return repo


def test_var_files_reach_packer_in_order_and_a_value_change_rebuilds(sandbox_env, node, packer):
    first = build(node, sandbox_env, "node")["node"]
    assert "kubernetes=1.31 containerd=1.7 pause=3.10.1" in build_output(sandbox_env, "node")
    code, again = resolve(node, sandbox_env, "node")
    assert code == 0 and again["ami_id"] == first["ami_id"], again

    node.write(
        "variables-1.31.json", json.dumps({"kubernetes_version": "1.31.2", "pause_image": "3.10"})
    )
    node.commit("kubernetes 1.31.2")
    code, stale = resolve(node, sandbox_env, "node", on_missing="report")
    assert code == 3 and stale["state"] == "missing"
    assert stale["fingerprint"] != first["fingerprint"]
    rebuilt = build(node, sandbox_env, "node")["node"]
    assert rebuilt["fingerprint"] == stale["fingerprint"]
    assert "kubernetes=1.31.2 containerd=1.7 pause=3.10.1" in build_output(sandbox_env, "node")


# An HCL2 directory whose provisioners run on the machine being built (`shell`): the bridge
# knows everything Packer reads from it, so an `only`-selected definition counts the directory
# through its Packer files, its auto-loaded var files and the scripts its own source runs.
FLEET_BUILD = """
build {
  sources = ["source.amazon-ebs.web", "source.amazon-ebs.db"]
  provisioner "shell" {
    only   = ["amazon-ebs.db"]
    script = "${path.root}/scripts/db.sh"
  }
  provisioner "shell" {
    except  = ["amazon-ebs.web"]
    scripts = ["fleet/scripts/tune.sh"]
  }
  post-processor "manifest" {
    output = "manifest-fleet.json"
  }
}
"""


@pytest.fixture
def fleet(repo: GitRepo) -> GitRepo:
    """`web` and `db`: two sources of the HCL2 directory fleet/, with a README and CHANGELOG,
    scripts only db runs, and an auto-loaded var file."""
    repo.write("fleet/variables.pkr.hcl", VARIABLES)
    repo.write("fleet/sources.pkr.hcl", source("web", "t3.micro") + source("db", "r6i.large"))
    repo.write("fleet/build.pkr.hcl", FLEET_BUILD)
    repo.write("fleet/versions.auto.pkrvars.hcl", 'kubernetes_version = "1.31"\n')
    repo.write("fleet/scripts/db.sh", "#!/bin/sh\necho db\n")
    repo.write("fleet/scripts/tune.sh", "#!/bin/sh\necho tune\n")
    repo.write("fleet/README.md", "# fleet\n")
    repo.write("fleet/CHANGELOG.md", "## 1.0\n")
    data = repo.catalog()
    for name in ("web", "db"):
        data["definitions"][name] = {"template": "fleet", "only": f"amazon-ebs.{name}"}
    repo.set_catalog(data)
    repo.commit("web and db from fleet/")
    return repo


def test_a_readme_change_in_a_shared_directory_rebuilds_nothing(sandbox_env, fleet, packer):
    first = build(fleet, sandbox_env, "web")["web"]
    fleet.write("fleet/README.md", "# fleet\n\nHow to build the images.\n")
    fleet.write("fleet/CHANGELOG.md", "## 1.1\n## 1.0\n")
    fleet.commit("docs")
    code, after = resolve(fleet, sandbox_env, "web")
    assert code == 0, after
    assert after["ami_id"] == first["ami_id"] and after["fingerprint"] == first["fingerprint"]


def test_a_script_only_another_source_runs_rebuilds_nothing(sandbox_env, fleet, packer):
    first = build(fleet, sandbox_env, "web")["web"]
    _, db_before = resolve(fleet, sandbox_env, "db", on_missing="report")
    fleet.write("fleet/scripts/db.sh", "#!/bin/sh\necho db 2\n")
    fleet.commit("db's script")
    code, after = resolve(fleet, sandbox_env, "web")
    assert code == 0 and after["ami_id"] == first["ami_id"], after
    _, db_after = resolve(fleet, sandbox_env, "db", on_missing="report")
    assert db_after["fingerprint"] != db_before["fingerprint"]  # db runs it: a new db image


def test_what_packer_reads_from_the_directory_rebuilds(sandbox_env, fleet, packer):
    """The auto-loaded var file and every Packer file are read for every source."""
    first = build(fleet, sandbox_env, "web")["web"]
    seen = {first["fingerprint"]}
    for rel, text in (
        ("fleet/versions.auto.pkrvars.hcl", 'kubernetes_version = "1.32"\n'),
        ("fleet/build.pkr.hcl", FLEET_BUILD + "\n# a comment\n"),
        ("fleet/locals.pkr.hcl", 'locals {\n  owner = "platform"\n}\n'),
    ):
        fleet.write(rel, text)
        fleet.commit(f"{rel} changes")
        code, after = resolve(fleet, sandbox_env, "web", on_missing="report")
        assert code == 3 and after["fingerprint"] not in seen, rel
        seen.add(after["fingerprint"])


def test_a_template_with_several_builds_and_no_only_is_refused(sandbox_env, fleet, packer):
    data = fleet.catalog()
    data["definitions"]["fleet"] = {"template": "fleet"}
    fleet.set_catalog(data)
    fleet.commit("a definition of the whole directory")
    # Refused by every command that looks at it, before anything is built: the pre-commit
    # check, the status, a dry run and the CI matrix say it as the build does.
    for argv in (
        ["check"],
        ["build", "fleet", "--dry-run"],
        ["matrix", "--all"],
        ["resolve", "fleet", "--on-missing", "report"],
        ["build", "fleet"],
    ):
        proc = run_bridge([*argv, "--repo", str(fleet.path)], sandbox_env)
        assert proc.code == 1, (argv, proc.stdout)
        err = " ".join(proc.stderr.split())
        assert "has 2 builds (amazon-ebs.web, amazon-ebs.db)" in err and "`only`" in err, argv
        assert "Traceback" not in err
    status = run_bridge(["status", "--repo", str(fleet.path)], sandbox_env)
    assert "has 2 builds" in " ".join((status.stdout + status.stderr).split())
    assert own_images() == []
