"""Every read Packer makes is in the identity, or the bridge refuses: one table, one row per kind.

Each row sets a repository up (committed), measures a definition's identity as a person would
without AWS (`ami-bridge check`, then `ami-bridge inputs DEF --json`), changes one file or one
environment variable, and measures again. The row says what must follow: a new fingerprint, the
same fingerprint (Packer does not read what changed), or a refusal whose message names it.
README's "recognised references" table lists the same kinds.
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass

import pytest

from bridge.cli import main
from bridge.templates import CREDENTIALS
from testing.bridge import external
from testing.fingerprint import rewrite_template
from testing.git import GitRepo
from testing.sandbox import aws_client

NEW = "new"
SAME = "same"


@dataclass(frozen=True)
class Refused:
    """The identity is refused, with a message matching `message` (a regular expression)."""

    message: str


Env = MutableMapping[str, str]
Step = Callable[[GitRepo, Env], None]


@dataclass(frozen=True)
class Row:
    """Set up (committed), change (committed when it touches files), and what must follow."""

    setup: Step
    change: Step
    expect: str | Refused
    definition: str = "snowflake"


# ---- steps ---------------------------------------------------------------------------------


def nothing(repo: GitRepo, env: Env) -> None:
    pass


def write(rel: str, text: str = "changed\n") -> Step:
    return lambda repo, env: repo.write(rel, text)


def link(rel: str, target: str) -> Step:
    def step(repo: GitRepo, env: Env) -> None:
        path = repo.path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, path)

    return step


def definition(name: str, **spec: object) -> Step:
    """Add to (or create) definition `name` in the catalog."""

    def step(repo: GitRepo, env: Env) -> None:
        data = repo.catalog()
        data["definitions"].setdefault(name, {}).update(spec)
        repo.set_catalog(data)

    return step


def json_step(rel: str, step: dict[str, object], key: str = "provisioners") -> Step:
    """Append `step` to the JSON template's provisioners (or `key`)."""
    return lambda repo, env: rewrite_template(
        repo, rel, lambda t: t.setdefault(key, []).append(step)
    )


def declare(rel: str, name: str) -> Step:
    """Declare variable `name` in the JSON template at `rel`."""
    return lambda repo, env: rewrite_template(
        repo, rel, lambda t: t.setdefault("variables", {}).update({name: ""})
    )


def setenv(name: str, value: str) -> Step:
    def step(repo: GitRepo, env: Env) -> None:
        env[name] = value

    return step


def steps(*parts: Step) -> Step:
    def step(repo: GitRepo, env: Env) -> None:
        for part in parts:
            part(repo, env)

    return step


TOOLS = """
variable "init" {
  type    = string
  default = "../shared/cloud-init.yml"
}
locals {
  unused = 1
}
source "null" "x" {
  communicator = "none"
}
build {
  sources = ["source.null.x"]
  provisioner "shell-local" {
    inline = ["echo ${local.unused}"]
  }
}
"""


USES_INIT = TOOLS.replace("${local.unused}", "${var.init}")


def tools(extra: str = "", template: str = TOOLS, **spec: object) -> Step:
    """A `tools` root from one HCL2 file; `extra` goes into its `locals` block."""
    text = template.replace("  unused = 1", f"  unused = 1\n  {extra}") if extra else template
    return steps(
        write("shared/cloud-init.yml", "one\n"),
        write("shared/other.yml", "one\n"),
        write("tools/tools.pkr.hcl", text),
        definition("tools", template="tools/tools.pkr.hcl", **spec),
    )


def env_default(rel: str, name: str, variable: str) -> Step:
    """Declare variable `name` in the JSON template at `rel`, its default read from the
    environment variable `variable` (as the seed's `"ami_sha": "{{env `SHA`}}"`)."""
    return lambda repo, env: rewrite_template(
        repo,
        rel,
        lambda t: t.setdefault("variables", {}).update({name: f"{{{{env `{variable}`}}}}"}),
    )


# A vendor's template for two clouds: the Azure source's secret defaults to the environment.
CLOUDS = """
variable "client_secret" {
  type    = string
  default = env("AZURE_CLIENT_SECRET")
}
variable "region" {
  type    = string
  default = "us-east-1"
}
source "null" "aws" {
  communicator = "none"
}
source "null" "azure" {
  communicator = "none"
}
build {
  sources = ["source.null.aws", "source.null.azure"]
  provisioner "shell-local" {
    only   = ["null.aws"]
    inline = ["echo ${var.region}"]
  }
  provisioner "shell-local" {
    only   = ["null.azure"]
    inline = ["echo ${var.client_secret}"]
  }
}
"""
CLOUDS_NO_ENV = CLOUDS.replace('env("AZURE_CLIENT_SECRET")', '""')


def tools_local(extra: str) -> Step:
    """Rewrite the tools template with `extra` in its `locals`."""
    return write("tools/tools.pkr.hcl", TOOLS.replace("  unused = 1", f"  unused = 1\n  {extra}"))


CHILD = """
variable ami_base {
  type = string
}
variable ami_sha {
  type = string
}
source null child {
  communicator = "none"
}
build {
  sources = ["source.null.child"]
}
"""

ONLY = """
source "null" "web" {
  communicator = "none"
}
source "null" "db" {
  communicator = "none"
}
build {
  sources = ["source.null.web", "source.null.db"]
  provisioner "shell" {
    only   = ["null.web"]
    script = "images/web.sh"
  }
  provisioner "shell" {
    only   = ["null.db"]
    script = "images/db.sh"
  }
}
"""

ONLY_SETUP = steps(
    write("images/build.pkr.hcl", ONLY),
    write("images/web.sh", "echo web\n"),
    write("images/db.sh", "echo db\n"),
    definition("web", template="images", only="null.web"),
)

ANSIBLE_FILES = steps(
    write("ansible/site.yml", "one\n"),
    write("ansible/roles/web/tasks/main.yml", "one\n"),
    write("ansible/group_vars/all.yml", "one\n"),
    write("ansible/host_vars/default.yml", "one\n"),
    write("ansible/ansible.cfg", "one\n"),
    write("vars/extra.yml", "one\n"),
)


def ansible(**prov: object) -> Step:
    return steps(ANSIBLE_FILES, json_step("base/base.json", {"type": "ansible", **prov}))


def shell_local(line: str) -> Step:
    return json_step("base/base.json", {"type": "shell-local", "inline": [line]})


def filter_attribute(pattern: str) -> Step:
    return write(".gitattributes", f"{pattern} filter=git-crypt diff=git-crypt\n")


UNLISTED_ENV = r"reads the environment variable FLAVOR.*catalog's `env`"

# ---- the table -----------------------------------------------------------------------------

ROWS = {
    # The template and its directory
    "template": Row(
        nothing,
        lambda r, e: rewrite_template(r, "snowflake/snowflake.json", lambda t: t.update(description="x")),
        NEW,
    ),
    "file in the definition's directory": Row(nothing, write("snowflake/tasks/docker.sh"), NEW),
    "new file in the definition's directory": Row(nothing, write("snowflake/new.txt"), NEW),
    "parent's content": Row(nothing, write("base/tasks/baseline.sh"), NEW),
    # Files a JSON template names
    "provisioner script outside the directory": Row(nothing, write("base/tasks/cleanup.sh"), NEW),
    "{{template_dir}}/.. path": Row(
        steps(
            write("common/files/banner.txt", "banner\n"),
            json_step(
                "snowflake/snowflake.json",
                {"type": "file", "source": "{{template_dir}}/../common/files/banner.txt",
                 "destination": "/etc/banner"},
            ),
        ),
        write("common/files/banner.txt"),
        NEW,
    ),
    "symlink target": Row(
        steps(write("shared/linked.txt", "target\n"), link("snowflake/files/linked.txt", "../../shared/linked.txt")),
        write("shared/linked.txt"),
        NEW,
    ),
    "declared input": Row(
        steps(write("shared/motd", "welcome\n"), definition("snowflake", inputs=["shared/motd"])),
        write("shared/motd"),
        NEW,
    ),
    "json override": Row(
        steps(
            write("shared/real.sh", "one\n"),
            json_step(
                "base/base.json",
                {"type": "shell", "script": "base/tasks/cleanup.sh",
                 "override": {"amazon-ebs": {"script": "shared/real.sh"}}},
            ),
        ),
        write("shared/real.sh"),
        NEW,
        "base",
    ),
    "ansible playbook": Row(ansible(playbook_file="ansible/site.yml"), write("ansible/site.yml"), NEW, "base"),
    "ansible roles beside the playbook": Row(
        ansible(playbook_file="ansible/site.yml"), write("ansible/roles/web/tasks/main.yml"), NEW, "base"
    ),
    "ansible group_vars": Row(
        ansible(playbook_file="ansible/site.yml"), write("ansible/group_vars/all.yml"), NEW, "base"
    ),
    "ansible host_vars": Row(
        ansible(playbook_file="ansible/site.yml"), write("ansible/host_vars/default.yml"), NEW, "base"
    ),
    "ansible.cfg": Row(ansible(playbook_file="ansible/site.yml"), write("ansible/ansible.cfg"), NEW, "base"),
    "ansible --extra-vars @file": Row(
        ansible(playbook_file="ansible/site.yml", extra_arguments=["--extra-vars", "@vars/extra.yml"]),
        write("vars/extra.yml"),
        NEW,
        "base",
    ),
    "ansible -e=@file": Row(
        ansible(playbook_file="ansible/site.yml", extra_arguments=["--extra-vars=@vars/extra.yml"]),
        write("vars/extra.yml"),
        NEW,
        "base",
    ),
    "ansible-local playbook_dir": Row(
        steps(
            ANSIBLE_FILES,
            json_step("base/base.json", {"type": "ansible-local", "playbook_file": "ansible/site.yml",
                                         "playbook_dir": "ansible"}),
        ),
        write("ansible/roles/web/tasks/main.yml"),
        NEW,
        "base",
    ),
    "catalog variable": Row(
        steps(declare("snowflake/snowflake.json", "docker"), definition("snowflake", variables={"docker": "27"})),
        definition("snowflake", variables={"docker": "28"}),
        NEW,
    ),
    # Packer ignores a -var a JSON template does not declare: the value would not be in the image.
    "json catalog variable the template does not declare": Row(
        declare("snowflake/snowflake.json", "docker"),
        definition("snowflake", variables={"dokcer": "27"}),
        Refused("sets `dokcer` in the catalog's `variables`, but its template .* declares no such "
                "variable.*did you mean `docker`"),
    ),
    "hcl2 catalog variable the template does not declare": Row(
        tools(), definition("tools", variables={"flavour": "a"}), Refused("declares no such variable"), "tools"
    ),
    "hcl2 catalog variable in a variables block": Row(
        tools(template=TOOLS + 'variables {\n  flavour = "a"\n}\n'),
        definition("tools", variables={"flavour": "b"}),
        NEW,
        "tools",
    ),
    "json var file": Row(
        steps(write("base/vars.json", '{"os": "focal"}'), definition("base", var_files=["base/vars.json"])),
        write("base/vars.json", '{"os": "jammy"}'),
        NEW,
        "base",
    ),
    # HCL2: files its functions read, wherever they are, paths evaluated as Packer would
    "hcl2 file()": Row(tools('user_data = file("../shared/cloud-init.yml")'), write("shared/cloud-init.yml"), NEW, "tools"),
    "hcl2 templatefile() from path.root": Row(
        tools('user_data = templatefile("${path.root}/../shared/cloud-init.yml", { a = 1 })'),
        write("shared/cloud-init.yml"),
        NEW,
        "tools",
    ),
    "hcl2 file(): a relative path is in the template's directory": Row(
        steps(tools('user_data = file("cloud-init.yml")'), write("cloud-init.yml", "one\n"),
              write("tools/cloud-init.yml", "one\n")),
        write("cloud-init.yml"),
        SAME,
        "tools",
    ),
    "hcl2 file() through a variable": Row(
        tools("user_data = file(var.init)"), write("shared/cloud-init.yml"), NEW, "tools"
    ),
    "hcl2 filebase64()": Row(
        tools('user_data = filebase64("../shared/cloud-init.yml")'), write("shared/cloud-init.yml"), NEW, "tools"
    ),
    "hcl2 fileset()": Row(
        tools('user_data = join(",", fileset("../shared", "*.yml"))'), write("shared/other.yml"), NEW, "tools"
    ),
    "hcl2 file() of a path only the environment knows": Row(
        tools(), tools_local('x = file(env("INIT"))'), Refused(r"`file\(\.\.\.\)` in tools/tools.pkr.hcl reads a path"), "tools"
    ),
    "hcl2 auto var file": Row(
        tools(), write("tools/x.auto.pkrvars.hcl", 'init = "../shared/other.yml"\n'), NEW, "tools"
    ),
    "only: the selected source's script": Row(ONLY_SETUP, write("images/web.sh"), NEW, "web"),
    "only: a script only another source runs": Row(ONLY_SETUP, write("images/db.sh"), SAME, "web"),
    # A child takes its parent's AMI through `ami_base`, however HCL spells it
    "child with bare HCL labels: its parent's content": Row(
        steps(write("child/child.pkr.hcl", CHILD), definition("child", template="child", parent="base")),
        write("base/tasks/baseline.sh"),
        NEW,
        "child",
    ),
    "child whose template cannot take its parent": Row(
        steps(write("child/child.pkr.hcl", CHILD), definition("child", template="child", parent="base")),
        write("child/child.pkr.hcl", CHILD.replace("variable ami_base", "variable other")),
        Refused(r"template child declares no variable `ami_base`"),
        "child",
    ),
    # The environment
    "json {{env}} not listed": Row(nothing, shell_local("echo {{env `FLAVOR`}}"), Refused(UNLISTED_ENV), "base"),
    "json {{env}} listed: its value": Row(
        steps(shell_local("echo {{env `FLAVOR`}}"), definition("base", env=["FLAVOR"]), setenv("FLAVOR", "a")),
        setenv("FLAVOR", "b"),
        NEW,
        "base",
    ),
    "json {{env}} with a computed name": Row(
        nothing, shell_local("echo {{env (user `x`)}}"), Refused("whose name it computes"), "base"
    ),
    "json {{env}} in a catalog variable's value": Row(
        steps(declare("base/base.json", "flavor"), shell_local("echo {{user `flavor`}}")),
        definition("base", variables={"flavor": "{{env `FLAVOR`}}"}),
        Refused(UNLISTED_ENV),
        "base",
    ),
    "json {{env}} in a var file's value": Row(
        steps(
            write("base/vars.json", '{"os": "focal"}'),
            definition("base", var_files=["base/vars.json"]),
            shell_local("echo {{user `os`}}"),
        ),
        write("base/vars.json", '{"os": "{{env `FLAVOR`}}"}'),
        Refused(UNLISTED_ENV),
        "base",
    ),
    # Packer's variable layers: a default is read only when no later layer sets the variable and
    # something the build runs uses it (templates/environment.py)
    "json {{env}} default the bridge overrides (the seed's ami_sha)": Row(
        steps(env_default("base/base.json", "ami_sha", "SHA"), shell_local("echo {{user `ami_sha`}}"),
              setenv("SHA", "a")),
        setenv("SHA", "b"),
        SAME,
        "base",
    ),
    "json {{env}} default the catalog's variables override": Row(
        steps(env_default("base/base.json", "flavor", "FLAVOR"), shell_local("echo {{user `flavor`}}"),
              definition("base", variables={"flavor": "lemon"}), setenv("FLAVOR", "a")),
        setenv("FLAVOR", "b"),
        SAME,
        "base",
    ),
    "json {{env}} default a var file overrides": Row(
        steps(env_default("base/base.json", "flavor", "FLAVOR"), shell_local("echo {{user `flavor`}}"),
              write("base/vars.json", '{"flavor": "lemon"}'), definition("base", var_files=["base/vars.json"]),
              setenv("FLAVOR", "a")),
        setenv("FLAVOR", "b"),
        SAME,
        "base",
    ),
    "json {{env}} in a var file's value the catalog overrides": Row(
        steps(declare("base/base.json", "owner"), shell_local("echo {{user `owner`}}"),
              write("base/vars.json", '{"owner": "{{env `USER`}}"}'),
              definition("base", var_files=["base/vars.json"], variables={"owner": "platform"}),
              setenv("USER", "a")),
        setenv("USER", "b"),
        SAME,
        "base",
    ),
    "json {{env}} default of a variable nothing uses": Row(
        steps(env_default("base/base.json", "flavor", "FLAVOR"), setenv("FLAVOR", "a")),
        setenv("FLAVOR", "b"),
        SAME,
        "base",
    ),
    "json {{env}} default the build uses": Row(
        nothing,
        steps(env_default("base/base.json", "flavor", "FLAVOR"), shell_local("echo {{user `flavor`}}")),
        Refused(r"reads the environment variable FLAVOR \(in variable `flavor`'s value from the defaults"
                r".*set `flavor` in the catalog's `variables`"),
        "base",
    ),
    "json {{env}} default reached through another variable": Row(
        nothing,
        steps(env_default("base/base.json", "flavor", "FLAVOR"), declare("base/base.json", "label"),
              definition("base", variables={"label": "x-{{user `flavor`}}"}), shell_local("echo {{user `label`}}")),
        Refused(UNLISTED_ENV),
        "base",
    ),
    "json {{env}} default in another build's step": Row(
        steps(env_default("base/base.json", "flavor", "FLAVOR"), setenv("FLAVOR", "a"),
              json_step("base/base.json", {"type": "shell-local", "only": ["other"],
                                           "inline": ["echo {{user `flavor`}}"]})),
        setenv("FLAVOR", "b"),
        SAME,
        "base",
    ),
    "hcl2 env() default of an Azure-only variable": Row(
        steps(write("clouds/build.pkr.hcl", CLOUDS), definition("aws", template="clouds", only="null.aws"),
              setenv("AZURE_CLIENT_SECRET", "one-secret")),
        setenv("AZURE_CLIENT_SECRET", "two-secret"),
        SAME,
        "aws",
    ),
    "hcl2 env() default the build uses": Row(
        steps(write("clouds/build.pkr.hcl", CLOUDS_NO_ENV), definition("azure", template="clouds", only="null.azure")),
        write("clouds/build.pkr.hcl", CLOUDS),
        Refused(r"reads the environment variable AZURE_CLIENT_SECRET \(in variable `client_secret`'s default"),
        "azure",
    ),
    "hcl2 env() default a var file overrides": Row(
        steps(write("clouds/build.pkr.hcl", CLOUDS), write("clouds/secret.pkrvars.hcl", 'client_secret = "x"\n'),
              definition("azure", template="clouds", only="null.azure", var_files=["clouds/secret.pkrvars.hcl"]),
              setenv("AZURE_CLIENT_SECRET", "one-secret")),
        setenv("AZURE_CLIENT_SECRET", "two-secret"),
        SAME,
        "azure",
    ),
    "hcl2 env() default reached through a local": Row(
        steps(write("clouds/build.pkr.hcl", CLOUDS), definition("aws", template="clouds", only="null.aws")),
        write("clouds/build.pkr.hcl", CLOUDS.replace("${var.region}", "${local.where}")
              + 'locals {\n  where = "${var.client_secret}-x"\n}\n'),
        Refused("AZURE_CLIENT_SECRET"),
        "aws",
    ),
    "PKR_VAR_ of a variable the build uses": Row(
        tools(template=USES_INIT), setenv("PKR_VAR_init", "../shared/other.yml"),
        Refused(r"reads the environment variable PKR_VAR_init \(as the value of variable `init`\)"), "tools"
    ),
    "PKR_VAR_ listed in env: its value": Row(
        steps(tools(template=USES_INIT, env=["PKR_VAR_init"]), setenv("PKR_VAR_init", "../shared/cloud-init.yml")),
        setenv("PKR_VAR_init", "../shared/other.yml"),
        NEW,
        "tools",
    ),
    "PKR_VAR_ the catalog's variables override": Row(
        tools(template=USES_INIT, variables={"init": "../shared/cloud-init.yml"}),
        setenv("PKR_VAR_init", "../shared/other.yml"),
        SAME,
        "tools",
    ),
    "PKR_VAR_ of a JSON template (Packer reads none)": Row(
        declare("base/base.json", "flavor"), setenv("PKR_VAR_flavor", "lemon"), SAME, "base"
    ),
    **{
        f"credential {name} in a used default": Row(
            steps(env_default("base/base.json", "key", name), shell_local("echo {{user `key`}}"),
                  setenv(name, "AKIAONEONEONE")),
            setenv(name, "AKIATWOTWOTWO"),
            SAME,
            "base",
        )
        for name in sorted(CREDENTIALS)
    },
    "hcl2 env() not listed": Row(
        tools(), tools_local('flavor = env("FLAVOR")'), Refused(UNLISTED_ENV), "tools"
    ),
    "hcl2 env() with a computed name": Row(
        tools(), tools_local("flavor = env(var.init)"), Refused("whose name it computes"), "tools"
    ),
    "hcl2 env() listed: its value": Row(
        steps(tools('flavor = env("FLAVOR")', env=["FLAVOR"]), setenv("FLAVOR", "a")),
        setenv("FLAVOR", "b"),
        NEW,
        "tools",
    ),
    "builder credentials from the environment": Row(
        steps(shell_local("echo {{env `AWS_ACCESS_KEY_ID`}}"), setenv("AWS_ACCESS_KEY_ID", "AKIAONE")),
        setenv("AWS_ACCESS_KEY_ID", "AKIATWO"),
        SAME,
        "base",
    ),
    "PKR_VAR_ of an undeclared variable": Row(tools(), setenv("PKR_VAR_nothing", "x"), SAME, "tools"),
    "an environment variable nothing reads": Row(nothing, setenv("FLAVOR", "b"), SAME),
    # Git checkout filters (the build would get the stored bytes)
    "checkout filter on an input": Row(
        nothing, filter_attribute("base/tasks/*.sh"), Refused(r"base/tasks/cleanup.sh \(filter=git-crypt\)"), "base"
    ),
    "checkout filter on a file no build reads": Row(
        write("docs/secret.txt", "x\n"), filter_attribute("docs/*"), SAME
    ),
    # What Packer does not read
    "unrelated file": Row(nothing, write("README.txt"), SAME),
    "unrelated directory": Row(nothing, write("other/thing.sh"), SAME),
    "catalog tags": Row(nothing, definition("snowflake", tags={"Team": "web"}), SAME),
}  # fmt: skip


def identity(
    repo: GitRepo, name: str, env: Env, capsys: pytest.CaptureFixture[str]
) -> str | Refused:
    """`name`'s fingerprint, or the refusal `check` gives, as a person at a terminal sees them
    (no AWS: the example's roots do not track their source)."""
    before = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        capsys.readouterr()
        checked = main(["check", "--repo", str(repo.path)])
        out = capsys.readouterr()
        if checked != 0:
            assert checked == 1, out.err
            return Refused(" ".join(out.err.split()))
        assert main(["inputs", name, "--json", "--repo", str(repo.path)]) == 0
        return str(json.loads(capsys.readouterr().out)["fingerprint"])
    finally:
        os.environ.clear()
        os.environ.update(before)


@pytest.mark.parametrize("row", ROWS.values(), ids=ROWS.keys())
def test_every_read_packer_makes_is_identity_or_refused(repo, capsys, row):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PKR_VAR_", "AWS_", "FLAVOR"))}
    row.setup(repo, env)
    repo.commit("set up")
    before = identity(repo, row.definition, env, capsys)
    assert isinstance(before, str), f"the setup is refused: {before}"
    row.change(repo, env)
    if repo.git("status", "--porcelain"):
        repo.commit("change")
    after = identity(repo, row.definition, env, capsys)
    if isinstance(row.expect, Refused):
        assert isinstance(after, Refused), "not refused"
        assert re.search(row.expect.message, after.message), after.message
    else:
        assert isinstance(after, str), f"refused: {after}"
        assert (after != before) is (row.expect == NEW)


# ---- built against the sandbox with real Packer ----------------------------------------------
# The wrong-AMI cases: the same commit resolved again after the file Packer reads changed must
# build a new image, from the new bytes (what Packer's build saw is checked, not only the tags).

TOOLS_CHILD = """
variable "ami_sha" {
  type = string
}
variable "ami_base" {
  type = string
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
  user_data              = file("${path.root}/../shared/cloud-init.yml")
  run_tags               = { Name = "packer-tools-${var.ami_sha}" }
}
build {
  sources = ["source.amazon-ebs.tools"]
}
"""


def resolve(env: Env, repo: GitRepo, name: str) -> dict[str, str]:
    proc = external(env, {"definition": name, "repo": str(repo.path)})
    assert proc.code == 0, proc.stderr
    result: dict[str, str] = json.loads(proc.stdout)
    return result


def user_data_of_build(fingerprint: str) -> str:
    """The user data EC2 recorded for the build instance of `fingerprint`."""
    ec2 = aws_client("ec2", "us-east-1")
    found = ec2.describe_instances(
        Filters=[{"Name": "tag:Name", "Values": [f"packer-tools-{fingerprint}"]}]
    )
    (instance,) = [i for r in found["Reservations"] for i in r["Instances"]]
    value = ec2.describe_instance_attribute(InstanceId=instance["InstanceId"], Attribute="userData")
    return base64.b64decode(value["UserData"]["Value"]).decode()


def rebuilt_after(
    env: Env, repo: GitRepo, name: str, rel: str
) -> tuple[dict[str, str], dict[str, str]]:
    """Resolve `name`, change `rel` and commit, resolve again: both results."""
    first = resolve(env, repo, name)
    assert first["built"] == "true"
    repo.write(rel, "two\n")
    repo.commit(f"{rel} changed")
    second = resolve(env, repo, name)
    return first, second


def test_a_file_an_hcl2_function_reads_rebuilds_the_image(sandbox_env, repo, packer):
    repo.write("shared/cloud-init.yml", "one\n")
    repo.write("tools/tools.pkr.hcl", TOOLS_CHILD)
    definition("tools", template="tools", parent="base")(repo, sandbox_env)
    repo.commit("tools reads cloud-init through file()")
    first, second = rebuilt_after(sandbox_env, repo, "tools", "shared/cloud-init.yml")
    assert second["built"] == "true" and second["ami_id"] != first["ami_id"]
    assert user_data_of_build(first["fingerprint"]) == "one\n"
    assert user_data_of_build(second["fingerprint"]) == "two\n"


def test_a_json_override_script_rebuilds_the_image(sandbox_env, repo, packer, tmp_path):
    log = tmp_path / "ran.log"
    script = f'#!/bin/sh\necho "$(sed -n 3p "$0")" >> {log}\n# %s\n'
    repo.write("shared/real.sh", script % "one").chmod(0o755)
    json_step(
        "base/base.json",
        {"type": "shell-local", "script": "base/tasks/cleanup.sh",
         "override": {"amazon-ebs": {"script": "shared/real.sh"}}},
    )(repo, sandbox_env)  # fmt: skip
    repo.commit("an override")
    first = resolve(sandbox_env, repo, "base")
    repo.write("shared/real.sh", script % "two").chmod(0o755)
    repo.commit("the overriding script changed")
    second = resolve(sandbox_env, repo, "base")
    assert second["built"] == "true" and second["ami_id"] != first["ami_id"]
    assert log.read_text().split() == ["#", "one", "#", "two"]


# Packer's remote `ansible` provisioner runs `ansible-playbook` on this machine. Ansible is not
# installed here: a stand-in records the role its playbook would apply (it runs as Ansible does,
# from the playbook in Packer's exported tree, with the roles beside it).
ANSIBLE_PLAYBOOK = """#!/bin/sh
[ "$1" = "--version" ] && { echo "ansible-playbook 2.9.0"; exit 0; }
for last; do :; done
cat "$(dirname "$last")/roles/web/tasks/main.yml" >> {log}
"""


def test_the_roles_beside_an_ansible_playbook_rebuild_the_image(
    sandbox_env, repo, packer, tmp_path
):
    log = tmp_path / "roles.log"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    standin = bin_dir / "ansible-playbook"
    standin.write_text(ANSIBLE_PLAYBOOK.replace("{log}", str(log)))
    standin.chmod(0o755)
    env = {**sandbox_env, "PATH": f"{bin_dir}{os.pathsep}{sandbox_env['PATH']}"}
    ansible(playbook_file="ansible/site.yml")(repo, env)
    repo.commit("an ansible playbook with roles")
    first, second = rebuilt_after(env, repo, "base", "ansible/roles/web/tasks/main.yml")
    assert second["built"] == "true" and second["ami_id"] != first["ami_id"]
    assert log.read_text().split() == ["one", "two"]


# ---- a refusal's advice, followed ------------------------------------------------------------
# Each environment refusal offers two fixes: list the environment variable in the catalog's
# `env`, or set the template variable that reads it in the catalog's `variables`. Both must work.

ADVICE = {
    "json default": (
        steps(env_default("base/base.json", "flavor", "FLAVOR"), shell_local("echo {{user `flavor`}}")),
        "base", "FLAVOR", "flavor",
    ),
    "hcl2 default": (
        steps(write("clouds/build.pkr.hcl", CLOUDS), definition("azure", template="clouds", only="null.azure")),
        "azure", "AZURE_CLIENT_SECRET", "client_secret",
    ),
    "PKR_VAR_": (
        steps(tools(template=USES_INIT), setenv("PKR_VAR_init", "../shared/other.yml")),
        "tools", "PKR_VAR_init", "init",
    ),
}  # fmt: skip


@pytest.mark.parametrize("fix", ["env", "variables"])
@pytest.mark.parametrize("case", ADVICE.values(), ids=ADVICE.keys())
def test_each_refusals_advice_works_when_followed(repo, capsys, case, fix):
    setup, name, read, variable = case
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PKR_VAR_", "AWS_", "FLAVOR"))}
    setup(repo, env)
    repo.commit("a read the catalog does not know")
    refused = identity(repo, name, env, capsys)
    assert isinstance(refused, Refused), "not refused"
    assert "List it in the catalog's `env`" in refused.message, refused.message
    assert f"or set `{variable}` in the catalog's `variables`" in refused.message, refused.message
    if fix == "env":
        definition(name, env=[read])(repo, env)
    else:
        definition(name, variables={variable: "../shared/cloud-init.yml"})(repo, env)
    repo.commit(f"the advice followed: {fix}")
    assert isinstance(identity(repo, name, env, capsys), str)
