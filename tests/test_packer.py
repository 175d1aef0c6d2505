from __future__ import annotations

import json

import pytest

from bridge.errors import BuildError
from bridge.packer import (
    PackerRunner,
    Plugin,
    artifacts,
    manifest_artifacts,
    parse_line,
)
from testing.packer import Call, calls, standin

OUTPUT = """\
1795775700,,ui,say,==> amazon-ebs: Creating AMI base-1 from instance i-1
1795775700,amazon-ebs,artifact-count,1
1795775700,amazon-ebs,artifact,0,builder-id,mitchellh.amazonebs
1795775700,amazon-ebs,artifact,0,id,us-east-1:ami-0123456789abcdef0%!(PACKER_COMMA)eu-west-1:ami-0fedcba9876543210
1795775700,amazon-ebs,artifact,0,string,AMIs were created:\\nus-east-1: ami-0123456789abcdef0\\n
not a machine-readable line
"""


def test_parse_line_unescapes_commas_and_newlines():
    line = parse_line("1,amazon-ebs,artifact,0,string,a%!(PACKER_COMMA)b\\nc")
    assert line is not None
    assert line.target == "amazon-ebs" and line.type == "artifact"
    assert line.data == ("0", "string", "a,b\nc")
    assert parse_line("garbage") is None


def test_artifacts_in_every_region_not_just_us_east_1():
    lines = [ln for ln in map(parse_line, OUTPUT.splitlines()) if ln]
    assert artifacts(lines) == {
        "us-east-1": "ami-0123456789abcdef0",
        "eu-west-1": "ami-0fedcba9876543210",
    }


def test_seed_packer_manifest_is_understood(tmp_path):
    path = tmp_path / "manifest-base.json"
    path.write_text(
        json.dumps(
            {
                "builds": [
                    {"artifact_id": "us-east-1:ami-0aaaaaaaaaaaaaaaa", "packer_run_uuid": "old"},
                    {"artifact_id": "eu-central-1:ami-0bbbbbbbbbbbbbbbb", "packer_run_uuid": "new"},
                ],
                "last_run_uuid": "new",
            }
        )
    )
    assert manifest_artifacts(path) == {"eu-central-1": "ami-0bbbbbbbbbbbbbbbb"}
    path.write_text("")
    with pytest.raises(BuildError, match="cannot be read"):
        manifest_artifacts(path)


def test_version_is_read_once_then_cached(tmp_path, packer):
    import os

    cache = tmp_path / "state" / "packer-version.json"
    assert PackerRunner(env=dict(os.environ), cache=cache).version(tmp_path) == "1.6.6"
    key, value = next(iter(json.loads(cache.read_text()).items()))
    assert value == "1.6.6" and key.startswith(packer)
    cache.write_text(json.dumps({key: "9.9.9"}))  # proves the second runner reads the cache
    assert PackerRunner(env=dict(os.environ), cache=cache).version(tmp_path) == "9.9.9"


def test_missing_packer_is_a_clear_error(tmp_path):
    runner = PackerRunner("packer-that-does-not-exist", env={"PATH": "/nonexistent"})
    with pytest.raises(BuildError, match="not on PATH"):
        runner.version(tmp_path)


def test_build_failure_quotes_packer_errors(tmp_path, packer):
    import os

    (tmp_path / "bad.json").write_text(
        json.dumps(
            {
                "builders": [{"type": "null", "communicator": "none"}],
                "provisioners": [
                    {
                        "type": "shell-local",
                        "inline": [
                            "echo installing",
                            "echo 'E: Unable to locate package docker-ce' >&2",
                            "exit 100",
                        ],
                    }
                ],
            }
        )
    )
    runner = PackerRunner(env=dict(os.environ))
    log = tmp_path / "logs" / "bad.log"
    with pytest.raises(BuildError) as err:
        runner.build("bad.json", {}, tmp_path, log)
    message = str(err.value)
    # The provisioner's own error line, then Packer's verdict, each once; not its stdout.
    assert "null: E: Unable to locate package docker-ce | " in message
    assert message.count("non-zero exit status: 100") == 1
    assert "installing" not in message
    assert str(log) in message
    assert log.read_text().count(",ui,") > 0


AMAZON = {"amazon": Plugin("github.com/hashicorp/amazon", ">= 1.2.0")}


def test_init_runs_packer_init_on_the_template_with_the_users_environment(tmp_path, packer):
    import os

    fake = standin(tmp_path / "bin", packer, init="install")
    (tmp_path / "tree" / "tools").mkdir(parents=True)
    env = {**os.environ, "PACKER_PLUGIN_PATH": str(tmp_path / "plugins")}
    PackerRunner(str(fake), env=env).init("tools", tmp_path / "tree", AMAZON)
    assert calls(fake) == [
        Call(["init", "tools"], str(tmp_path / "tree"), str(tmp_path / "plugins"))
    ]


def test_a_failed_init_names_plugins_and_packers_last_lines(tmp_path, packer):
    import os

    fake = standin(tmp_path / "bin", packer, init="fail")
    (tmp_path / "tools").mkdir()
    with pytest.raises(BuildError) as err:
        PackerRunner(str(fake), env=dict(os.environ)).init("tools", tmp_path, AMAZON)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("`packer init tools` failed")
    assert "amazon (github.com/hashicorp/amazon >= 1.2.0)" in message
    assert (
        'Packer said: Failed getting the "github.com/hashicorp/amazon" plugin: | 1 error' in message
    )
    assert "lookup api.github.com: no such host. Check" in message
    assert "PACKER_PLUGIN_PATH" in message


def test_packer_without_init_says_to_upgrade(tmp_path, packer):
    """Packer 1.6.6 itself: `packer init` is a command it does not have."""
    import os

    (tmp_path / "t.pkr.hcl").write_text('source "null" "x" {}\n')
    with pytest.raises(BuildError, match=r"no `init` command \(it is older than 1\.7\)") as err:
        PackerRunner(packer, env=dict(os.environ)).init("t.pkr.hcl", tmp_path, AMAZON)
    assert "Install Packer 1.7 or later" in str(err.value)
