"""`packer init` for templates that declare required plugins (builder.py, packer.py).

Packer 1.6.6, which the tests run, has no `init` command and refuses a `required_plugins` block,
so these builds run a stand-in `packer` (testing/packer.py) that records its calls, answers
`init` itself and hands `build` and `version` to the real Packer.
"""

from __future__ import annotations

import json
from pathlib import Path

from bridge import model
from testing.bridge import run_bridge
from testing.packer import calls, standin
from testing.sandbox import manifest_keys, own_images, tags_of

PLUGINS = """
packer {
  required_plugins {
    amazon = {
      version = ">= 1.2.0"
      source  = "github.com/hashicorp/amazon"
    }
  }
}
"""

TOOLS = """
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
variable "flavor" {
  type    = string
  default = "plain"
}
source "amazon-ebs" "tools" {
  region                 = "us-east-1"
  source_ami             = var.ami_base
  instance_type          = "t3.micro"
  ami_name               = "tools-${var.flavor}-${var.ami_sha}"
  communicator           = "none"
  custom_endpoint_ec2    = var.ec2_endpoint
  skip_region_validation = true
}
build {
  sources = ["source.amazon-ebs.tools"]
  provisioner "shell-local" {
    inline = ["echo ${var.flavor}"]
  }
}
"""


def add_tools(repo, names, *, plugins: bool, template: str = "tools") -> None:
    """Definitions `names`, children of base, all built from the HCL2 template `template`
    (the directory `tools`, or a file in it); `plugins`: its directory has a plugins.pkr.hcl."""
    repo.write("tools/tools.pkr.hcl", TOOLS)
    if plugins:
        repo.write("tools/plugins.pkr.hcl", PLUGINS)
    data = repo.catalog()
    for name in names:
        data["definitions"][name] = {
            "template": template,
            "parent": "base",
            "variables": {"flavor": name},
        }
    repo.set_catalog(data)
    repo.commit("tools")


def build(env, repo, *names: str):
    return run_bridge(["build", "--json", "--jobs", "2", "--repo", str(repo.path), *names], env)


def test_init_runs_once_per_template_before_its_first_build(sandbox_env, repo, packer, tmp_path):
    add_tools(repo, ["tools-a", "tools-b"], plugins=True)
    fake = standin(tmp_path / "bin", packer, init="install")
    plugins = tmp_path / "plugins"
    env = {**sandbox_env, "AMI_BRIDGE_PACKER": str(fake), "PACKER_PLUGIN_PATH": str(plugins)}
    proc = build(env, repo, "tools-a", "tools-b")
    assert proc.code == 0, proc.stderr
    made = calls(fake)
    inits = [i for i, c in enumerate(made) if c.argv[0] == "init"]
    # Once for the template both definitions build from; never for the JSON template of base.
    assert [made[i].argv for i in inits] == [["init", "tools"]]
    init = made[inits[0]]
    assert init.plugin_path == str(plugins)  # the user's plugin directory, as given
    builds = {i: c for i, c in enumerate(made) if c.argv[0] == "build"}
    assert sorted(c.template for c in builds.values()) == ["base/base.json", "tools", "tools"]
    tools = [i for i, c in builds.items() if c.template == "tools"]
    assert inits[0] < min(tools)
    # In the exported tree the first build of the template runs in, not the working tree.
    assert Path(init.cwd).parent == Path(env["AMI_BRIDGE_STATE_DIR"]) / "trees"
    assert init.cwd in {builds[i].cwd for i in tools}
    results = json.loads(proc.stdout)
    definitions = {tags_of(i)[model.TAG_DEFINITION]: i["ImageId"] for i in own_images()}
    assert definitions == {name: results[name]["ami_id"] for name in ("base", "tools-a", "tools-b")}


def test_a_failed_init_names_the_plugin_and_builds_nothing(sandbox_env, repo, packer, tmp_path):
    add_tools(repo, ["tools"], plugins=True)
    fake = standin(tmp_path / "bin", packer, init="fail")
    proc = build({**sandbox_env, "AMI_BRIDGE_PACKER": str(fake)}, repo, "tools")
    assert proc.code == 1, proc.stderr
    error = proc.stderr.strip().splitlines()[-1]
    assert error.startswith("ami-bridge: error: `packer init tools` failed, so nothing is built")
    assert "amazon (github.com/hashicorp/amazon >= 1.2.0)" in error
    assert 'Failed getting the "github.com/hashicorp/amazon" plugin:' in error
    assert "no such host" in error
    assert "PACKER_PLUGIN_PATH" in error
    # The parent was built; nothing of tools was: no Packer build, image, tag, manifest or lease.
    assert [c.template for c in calls(fake) if c.argv[0] == "build"] == ["base/base.json"]
    assert [tags_of(i).get(model.TAG_DEFINITION) for i in own_images()] == ["base"]
    assert [k.split("/")[1] for k in manifest_keys()] == ["base"]


def test_a_template_without_required_plugins_never_runs_init(sandbox_env, repo, packer, tmp_path):
    # JSON templates (base, snowflake) and an HCL2 file with no `packer` block.
    add_tools(repo, ["tools"], plugins=False, template="tools/tools.pkr.hcl")
    fake = standin(tmp_path / "bin", packer, init="fail")  # an init would fail the build
    proc = build({**sandbox_env, "AMI_BRIDGE_PACKER": str(fake)}, repo, "snowflake", "tools")
    assert proc.code == 0, proc.stderr
    made = calls(fake)
    assert [c.argv for c in made if c.argv[0] == "init"] == []
    assert sorted(c.template for c in made if c.argv[0] == "build") == [
        "base/base.json",
        "snowflake/snowflake.json",
        "tools/tools.pkr.hcl",
    ]
