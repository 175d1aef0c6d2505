from __future__ import annotations

import json
import re

import pytest

from bridge.cli import main
from bridge.settings import build_url
from testing.bridge import run_bridge
from testing.sandbox import aws_client, own_images


def test_status_table_and_json(sandbox_env, repo, packer):
    data = repo.catalog()
    data["definitions"]["base"]["max_age_days"] = 30
    repo.set_catalog(data)
    repo.commit("the base lasts 30 days")
    before = run_bridge(["status", "--repo", str(repo.path)], sandbox_env)
    assert before.code == 0, before.stderr
    lines = before.stdout.splitlines()
    assert lines[0].split() == [
        "DEFINITION",
        "STATE",
        "AMI",
        "FINGERPRINT",
        "PARENT",
        "AGE",
        "REGIONS",
    ]
    assert lines[1].split()[:3] == ["base", "missing", "-"]
    assert lines[1].split()[-1] == "us-east-1:missing"
    assert lines[2].split()[:2] == ["snowflake", "missing"]
    build = run_bridge(["build", "--all", "--repo", str(repo.path), "--json"], sandbox_env)
    assert build.code == 0, build.stderr
    built = json.loads(build.stdout)
    assert {k: v["built"] for k, v in built.items()} == {"base": "true", "snowflake": "true"}
    after = json.loads(
        run_bridge(["status", "--json", "--repo", str(repo.path)], sandbox_env).stdout
    )
    assert after["snowflake"]["ami_id"] == built["snowflake"]["ami_id"]
    assert after["snowflake"]["state"] == "found"
    table = run_bridge(["status", "--repo", str(repo.path)], sandbox_env).stdout.splitlines()
    assert table[1].split()[5][-1] in "sm"  # built seconds (or a minute or two) ago
    assert f"expires {after['base']['expires_at']}" in table[1]
    assert "expires" not in table[2]  # no maximum age


def test_resolve_missing_exits_3_and_names_the_build_command(sandbox_env, repo):
    proc = run_bridge(["resolve", "snowflake", "--repo", str(repo.path)], sandbox_env)
    assert proc.code == 3
    assert "ami-bridge build base" in proc.stderr
    assert own_images() == []


def test_resolve_report_prints_table_and_exits_3(sandbox_env, repo):
    proc = run_bridge(
        ["resolve", "base", "--on-missing", "report", "--repo", str(repo.path)], sandbox_env
    )
    assert proc.code == 3
    assert proc.stdout.splitlines()[1].split()[:2] == ["base", "missing"]


def test_build_force_rebuilds_only_the_named(sandbox_env, repo, packer):
    first = json.loads(
        run_bridge(["build", "base", "--json", "--repo", str(repo.path)], sandbox_env).stdout
    )
    again = json.loads(
        run_bridge(["build", "base", "--json", "--repo", str(repo.path)], sandbox_env).stdout
    )
    assert again["base"]["built"] == "false"
    forced = json.loads(
        run_bridge(
            ["build", "base", "--force", "--json", "--repo", str(repo.path)], sandbox_env
        ).stdout
    )
    assert forced["base"]["built"] == "true"
    assert forced["base"]["ami_id"] != first["base"]["ami_id"]
    assert len(own_images()) == 2


def test_graph_dot_and_mermaid(repo):
    dot = run_bridge(["graph", "--repo", str(repo.path)], {})
    assert dot.code == 0
    assert '"base" -> "snowflake";' in dot.stdout
    assert dot.stdout.startswith("digraph ami_chain {")
    mermaid = run_bridge(["graph", "--format", "mermaid", "--repo", str(repo.path)], {})
    assert "base --> snowflake" in mermaid.stdout


def test_bad_usage_exits_1_without_traceback(repo):
    for args in (
        ["frobnicate"],
        ["build"],
        ["status", "--owners", "me", "--repo", str(repo.path)],
        [],
    ):
        proc = run_bridge(args, {"PATH": "/usr/bin:/bin"})
        assert proc.code == 1, args
        assert "Traceback" not in proc.stderr
        assert "error" in proc.stderr


def test_bad_owner_option_is_named(repo, capsys):
    assert (
        main(["status", "--owners", "me", "--repo", str(repo.path), "--region", "us-east-1"]) == 1
    )
    assert "Option --owners has the invalid value 'me'" in capsys.readouterr().err


def test_missing_region_is_explained(repo, monkeypatch, capsys):
    for key in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(key, raising=False)
    data = repo.catalog()
    del data["regions"]
    repo.set_catalog(data)
    assert main(["status", "--repo", str(repo.path)]) == 1
    assert "No AWS region is set" in capsys.readouterr().err


def test_build_url():
    assert (
        build_url({"CIRCLE_BUILD_URL": "https://circleci.example/1"})
        == "https://circleci.example/1"
    )
    assert (
        build_url({"GITHUB_RUN_ID": "9", "GITHUB_REPOSITORY": "o/r"})
        == "https://github.com/o/r/actions/runs/9"
    )
    assert build_url({}) == ""


def test_manifest_command_prints_and_checks_the_manifest(sandbox_env, repo, packer):

    from testing.sandbox import BUCKET

    missing = run_bridge(["manifest", "base", "--repo", str(repo.path)], sandbox_env)
    assert missing.code == 1 and "has not been built at this commit" in missing.stderr
    built = json.loads(
        run_bridge(["build", "base", "--json", "--repo", str(repo.path)], sandbox_env).stdout
    )
    shown = run_bridge(["manifest", "base", "--repo", str(repo.path)], sandbox_env)
    assert shown.code == 0, shown.stderr
    manifest = json.loads(shown.stdout)
    assert manifest["amis"] == {"us-east-1": built["base"]["ami_id"]}
    key = built["base"]["manifest_uri"].removeprefix(f"s3://{BUCKET}/")
    aws_client("s3").put_object(Bucket=BUCKET, Key=key, Body=b'{"schema_version": 1}')
    tampered = run_bridge(["manifest", "base", "--repo", str(repo.path)], sandbox_env)
    assert tampered.code == 1 and tampered.stdout == ""
    assert "does not match the manifest schema" in tampered.stderr


def test_a_bug_exits_70_with_a_crash_log_and_no_traceback(monkeypatch, capsys, tmp_path):
    import bridge.cli.commands.status

    def broken(args, env):
        raise ZeroDivisionError("a bug")

    monkeypatch.setenv("AMI_BRIDGE_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("AMI_BRIDGE_DEBUG", raising=False)
    monkeypatch.setattr(bridge.cli.commands.status, "run", broken)
    assert main(["status"]) == 70
    err = capsys.readouterr().err
    assert "internal error: ZeroDivisionError: a bug" in err and "Traceback" not in err
    (crash,) = (tmp_path / "crashes").iterdir()
    assert str(crash) in err
    assert "Traceback" in crash.read_text() and "a bug" in crash.read_text()


def test_version_comes_from_the_package_metadata(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out == f"ami-bridge {version('ami-chain-bridge')}\n"


def test_build_dry_run_prints_the_plan_and_builds_nothing(sandbox_env, repo, packer):
    dry = run_bridge(
        ["build", "--all", "--dry-run", "--json", "--repo", str(repo.path)], sandbox_env
    )
    assert dry.code == 0, dry.stderr
    planned = json.loads(dry.stdout)
    assert {k: v["state"] for k, v in planned.items()} == {
        "base": "missing",
        "snowflake": "missing",
    }
    assert planned["base"]["fingerprint"] == repo.tree_sha("base")
    assert own_images() == []
    built = run_bridge(["build", "base", "--repo", str(repo.path)], sandbox_env)
    assert built.code == 0, built.stderr
    again = json.loads(
        run_bridge(
            ["build", "--all", "--dry-run", "--json", "--repo", str(repo.path)], sandbox_env
        ).stdout
    )
    assert {k: v["state"] for k, v in again.items()} == {"base": "found", "snowflake": "missing"}
    assert len(own_images()) == 1


def test_a_build_pinned_to_a_fingerprint_refuses_another(sandbox_env, repo, packer):
    """What a saved plan's apply-time build relies on: other inputs than the planned ones build
    nothing."""
    status = run_bridge(["status", "--json", "--repo", str(repo.path)], sandbox_env)
    planned = json.loads(status.stdout)["snowflake"]["fingerprint"]
    repo.write(
        "snowflake/snowflake.json",
        repo.path.joinpath("snowflake/snowflake.json").read_text() + "\n",
    )
    repo.commit("a later commit")
    args = ["build", "--repo", str(repo.path), "--expect-fingerprint", planned]
    refused = run_bridge([*args, "snowflake"], sandbox_env)
    assert refused.code == 1
    assert f"not the expected {planned}" in refused.stderr
    assert own_images() == []
    pinned = run_bridge([*args, "--commit", "HEAD~1", "snowflake"], sandbox_env)
    assert pinned.code == 0, pinned.stderr
    assert (
        json.loads(
            run_bridge([*args, "--commit", "HEAD~1", "--json", "snowflake"], sandbox_env).stdout
        )["snowflake"]["fingerprint"]
        == planned
    )


def test_local_exec_takes_only_the_build_command_text(sandbox_env, repo):
    proc = run_bridge(
        ["build", "--repo", str(repo.path), "--local-exec", "ami-bridge build base; rm -rf /"],
        sandbox_env,
    )
    assert proc.code == 1
    assert "--local-exec takes the text `ami-bridge build DEF`" in proc.stderr
    assert own_images() == []


def test_jobs_come_from_the_flag_then_the_environment_then_the_catalog():
    from bridge.catalog import Catalog
    from bridge.errors import QueryError
    from bridge.settings import DEFAULT_JOBS
    from bridge.settings import jobs as _jobs

    plain = Catalog(path="ami-chain.json", definitions={})
    two = Catalog(path="ami-chain.json", definitions={}, jobs=2)
    assert _jobs(None, {}, plain) == DEFAULT_JOBS
    assert _jobs(None, {}, two) == 2
    assert _jobs(None, {"AMI_BRIDGE_JOBS": "3"}, two) == 3
    assert _jobs("5", {"AMI_BRIDGE_JOBS": "3"}, two) == 5
    with pytest.raises(QueryError, match="AMI_BRIDGE_JOBS is '0'"):
        _jobs(None, {"AMI_BRIDGE_JOBS": "0"}, two)


def test_a_catalog_jobs_value_out_of_range_is_refused(repo):
    repo.set_catalog({**repo.catalog(), "jobs": 0})
    proc = run_bridge(["status", "--repo", str(repo.path)], {})
    assert proc.code == 1
    assert "jobs" in proc.stderr and "Traceback" not in proc.stderr


def test_a_reader_that_goes_away_is_not_an_internal_error(repo, tmp_path):
    import os
    import subprocess
    import sys

    read, write = os.pipe()
    os.close(read)  # every write to stdout fails with EPIPE
    proc = subprocess.run(
        [sys.executable, "-m", "bridge", "graph", "--repo", str(repo.path)],
        stdout=write,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "AMI_BRIDGE_STATE_DIR": str(tmp_path / "state")},
    )
    os.close(write)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""


def test_an_unusable_state_directory_is_an_error_naming_it(sandbox_env, repo, packer, tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    env = {**sandbox_env, "AMI_BRIDGE_STATE_DIR": str(blocker / "state")}
    proc = run_bridge(["build", "base", "--repo", str(repo.path)], env)
    assert proc.code == 1, proc.stderr
    assert f"Cannot use the state directory {blocker / 'state'}" in proc.stderr
    assert "AMI_BRIDGE_STATE_DIR" in proc.stderr and "internal error" not in proc.stderr
    assert own_images() == []


def test_a_flag_typo_is_reported_by_its_subcommand_with_the_closest_flag(repo):
    proc = run_bridge(["status", "--reppo", str(repo.path)], {"PATH": "/usr/bin:/bin"})
    assert proc.code == 1
    assert proc.stderr.startswith("usage: ami-bridge status")
    assert "--reppo: did you mean --repo?" in proc.stderr
    assert "See `ami-bridge status --help`" in proc.stderr
    nested = run_bridge(["channel", "history", "base", "prod", "--jsn"], {"PATH": "/usr/bin:/bin"})
    assert nested.code == 1 and "did you mean --json?" in nested.stderr
    assert "ami-bridge channel history --help" in nested.stderr


def test_external_help_lists_every_query_key():
    from bridge.validation import load_schema

    proc = run_bridge(["external", "--help"], {"PATH": "/usr/bin:/bin"})
    assert proc.code == 0
    for key in load_schema("query.schema.json")["properties"]:
        assert f"\n  {key} " in proc.stdout, key
    assert "Default on_missing: build" in proc.stdout


def test_status_shows_a_broken_definition_as_a_row_with_its_error(sandbox_env, repo):
    repo.write("lonely/lonely.json", "{ not json")
    data = repo.catalog()
    data["definitions"]["lonely"] = {"template": "lonely/lonely.json"}
    repo.set_catalog(data)
    repo.commit("a broken template")
    proc = run_bridge(["status", "--repo", str(repo.path)], sandbox_env)
    assert proc.code == 1
    rows = {line.split()[0]: line for line in proc.stdout.splitlines()[1:]}
    assert rows["base"].split()[1] == "missing" and rows["snowflake"].split()[1] == "missing"
    assert rows["lonely"].split()[1] == "error" and "lonely/lonely.json" in rows["lonely"]
    as_json = json.loads(
        run_bridge(["status", "--json", "--repo", str(repo.path)], sandbox_env).stdout
    )
    assert "cannot be parsed" in as_json["lonely"]["error"]
    assert as_json["base"]["state"] == "missing"


def test_build_lists_the_ancestors_it_built(sandbox_env, repo, packer):
    first = run_bridge(["build", "snowflake", "--json", "--repo", str(repo.path)], sandbox_env)
    assert first.code == 0, first.stderr
    assert {k: v["built"] for k, v in json.loads(first.stdout).items()} == {
        "base": "true",
        "snowflake": "true",
    }
    again = run_bridge(["build", "snowflake", "--json", "--repo", str(repo.path)], sandbox_env)
    assert list(json.loads(again.stdout)) == ["snowflake"]  # nothing built: the named only


def test_build_progress_names_the_artifacts_and_verbose_streams_the_provisioners(
    sandbox_env, repo, packer
):
    quiet = run_bridge(["build", "base", "--repo", str(repo.path), "--json"], sandbox_env)
    assert quiet.code == 0, quiet.stderr
    ami = json.loads(quiet.stdout)["base"]["ami_id"]
    assert re.search(r"^ +\d+s \[base\] packer: ==> ", quiet.stderr, re.M), quiet.stderr
    assert re.search(rf"^ +\d+s \[base\] packer: --> .*{ami}", quiet.stderr, re.M), quiet.stderr
    assert "waiting for cloud-init" not in quiet.stderr  # provisioner output: only with -v
    loud = run_bridge(["build", "base", "--force", "-v", "--repo", str(repo.path)], sandbox_env)
    assert loud.code == 0, loud.stderr
    assert re.search(r"\[base\] packer: .*waiting for cloud-init", loud.stderr), loud.stderr


def test_status_shows_every_row_when_every_definition_is_broken(sandbox_env, repo):
    repo.write("base/base.json", "{ not json")
    repo.commit("the root's template is broken, and with it its child")
    proc = run_bridge(["status", "--repo", str(repo.path)], sandbox_env)
    assert proc.code == 1
    rows = {line.split()[0]: line for line in proc.stdout.splitlines()[1:]}
    assert {name: row.split()[1] for name, row in rows.items()} == {
        "base": "error",
        "snowflake": "error",
    }
    assert "base/base.json" in rows["base"] and "cannot be parsed" in rows["snowflake"]


def test_main_stops_on_sigterm_only_while_it_runs(tmp_path, monkeypatch):
    """In-process callers (a program embedding the bridge, the test suite) keep their own SIGTERM
    handling once main() returns; the bridge's is in place only while a command runs."""
    import signal

    def ours(signum, frame):
        raise AssertionError("not sent")

    before = signal.signal(signal.SIGTERM, ours)
    try:
        monkeypatch.chdir(tmp_path)
        assert main(["check"]) == 1  # no repository here: refused, and returns
        assert signal.getsignal(signal.SIGTERM) is ours
    finally:
        signal.signal(signal.SIGTERM, before)
