"""What a template makes Packer read (templates/reads.py): JSON and HCL2 references, and their errors."""

from __future__ import annotations

import json
from pathlib import PurePosixPath

import pytest

from bridge.catalog import load_catalog
from bridge.errors import FingerprintError
from bridge.git import TreeIndex, open_repo
from bridge.packer import Plugin
from bridge.sources import SourcePick
from bridge.templates.files import required_plugins
from testing.fingerprint import fingerprints, rewrite_template


def test_uncommitted_template_is_clear(repo):
    data = repo.catalog()
    data["definitions"]["extra"] = {"template": "extra/extra.json"}
    repo.set_catalog(data)
    repo.write("extra/extra.json", json.dumps({"builders": []}))
    with pytest.raises(FingerprintError, match="extra/extra.json"):
        fingerprints(repo, ["extra"], allow_dirty=False, commit=repo.git("rev-parse", "HEAD"))


def test_provisioner_outside_repo_is_refused(repo):
    template = json.loads(repo.path.joinpath("base/base.json").read_text())
    template["provisioners"].append({"type": "shell-local", "script": "../../etc/passwd"})
    repo.write("base/base.json", json.dumps(template))
    repo.commit("escape")
    with pytest.raises(FingerprintError, match="outside the repository"):
        fingerprints(repo, ["base"])


def test_template_dir_expression_is_resolved(repo):
    template = json.loads(repo.path.joinpath("snowflake/snowflake.json").read_text())
    template["provisioners"].append({"type": "file", "source": "{{template_dir}}/../shared/f.txt"})
    repo.write("shared/f.txt", "one\n")
    repo.write("snowflake/snowflake.json", json.dumps(template))
    repo.commit("file provisioner")
    _, snap = fingerprints(repo)
    assert "shared/f.txt" in {e.path for e in snap.fingerprints["snowflake"].inputs}


# (block, key, value form) -> a file Packer reads: editing it changes the fingerprint.
REFERENCES = [
    ("builders", {"type": "amazon-ebs"}, "user_data_file", "one"),
    ("builders", {"type": "qemu"}, "http_directory", "dir"),
    ("builders", {"type": "qemu"}, "floppy_files", "list"),
    ("provisioners", {"type": "shell"}, "script", "one"),
    ("provisioners", {"type": "powershell"}, "scripts", "list"),
    ("provisioners", {"type": "file", "destination": "/tmp/x"}, "sources", "list"),
    ("provisioners", {"type": "ansible-local"}, "playbook_file", "one"),
    ("provisioners", {"type": "ansible-local", "playbook_file": "x.yml"}, "playbook_dir", "dir"),
    ("provisioners", {"type": "ansible-local", "playbook_file": "x.yml"}, "role_paths", "list"),
    ("provisioners", {"type": "ansible"}, "playbook_file", "one"),
    ("provisioners", {"type": "puppet-masterless"}, "manifest_file", "one"),
    ("provisioners", {"type": "salt-masterless"}, "local_state_tree", "dir"),
    ("provisioners", {"type": "chef-solo"}, "cookbook_paths", "list"),
    ("post-processors", {"type": "shell-local"}, "script", "one"),
]


@pytest.mark.parametrize(
    ("block", "fields", "key", "form"),
    REFERENCES,
    ids=[f"{r[1]['type']}.{r[2]}" for r in REFERENCES],
)
def test_files_a_template_makes_packer_read_are_inputs(repo, block, fields, key, form):
    target = "provisioning/thing" + ("/main.yml" if form == "dir" else ".txt")
    repo.write(target, "v1\n")
    repo.write("x.yml", "- hosts: all\n")  # the playbook some of the blocks name as well
    ref = target.rsplit("/", 1)[0] if form == "dir" else target

    def add(template: dict) -> None:
        entry = {**fields, key: [ref] if form == "list" else ref}
        if block == "builders":  # replaces the template's: one definition, one build
            template["builders"] = [entry]
        else:
            template.setdefault(block, []).append(entry)

    rewrite_template(repo, "base/base.json", add)
    repo.commit("a reference")
    before, snap = fingerprints(repo, ["base"])
    inputs = {e.path for e in snap.fingerprints["base"].inputs}
    # The file itself, or a directory holding it (the remote ansible playbook's directory).
    assert ref in inputs or any(ref.startswith(i + "/") for i in inputs)
    repo.write(target, "v2\n")
    repo.commit("the referenced file changes")
    after, _ = fingerprints(repo, ["base"])
    assert after["base"] != before["base"]


def test_a_provisioner_type_whose_files_are_unknown_gets_a_warning(repo, caplog):
    rewrite_template(
        repo,
        "base/base.json",
        lambda t: t["provisioners"].append({"type": "custom-thing", "config": "x.cfg"}),
    )
    repo.commit("a custom provisioner")
    with caplog.at_level("WARNING", logger="bridge"):
        fingerprints(repo, ["base"])
    assert "type 'custom-thing'" in caplog.text and "`inputs`" in caplog.text


HCL2_TEMPLATE = """
variable "playbook" {
  type    = string
  default = "x.yml"
}
source "amazon-ebs" "tools" {
  user_data_file = "files/user-data.sh"
  region         = "us-east-1"
}
build {
  sources = ["source.amazon-ebs.tools"]
  provisioner "ansible-local" {
    playbook_file = "${path.root}/../play/site.yml"
    role_paths    = ["play/roles"]
  }
  provisioner "shell-local" {
    inline = ["echo ${var.playbook}"]
  }
  provisioner "ansible-local" {
    playbook_file = var.playbook
  }
  post-processor "shell-local" {
    script = "post/notify.sh"
  }
}
"""


@pytest.mark.parametrize("layout", ["file", "directory"])
def test_files_an_hcl2_template_makes_packer_read_are_inputs(repo, caplog, layout):
    for rel in ("files/user-data.sh", "play/site.yml", "play/roles/web/tasks.yml",
                "post/notify.sh"):  # fmt: skip
        repo.write(rel, "v1\n")
    add_tools(repo, HCL2_TEMPLATE, "tools/tools.pkr.hcl" if layout == "file" else "tools")
    with caplog.at_level("WARNING", logger="bridge"):
        before, snap = fingerprints(repo, ["tools"])
    inputs = {e.path for e in snap.fingerprints["tools"].inputs}
    assert {"files/user-data.sh", "play/site.yml", "play/roles", "post/notify.sh"} <= inputs
    assert "var.playbook" in caplog.text and "`inputs`" in caplog.text
    for rel in (
        "files/user-data.sh",
        "play/site.yml",
        "play/roles/web/tasks.yml",
        "post/notify.sh",
    ):
        repo.write(rel, f"changed {rel}\n")
        repo.commit(f"{rel} changes")
        after, _ = fingerprints(repo, ["tools"])
        assert after["tools"] != before["tools"], rel
        before = after


def add_tools(repo, hcl: str, template: str = "tools/tools.pkr.hcl") -> None:
    """A `tools` definition from one HCL2 file, committed."""
    repo.write("tools/tools.pkr.hcl", hcl)
    data = repo.catalog()
    data["definitions"]["tools"] = {"template": template}
    repo.set_catalog(data)
    repo.commit("a tools definition")


def test_an_hcl2_file_that_does_not_parse_is_named(repo):
    add_tools(repo, 'build {\n  provisioner "shell" {\n')
    with pytest.raises(
        FingerprintError,
        match="HCL2 file tools/tools.pkr.hcl of definition 'tools' cannot be parsed",
    ):
        fingerprints(repo, ["tools"])


def test_hcl2_attributes_named_like_blocks_are_ignored(repo):
    add_tools(repo, 'source = "x"\nbuild = "y"\n')
    fps, _ = fingerprints(repo, ["tools"])
    assert len(fps["tools"]) == 40


PLUGINS = """
packer {
  required_version = ">= 1.7.0"
  required_plugins {
    amazon = {
      version = ">= 1.2.0"
      source  = "github.com/hashicorp/amazon"
    }
    ansible = { source = "github.com/hashicorp/ansible" }
  }
}
"""


@pytest.mark.parametrize("layout", ["file", "directory"])
def test_required_plugins_are_read_from_the_packer_block(repo, layout):
    if layout == "file":
        add_tools(repo, PLUGINS + 'source "null" "x" {\n  communicator = "none"\n}\n')
    else:
        repo.write("tools/plugins.pkr.hcl", PLUGINS)
        add_tools(repo, 'source "null" "x" {\n  communicator = "none"\n}\n', "tools")
    assert plugins_of(repo, "tools") == {
        "amazon": Plugin("github.com/hashicorp/amazon", ">= 1.2.0"),
        "ansible": Plugin("github.com/hashicorp/ansible", ""),
    }


def test_templates_without_required_plugins_have_none(repo):
    add_tools(repo, 'packer {\n  required_version = ">= 1.7.0"\n}\nsource "null" "x" {}\n')
    assert plugins_of(repo, "tools") == {}
    assert plugins_of(repo, "base") == {}  # JSON


def plugins_of(repo, name: str) -> dict[str, Plugin]:
    commit = repo.git("rev-parse", "HEAD")
    tree = TreeIndex(open_repo(repo.path), repo.git("rev-parse", "HEAD^{tree}"))
    return required_plugins(tree, load_catalog(repo.path).get(name), commit)


# -- `only`: the build a definition selects, and precise inputs (README) ---------------------

FLEET_SOURCES = """
source "amazon-ebs" "web" {
  region         = "us-east-1"
  user_data_file = "${path.root}/web/user-data.sh"
}
source "amazon-ebs" "db" {
  region         = "us-east-1"
  user_data_file = "fleet/db/user-data.sh"
}
"""
FLEET_BUILD = """
build {
  sources = ["source.amazon-ebs.web", "source.amazon-ebs.db"]
  provisioner "shell" {
    only   = ["amazon-ebs.web"]
    script = "${path.root}/scripts/web.sh"
  }
  provisioner "shell" {
    except  = ["amazon-ebs.web"]
    scripts = ["fleet/scripts/db.sh"]
  }
  provisioner "file" {
    source      = "shared/motd"
    destination = "/etc/motd"
  }
  post-processor "manifest" {
    only   = ["amazon-ebs.db"]
    output = "manifest.json"
  }
}
"""
FLEET_FILES = {
    "fleet/sources.pkr.hcl": FLEET_SOURCES,
    "fleet/build.pkr.hcl": FLEET_BUILD,
    "fleet/defaults.auto.pkrvars.hcl": 'x = "1"\n',
    "fleet/extra.pkrvars.hcl": 'x = "2"\n',
    "fleet/web/user-data.sh": "web\n",
    "fleet/db/user-data.sh": "db\n",
    "fleet/scripts/web.sh": "web\n",
    "fleet/scripts/db.sh": "db\n",
    "fleet/README.md": "# fleet\n",
    "shared/motd": "hello\n",
}


def add_fleet(repo, files=None, **entry) -> None:
    """`web`, selecting amazon-ebs.web of the HCL2 directory fleet/, committed."""
    for rel, text in {**FLEET_FILES, **(files or {})}.items():
        repo.write(rel, text)
    data = repo.catalog()
    data["definitions"]["web"] = {"template": "fleet", "only": "amazon-ebs.web", **entry}
    repo.set_catalog(data)
    repo.commit("web from fleet/")


def web_inputs(repo) -> set[str]:
    _, snap = fingerprints(repo, ["web"])
    return {e.path for e in snap.fingerprints["web"].inputs}


def test_an_only_definition_of_an_hcl2_directory_reads_what_packer_reads(repo):
    add_fleet(repo, var_files=["fleet/extra.pkrvars.hcl"])
    assert web_inputs(repo) == {
        "fleet/build.pkr.hcl",
        "fleet/sources.pkr.hcl",
        "fleet/defaults.auto.pkrvars.hcl",  # auto-loaded, as Packer loads it
        "fleet/extra.pkrvars.hcl",  # a var file
        "fleet/web/user-data.sh",  # its source's
        "fleet/scripts/web.sh",  # only = [its source]
        "shared/motd",  # every source's
    }


def test_the_builds_of_a_template_and_the_one_only_selects(repo):
    add_fleet(repo)
    _, snap = fingerprints(repo, ["web"])
    assert snap.fingerprints["web"].builds == ("amazon-ebs.web",)
    data = repo.catalog()
    data["definitions"]["all"] = {"template": "fleet"}
    repo.set_catalog(data)
    repo.commit("the whole directory")
    # Without `only`, a template of several builds would make several images: refused before
    # anything is built, so `check` and `status` say it.
    with pytest.raises(FingerprintError) as refused:
        fingerprints(repo, ["all"])
    assert "has 2 builds (amazon-ebs.web, amazon-ebs.db)" in str(refused.value)
    assert "Choose its build with `only`" in str(refused.value)


# What keeps the whole directory an input: Packer may read from it what the bridge cannot name.
WHOLE_DIRECTORY = {
    "a shell-local provisioner (it runs where the repository is)": {
        "fleet/build.pkr.hcl": FLEET_BUILD.replace("  post-processor", '  provisioner "shell-local" '
                                                   '{\n    inline = ["cat fleet/notes.txt"]\n  }\n  post-processor')
    },
    "a provisioner type the bridge does not know": {
        "fleet/build.pkr.hcl": FLEET_BUILD.replace('provisioner "file"', 'provisioner "custom"')
    },
    "a reference through a variable": {
        "fleet/build.pkr.hcl": FLEET_BUILD.replace('"${path.root}/scripts/web.sh"', "var.script")
    },
    "a file function": {
        "fleet/sources.pkr.hcl": FLEET_SOURCES.replace(
            'region         = "us-east-1"', 'user_data = file("cloud-init.yml")', 1
        )
    },
    "a post-processor type other than manifest": {
        "fleet/build.pkr.hcl": FLEET_BUILD.replace('post-processor "manifest" {\n    only   = '
                                                   '["amazon-ebs.db"]', 'post-processor "compress" {\n    only   = ["amazon-ebs.web"]')
    },
    "HCL2 in JSON, which the bridge does not read": {"fleet/extra.pkr.json": "{}"},
    "a builder type with file keys of its own": {
        "fleet/sources.pkr.hcl": FLEET_SOURCES.replace('"amazon-ebs" "web"', '"amazon-instance" "web"'),
        "fleet/build.pkr.hcl": FLEET_BUILD.replace("amazon-ebs.web", "amazon-instance.web"),
    },
}  # fmt: skip


@pytest.mark.parametrize("files", WHOLE_DIRECTORY.values(), ids=WHOLE_DIRECTORY.keys())
def test_what_the_bridge_cannot_name_keeps_the_whole_directory(repo, files):
    only = "amazon-instance.web" if "amazon-instance" in str(files) else "amazon-ebs.web"
    add_fleet(repo, files, only=only)
    assert "fleet" in web_inputs(repo)


def test_a_step_for_another_source_keeps_nothing_of_its_own(repo):
    """A shell-local step that only db runs does not make web read the whole directory."""
    add_fleet(repo, {
        "fleet/more.pkr.hcl": 'build {\n  sources = ["source.amazon-ebs.db"]\n'
        '  provisioner "shell-local" {\n    inline = ["cat fleet/notes.txt"]\n  }\n}\n'
    })  # fmt: skip
    assert "fleet" not in web_inputs(repo)


@pytest.mark.parametrize(
    ("template", "only"), [("solo/solo.pkr.hcl", "amazon-ebs.web"), ("app/app.json", "web")]
)
def test_only_in_a_file_template_keeps_its_directory(repo, template, only):
    """Precise inputs are for HCL2 directories: a file template's directory stays an input."""
    repo.write("app/app.json", json.dumps({"builders": [{"type": "null", "name": "web"}]}))
    repo.write("solo/solo.pkr.hcl", FLEET_SOURCES + FLEET_BUILD)
    add_fleet(repo, template=template, only=only)
    assert str(PurePosixPath(template).parent) in web_inputs(repo)


def test_only_naming_no_build_lists_the_builds(repo):
    add_fleet(repo, only="web")
    with pytest.raises(FingerprintError) as err:
        fingerprints(repo, ["web"])
    assert "'web', names no build" in str(err.value)
    assert "its builds: amazon-ebs.db, amazon-ebs.web" in str(err.value)


NAMED_BUILDS = """
build {
  name    = "blue"
  sources = ["source.amazon-ebs.web"]
}
build {
  sources = ["source.amazon-ebs.web"]
  provisioner "shell" {
    script = "shared/plain.sh"
  }
}
build {
  source "source.amazon-ebs.web" {
    name = "green"
  }
  provisioner "shell" {
    only   = ["amazon-ebs.green"]
    script = "shared/green.sh"
  }
}
"""


@pytest.mark.parametrize(
    ("only", "reads"),
    [("blue.amazon-ebs.web", set()), ("amazon-ebs.web", {"shared/plain.sh"}),
     ("amazon-ebs.green", {"shared/green.sh"})],
)  # fmt: skip
def test_builds_are_named_as_packer_names_them(repo, only, reads):
    files = {
        "fleet/build.pkr.hcl": NAMED_BUILDS,
        "shared/plain.sh": "1\n",
        "shared/green.sh": "2\n",
    }
    add_fleet(repo, files, only=only)
    assert {p for p in web_inputs(repo) if p.startswith("shared/") and p.endswith(".sh")} == reads


def test_the_same_source_in_two_build_blocks_says_to_name_them(repo):
    twice = FLEET_BUILD + '\nbuild {\n  sources = ["source.amazon-ebs.web"]\n}\n'
    add_fleet(repo, {"fleet/build.pkr.hcl": twice})
    with pytest.raises(FingerprintError, match="names 2 builds .* Name those build blocks"):
        fingerprints(repo, ["web"])


def test_a_json_builders_steps_follow_its_only(repo):
    """In a JSON template, `only` names a builder by its name; a step for another builder
    reads nothing for it."""
    repo.write("shared/web.sh", "web\n")
    repo.write("shared/db.sh", "db\n")
    repo.write("app/app.json", json.dumps({
        "builders": [{"type": "null", "name": "web"}, {"type": "null", "name": "db"}],
        "provisioners": [
            {"type": "shell-local", "only": ["web"], "script": "shared/web.sh"},
            {"type": "shell-local", "except": ["web"], "script": "shared/db.sh"},
        ],
    }))  # fmt: skip
    data = repo.catalog()
    data["definitions"]["web"] = {"template": "app/app.json", "only": "web"}
    repo.set_catalog(data)
    repo.commit("two builders")
    assert web_inputs(repo) == {"app", "shared/web.sh"}


def test_a_var_file_value_is_a_layer_of_the_filter_evaluation(repo):
    """A JSON filter written through `{{user}}` takes the value the catalog's var file gives
    (over the template default), and a later var file wins over an earlier one."""

    def change(template):
        template["variables"]["os"] = "focal"
        filters = template["builders"][0]["source_ami_filter"]["filters"]
        filters["name"] = "ubuntu/images/{{user `os`}}-*"

    rewrite_template(repo, "base/base.json", change)
    repo.write("base/vars-default.json", json.dumps({"os": "jammy"}))
    repo.write("base/vars-1.31.json", json.dumps({"os": "noble"}))
    data = repo.catalog()
    data["definitions"]["base"]["track_source"] = True
    data["definitions"]["base"]["var_files"] = ["base/vars-default.json", "base/vars-1.31.json"]
    repo.set_catalog(data)
    repo.commit("var files")
    chosen: list[str] = []

    def pick(d, filters):
        chosen.extend(dict(f.filters)["name"] for f in filters)
        return [SourcePick(f, "ami-0123456789abcdef0", "", "") for f in filters]

    fingerprints(repo, ["base"], pick_sources=pick)
    assert chosen == ["ubuntu/images/noble-*"]


def test_the_variables_a_template_declares_are_read_from_the_commit(repo):
    """A JSON template's `variables`; an HCL2 directory's `variable` blocks (labels quoted or
    not, in every file) and `variables` blocks, and its `*.pkr.json` files' `variable` objects.
    The build passes only these (-var for another is an error in Packer), read from the tree it
    builds."""
    data = repo.catalog()
    data["definitions"]["app"] = {"template": "app"}
    data["definitions"]["one"] = {"template": "app/a.pkr.hcl"}
    repo.set_catalog(data)
    repo.write("app/a.pkr.hcl", 'variable ami_sha {\n  type = string\n}\nvariable "x" {}\n')
    repo.write("app/b.pkr.hcl", 'variables {\n  region = "us-east-1"\n}\nsource "null" "y" {}\n')
    repo.write("app/vars.pkr.json", json.dumps({"variable": {"flavor": {}}}))
    repo.commit("app")
    _, snap = fingerprints(repo, ["base", "app", "one"])
    assert snap.fingerprints["base"].variables == set(
        json.loads(repo.path.joinpath("base/base.json").read_text())["variables"]
    )
    assert snap.fingerprints["app"].variables == {"ami_sha", "x", "region", "flavor"}
    assert snap.fingerprints["one"].variables == {"ami_sha", "x"}
    # With allow_dirty the working tree is fingerprinted and built: its declarations count.
    repo.write("app/a.pkr.hcl", 'variable "uncommitted" {}\n')
    _, snap = fingerprints(repo, ["app"], allow_dirty=True)
    assert snap.fingerprints["app"].variables == {"uncommitted", "region", "flavor"}
