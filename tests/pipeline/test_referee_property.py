"""Property: for templates made of the read kinds the bridge knows, a build is refused before it
starts, or built with every read Packer was seen to make inside the identity, or, only where a
read is one no static reading can see (a shell command's file), refused by the referee.

Each example is a new repository whose base template combines scripts (`script`, `scripts`),
a provisioner override, a var file, a missing script, and shell-local commands and scripts
that read other repository files (listed in the catalog's `inputs`, or not); the real Packer
builds it under strace against the sandbox.
"""

from __future__ import annotations

import itertools
import json
import os
from dataclasses import dataclass

from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from testing import EXAMPLE_REPO
from testing.bridge import external, run_bridge
from testing.git import make_repo
from testing.sandbox import BUCKET, aws_client, own_images, tags_of

_SALT = itertools.count()

SCRIPTS = ("base/tasks/one.sh", "shared/lib.sh", "base/tasks/reader.sh")


@dataclass(frozen=True)
class Case:
    script: str | None  # a provisioner's `script`
    scripts: tuple[str, ...]  # a provisioner's `scripts`
    override: str | None  # an amazon-ebs override's `script`
    var_file: bool  # a catalog var file whose variable an inline command echoes
    missing: bool  # a `script` the repository does not have
    inline_reads: bool  # an inline `cat shared/data.txt`
    listed: bool  # shared/data.txt in the catalog's `inputs`

    @property
    def opaque_read(self) -> bool:
        """A read of shared/data.txt that only running the build shows."""
        by_script = "base/tasks/reader.sh" in {self.script, self.override, *self.scripts}
        return self.inline_reads or by_script


@st.composite
def cases(draw) -> Case:
    return Case(
        script=draw(st.none() | st.sampled_from(SCRIPTS)),
        scripts=tuple(draw(st.lists(st.sampled_from(SCRIPTS), max_size=2, unique=True))),
        override=draw(st.none() | st.sampled_from(SCRIPTS)),
        var_file=draw(st.booleans()),
        missing=draw(st.integers(0, 5)) == 0,
        inline_reads=draw(st.booleans()),
        listed=draw(st.booleans()),
    )


def template(case: Case, salt: int) -> dict:
    provisioners: list[dict] = [{"type": "shell-local", "inline": [f"echo build {salt}"]}]
    if case.script:
        provisioners.append({"type": "shell-local", "script": case.script})
    if case.scripts:
        provisioners.append({"type": "shell-local", "scripts": list(case.scripts)})
    if case.override:
        provisioners.append(
            {
                "type": "shell-local",
                "script": "base/tasks/one.sh",
                "override": {"amazon-ebs": {"script": case.override}},
            }
        )
    if case.var_file:
        provisioners.append({"type": "shell-local", "inline": ["echo {{user `motd`}}"]})
    if case.missing:
        provisioners.append({"type": "shell-local", "script": "base/tasks/missing.sh"})
    if case.inline_reads:
        provisioners.append({"type": "shell-local", "inline": ["cat shared/data.txt"]})
    variables = {"ami_name": "base", "ami_sha": "", "region": "us-east-1", "ec2_endpoint": ""}
    if case.var_file:
        variables["motd"] = "default"
    # The example base's builder (its upstream filter finds the sandbox's image).
    example = json.loads((EXAMPLE_REPO / "base" / "base.json").read_text())
    return {**example, "variables": variables, "provisioners": provisioners}


def check_case(case: Case, env: dict, tmp_path_factory) -> None:
    salt = next(_SALT)
    repo = make_repo(tmp_path_factory.mktemp("property") / "repo")
    repo.write("base/base.json", json.dumps(template(case, salt), indent=2))
    repo.write("base/tasks/one.sh", "#!/bin/sh\necho one\n")
    repo.write("base/tasks/reader.sh", "#!/bin/sh\ncat shared/data.txt\n")
    repo.write("shared/lib.sh", "#!/bin/sh\necho lib\n")
    repo.write("shared/data.txt", f"data {salt}\n")
    for script in (*SCRIPTS, "base/tasks/baseline.sh"):
        (repo.path / script).chmod(0o755)
    repo.write("vars/base.json", json.dumps({"motd": f"from the var file {salt}"}))
    data = repo.catalog()
    base = data["definitions"]["base"]
    if case.var_file:
        base["var_files"] = ["vars/base.json"]
    if case.listed:
        base["inputs"] = ["shared/data.txt"]
    repo.set_catalog(data)
    repo.commit(f"case {salt}")
    before = {i["ImageId"] for i in own_images()}
    proc = external(env, {"definition": "base", "repo": str(repo.path)})
    note(f"{case}: exit {proc.code}: {proc.stderr.strip()[-400:]}")
    made = [i for i in own_images() if i["ImageId"] not in before]
    assert "Traceback" not in proc.stderr
    if case.missing:
        # Refused before the build: Packer never ran.
        assert proc.code == 1 and made == [], proc.stderr
        assert "base/tasks/missing.sh" in proc.stderr
        return
    if case.opaque_read and not case.listed:
        assert proc.code == 1, proc.stdout
        assert "identity does not cover: shared/data.txt, read by `" in proc.stderr
        assert [i for i in made if "SHA" in tags_of(i)] == []
        return
    assert proc.code == 0, proc.stderr
    result = json.loads(proc.stdout)
    key = f"images/base/{result['fingerprint']}.json"
    manifest = json.loads(aws_client("s3").get_object(Bucket=BUCKET, Key=key)["Body"].read())
    observed = manifest["observed"]
    assert observed["traced"] is True
    shown = run_bridge(["inputs", "--repo", str(repo.path), "base", "--json"], env)
    inputs = json.loads(shown.stdout)["inputs"]
    files = {i["path"] for i in inputs if i["kind"] == "blob"}
    trees = tuple(i["path"] + "/" for i in inputs if i["kind"] != "blob")
    for read in observed["reads"]:
        assert read["path"] in files or read["path"].startswith(trees), read
    # What the template names was seen read, and through the identity.
    named = {s for s in (case.script, case.override, *case.scripts) if s}
    assert named <= {r["path"] for r in observed["reads"]}
    if case.var_file:
        assert "vars/base.json" in {r["path"] for r in observed["reads"]}


@settings(
    max_examples=int(os.environ.get("AMI_BRIDGE_REFEREE_CASES", "12")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=cases())
def test_every_build_is_refused_first_or_reads_only_its_identity(
    case, sandbox_env, packer, tmp_path_factory
):
    check_case(case, sandbox_env, tmp_path_factory)
