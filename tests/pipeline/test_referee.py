"""Packer is the referee (observe.py, pipeline/referee.py): every build runs under strace, and a
repository file it read that the identity does not cover fails it, with nothing published."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bridge import model
from testing.bridge import external, run_bridge
from testing.sandbox import BUCKET, aws_client, manifest_keys, own_images, tags_of
from tests.pipeline.test_resolve import HCL_TEMPLATE

READS_SHARED = "#!/bin/sh\necho baseline\ncat shared/motd.txt\n"


@pytest.fixture
def strace() -> None:
    """The tests of observation need strace (`make setup` installs it)."""
    from shutil import which

    assert which("strace"), "strace is not on PATH: install it (apt-get install strace; make setup)"


def resolve(env, repo, definition="base", **extra):
    return external(env, {"definition": definition, "repo": str(repo.path), **extra})


def manifest(key_part: str) -> dict:
    (key,) = [
        k for k in manifest_keys() if key_part in k and k.endswith(".json") and "intoto" not in k
    ]
    body = aws_client("s3").get_object(Bucket=BUCKET, Key=key)["Body"].read()
    return json.loads(body)


def test_a_script_that_reads_a_file_outside_the_identity_fails_the_build(
    sandbox_env, repo, packer, strace
):
    repo.write("shared/motd.txt", "welcome\n")
    repo.write("base/tasks/baseline.sh", READS_SHARED)
    repo.commit("baseline reads a file the identity does not name")
    proc = resolve(sandbox_env, repo)
    assert proc.code == 1, proc.stdout
    assert "shared/motd.txt" in proc.stderr and "`cat shared/motd.txt`" in proc.stderr
    assert "`inputs`" in proc.stderr and "deregistered" in proc.stderr
    assert "Traceback" not in proc.stderr
    # Nothing resolvable: no image left, no manifest.
    assert [i for i in own_images() if i["State"] != "deregistered"] == []
    assert manifest_keys() == []


def test_listing_the_read_in_inputs_builds_and_records_what_was_read(
    sandbox_env, repo, packer, strace
):
    repo.write("shared/motd.txt", "welcome\n")
    repo.write("shared/unused.txt", "nobody reads me\n")
    repo.write("base/tasks/baseline.sh", READS_SHARED)
    data = repo.catalog()
    data["definitions"]["base"]["inputs"] = ["shared/motd.txt", "shared/unused.txt"]
    repo.set_catalog(data)
    repo.commit("the read is an input")
    proc = resolve(sandbox_env, repo)
    assert proc.code == 0, proc.stderr
    observed = manifest("base/")["observed"]
    assert observed["traced"] is True
    reads = {r["path"]: r["blob"] for r in observed["reads"]}
    blob = repo.git("rev-parse", "HEAD:shared/motd.txt").strip()
    assert reads["shared/motd.txt"] == blob
    assert {"base/base.json", "base/tasks/baseline.sh"} <= set(reads)
    assert "shared/unused.txt" not in reads
    # `inputs` marks each input read or never read by that build.
    shown = run_bridge(["inputs", "--repo", str(repo.path), "base", "--json"], sandbox_env)
    assert shown.code == 0, shown.stderr
    marked = {i["path"]: i for i in json.loads(shown.stdout)["inputs"]}
    assert marked["shared/motd.txt"]["read"] == "yes"
    assert marked["shared/unused.txt"]["read"] == "no"
    assert marked["base"]["read"] == "yes"
    assert "base/tasks/baseline.sh" in marked["base"]["read_within"]
    table = run_bridge(["inputs", "--repo", str(repo.path), "base"], sandbox_env).stdout
    assert "1 never read" in table


def test_with_keep_rejected_the_image_is_kept_tagged_rejected_and_never_resolved(
    sandbox_env, repo, packer, strace
):
    repo.write("shared/motd.txt", "welcome\n")
    repo.write("base/tasks/baseline.sh", READS_SHARED)
    repo.set_catalog({**repo.catalog(), "keep_rejected": True})
    repo.commit("keep what is rejected")
    proc = resolve(sandbox_env, repo)
    assert proc.code == 1 and "kept, tagged ami-chain:rejected" in proc.stderr
    (image,) = own_images()
    tags = tags_of(image)
    assert tags[model.TAG_REJECTED].startswith("read outside its identity")
    assert "SHA" not in tags and tags[model.TAG_DEFINITION] == "base"
    again = resolve(sandbox_env, repo, on_missing="report")
    assert json.loads(again.stdout)["ami_id"] == ""


def test_observe_off_builds_without_looking(sandbox_env, repo, packer):
    repo.write("shared/motd.txt", "welcome\n")
    repo.write("base/tasks/baseline.sh", READS_SHARED)
    repo.commit("baseline reads a file the identity does not name")
    proc = resolve({**sandbox_env, "AMI_BRIDGE_OBSERVE": "off"}, repo)
    assert proc.code == 0, proc.stderr
    assert manifest("base/")["observed"] == {"traced": False, "why_not": "observe is off"}


def test_observe_required_without_strace_fails_before_building(sandbox_env, repo, packer, tmp_path):
    # A PATH with Packer and the shell's tools but no strace.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("packer", "sh", "git", "cat", "echo"):
        from shutil import which

        found = which(tool)
        if found:
            os.symlink(found, bin_dir / tool)
    env = {**sandbox_env, "PATH": str(bin_dir), "AMI_BRIDGE_OBSERVE": "required"}
    proc = resolve(env, repo)
    assert proc.code == 1
    assert "observe = required" in proc.stderr and "strace is not on PATH" in proc.stderr
    assert own_images() == [] and manifest_keys() == []


def test_an_unknown_observe_setting_is_refused(sandbox_env, repo):
    proc = resolve({**sandbox_env, "AMI_BRIDGE_OBSERVE": "sometimes"}, repo)
    assert proc.code == 1
    assert (
        "AMI_BRIDGE_OBSERVE is 'sometimes'" in proc.stderr and "required, auto, off" in proc.stderr
    )


def test_a_read_outside_the_repository_is_a_warning_and_recorded(
    sandbox_env, repo, packer, strace, tmp_path
):
    outside = tmp_path / "outside" / "banner.txt"
    outside.parent.mkdir()
    outside.write_text("from the build machine\n")
    repo.write("base/tasks/baseline.sh", f"#!/bin/sh\ncat {outside}\n")
    repo.commit("baseline uploads a file from the build machine")
    proc = resolve(sandbox_env, repo)
    assert proc.code == 0, proc.stderr
    assert f"read {outside}, outside the repository" in proc.stderr
    assert str(outside) in manifest("base/")["observed"]["outside"]


# A Packer whose `file()` takes a relative path from the working directory (the repository
# root), where Packer 1.6.6, and so the static model, takes it from the template's directory.
# It reads each `file("...")` the template names as such a Packer would, then hands the build to
# the real Packer (1.6.6 here, which cannot be made to resolve the other way).
CWD_FILE_PACKER = """\
#!{python}
import os, re, sys
args = sys.argv[1:]
if args[:1] == ["build"]:
    template = args[-1]
    paths = [template] if os.path.isfile(template) else [
        os.path.join(template, n) for n in sorted(os.listdir(template)) if n.endswith(".pkr.hcl")
    ]
    for path in paths:
        for name in re.findall(r'file\\("([^"$]+)"\\)', open(path).read()):
            with open(name) as f:  # relative: from the working directory
                f.read()
os.execv({real!r}, [{real!r}, *args])
"""

# The tools template of the resolve tests, its provisioner echoing a file() it reads.
FILE_TEMPLATE = HCL_TEMPLATE.replace(
    'inline = ["echo tools"]', """inline = ["echo '${file("motd.txt")}'"]"""
)


def test_a_file_path_packer_resolves_differently_from_the_static_model_fails_the_build(
    sandbox_env, repo, packer, strace, tmp_path
):
    import sys

    standin = tmp_path / "packer"
    standin.write_text(CWD_FILE_PACKER.format(python=sys.executable, real=packer))
    standin.chmod(0o755)
    repo.write("tools/tools.pkr.hcl", FILE_TEMPLATE)
    repo.write("tools/motd.txt", "from the template directory\n")
    repo.write("motd.txt", "from the repository root\n")
    data = repo.catalog()
    data["definitions"]["tools"] = {"template": "tools", "parent": "base"}
    repo.set_catalog(data)
    repo.commit("tools reads file(motd.txt)")
    # Packer 1.6.6 reads tools/motd.txt, which the identity has: it builds.
    assert resolve(sandbox_env, repo, "tools").code == 0
    repo.write("tools/tools.pkr.hcl", FILE_TEMPLATE.replace("echo '", "echo 'v2 "))
    repo.commit("tools v2")
    proc = resolve({**sandbox_env, "AMI_BRIDGE_PACKER": str(standin)}, repo, "tools")
    assert proc.code == 1, proc.stdout
    assert "identity does not cover: motd.txt, read by `" in proc.stderr
    head = repo.git("rev-parse", "HEAD").strip()
    assert [i for i in own_images() if tags_of(i).get(model.TAG_COMMIT) == head] == []


PLAYBOOK = """\
- hosts: localhost
  connection: local
  gather_facts: false
  vars:
    motd_source: "{{ playbook_dir }}/../../shared/motd.j2"
  roles:
    - motd
"""
ROLE_TASKS = """\
- name: the message of the day, from a template a variable names
  ansible.builtin.template:
    src: "{{ motd_source }}"
    dest: "{{ lookup('env', 'MOTD_OUT') }}"
"""


def test_an_ansible_role_template_pulled_by_a_variable_fails_the_build(
    sandbox_env, repo, packer, strace, tmp_path
):
    import sys

    playbook = Path(sys.executable).parent / "ansible-playbook"
    assert playbook.exists(), (
        "ansible-playbook is not installed (pip install '.[test]'; make setup)"
    )
    repo.write("base/ansible/site.yml", PLAYBOOK)
    repo.write("base/ansible/roles/motd/tasks/main.yml", ROLE_TASKS)
    repo.write("shared/motd.j2", "welcome to {{ inventory_hostname }}\n")
    repo.write(
        "base/tasks/baseline.sh",
        f"#!/bin/sh\nset -e\nMOTD_OUT={tmp_path}/motd ANSIBLE_LOCAL_TEMP={tmp_path}/ansible "
        f"{playbook} -i localhost, -e ansible_python_interpreter={sys.executable} "
        "base/ansible/site.yml\n",
    )
    repo.commit("baseline runs an Ansible playbook")
    proc = resolve(sandbox_env, repo)
    assert proc.code == 1, proc.stdout
    assert "identity does not cover: shared/motd.j2, read by `" in proc.stderr
    assert [i for i in own_images() if i["State"] != "deregistered"] == []
    assert manifest_keys() == []
    # Named as an input, the same playbook builds, and its template is recorded as read.
    data = repo.catalog()
    data["definitions"]["base"]["inputs"] = ["shared/motd.j2"]
    repo.set_catalog(data)
    repo.commit("the role's template is an input")
    proc = resolve(sandbox_env, repo)
    assert proc.code == 0, proc.stderr
    assert (tmp_path / "motd").read_text() == "welcome to localhost\n"
    # Ansible's own files (its installation, the Python it runs on, its temporary payloads)
    # are its tooling, not content: no warning names them.
    for tooling in ("site-packages", "libpython", "_payload", "ansible-local-"):
        assert tooling not in proc.stderr, proc.stderr
    reads = {r["path"] for r in manifest("base/")["observed"]["reads"]}
    assert {
        "shared/motd.j2",
        "base/ansible/site.yml",
        "base/ansible/roles/motd/tasks/main.yml",
    } <= reads
