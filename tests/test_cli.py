from __future__ import annotations

import json

from bridge.cli import build_url, main
from tests.conftest import own_images, run_bridge


def test_status_table_and_json(aws, repo, packer):
    before = run_bridge(["status", "--repo", str(repo.path)], aws)
    assert before.code == 0, before.stderr
    lines = before.stdout.splitlines()
    assert lines[0].split() == ["DEFINITION", "STATE", "AMI", "FINGERPRINT", "PARENT"]
    assert lines[1].split()[:3] == ["base", "missing", "-"]
    assert lines[2].split()[:2] == ["snowflake", "missing"]
    build = run_bridge(["build", "--all", "--repo", str(repo.path), "--json"], aws)
    assert build.code == 0, build.stderr
    built = json.loads(build.stdout)
    assert {k: v["built"] for k, v in built.items()} == {"base": "true", "snowflake": "true"}
    after = json.loads(run_bridge(["status", "--json", "--repo", str(repo.path)], aws).stdout)
    assert after["snowflake"]["ami_id"] == built["snowflake"]["ami_id"]
    assert after["snowflake"]["state"] == "found"


def test_resolve_missing_exits_1_and_names_the_build_command(aws, repo):
    proc = run_bridge(["resolve", "snowflake", "--repo", str(repo.path)], aws)
    assert proc.code == 1
    assert "ami-bridge build base" in proc.stderr
    assert own_images() == []


def test_resolve_report_prints_table_and_exits_1(aws, repo):
    proc = run_bridge(["resolve", "base", "--on-missing", "report", "--repo", str(repo.path)], aws)
    assert proc.code == 1
    assert proc.stdout.splitlines()[1].split()[:2] == ["base", "missing"]


def test_build_force_rebuilds_only_the_named(aws, repo, packer):
    first = json.loads(
        run_bridge(["build", "base", "--json", "--repo", str(repo.path)], aws).stdout
    )
    again = json.loads(
        run_bridge(["build", "base", "--json", "--repo", str(repo.path)], aws).stdout
    )
    assert again["base"]["built"] == "false"
    forced = json.loads(
        run_bridge(["build", "base", "--force", "--json", "--repo", str(repo.path)], aws).stdout
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
    assert "Option 'owners'" in capsys.readouterr().err


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


def test_manifest_command_prints_and_checks_the_manifest(aws, repo, packer):
    import boto3

    from tests.conftest import BUCKET

    missing = run_bridge(["manifest", "base", "--repo", str(repo.path)], aws)
    assert missing.code == 1 and "has not been built at this commit" in missing.stderr
    built = json.loads(
        run_bridge(["build", "base", "--json", "--repo", str(repo.path)], aws).stdout
    )
    shown = run_bridge(["manifest", "base", "--repo", str(repo.path)], aws)
    assert shown.code == 0, shown.stderr
    manifest = json.loads(shown.stdout)
    assert manifest["amis"] == {"us-east-1": built["base"]["ami_id"]}
    key = built["base"]["manifest_uri"].removeprefix(f"s3://{BUCKET}/")
    boto3.client("s3").put_object(Bucket=BUCKET, Key=key, Body=b'{"schema_version": 1}')
    tampered = run_bridge(["manifest", "base", "--repo", str(repo.path)], aws)
    assert tampered.code == 1 and tampered.stdout == ""
    assert "does not match the manifest schema" in tampered.stderr
