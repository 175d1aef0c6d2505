"""Promotion channels in SSM: promote, history, rollback, gates (channels.py), against the
sandbox with real builds."""

from __future__ import annotations

import json

import pytest

from testing.bridge import external, run_bridge
from testing.sandbox import aws_client, deregister

REGIONS = ["us-east-1", "eu-west-1"]


def bridge(repo, env, *args: str):
    return run_bridge([*args, "--repo", str(repo.path)], env)


def parameter(name: str, region: str) -> dict:
    return aws_client("ssm", region).get_parameter(Name=name)["Parameter"]


def change_base(repo, text: str) -> None:
    baseline = repo.path / "base" / "tasks" / "baseline.sh"
    baseline.write_text(baseline.read_text() + f"echo {text}\n")
    repo.commit(text)


def built(repo, env) -> dict:
    proc = bridge(repo, env, "build", "--all", "--json")
    assert proc.code == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture
def two_regions(repo):
    data = repo.catalog()
    data["regions"] = REGIONS
    repo.set_catalog(data)
    repo.commit("two regions")
    return repo


def test_promote_writes_the_build_in_every_region_and_history_and_rollback_follow(
    sandbox_env, two_regions, packer
):
    repo = two_regions
    first = built(repo, sandbox_env)["base"]
    proc = bridge(repo, sandbox_env, "promote", "base", "prod", "--json")
    assert proc.code == 0, proc.stderr
    promoted = json.loads(proc.stdout)
    assert promoted["parameter"] == "/ami-chain/example/base/prod"
    assert promoted["build_id"] == first["build_id"]
    for region in REGIONS:
        held = parameter("/ami-chain/example/base/prod", region)
        assert held["Value"] == json.loads(first["amis_json"])[region]
        assert held["DataType"] == "aws:ec2:image" and held["Version"] == 1
        assert promoted["regions"][region]["changed"] is True
    # The same build again: nothing changes, and it says so.
    again = bridge(repo, sandbox_env, "promote", "base", "prod")
    assert again.code == 0, again.stderr
    assert again.stdout.count("held already: nothing changed") == 2
    assert {parameter("/ami-chain/example/base/prod", r)["Version"] for r in REGIONS} == {1}

    change_base(repo, "patched")
    second = built(repo, sandbox_env)["base"]
    assert bridge(repo, sandbox_env, "promote", "base", "prod").code == 0
    assert (
        parameter("/ami-chain/example/base/prod", "eu-west-1")["Value"]
        == (json.loads(second["amis_json"])["eu-west-1"])
    )

    proc = bridge(repo, sandbox_env, "rollback", "base", "prod", "--json")
    assert proc.code == 0, proc.stderr
    assert json.loads(proc.stdout)["build_id"] == first["build_id"]
    for region in REGIONS:
        held = parameter("/ami-chain/example/base/prod", region)
        assert held["Value"] == json.loads(first["amis_json"])[region]
        assert held["Version"] == 3  # a rollback is a new version; the history keeps all

    proc = bridge(repo, sandbox_env, "channel", "history", "base", "prod", "--json")
    assert proc.code == 0, proc.stderr
    history = json.loads(proc.stdout)
    assert [v["build_id"] for v in history] == [
        first["build_id"],
        second["build_id"],
        first["build_id"],
    ]
    assert bridge(repo, sandbox_env, "rollback", "base", "prod", "--to", "2").code == 0
    assert parameter("/ami-chain/example/base/prod", "us-east-1")["Value"] == second["ami_id"]


def test_a_gate_promotes_only_what_the_earlier_channel_holds(sandbox_env, repo, packer):
    first = built(repo, sandbox_env)["snowflake"]
    assert bridge(repo, sandbox_env, "promote", "snowflake", "staging").code == 0
    change_base(repo, "newer")
    newer = built(repo, sandbox_env)["snowflake"]
    assert newer["ami_id"] != first["ami_id"]
    typo = bridge(repo, sandbox_env, "promote", "snowflake", "prod", "--from", "stagign")
    assert typo.code == 1 and "Traceback" not in typo.stderr
    said = " ".join(typo.stderr.split())
    assert "its channels there: staging; did you mean 'staging'?" in said, said
    proc = bridge(repo, sandbox_env, "promote", "snowflake", "prod", "--from", "staging")
    assert proc.code == 0, proc.stderr
    assert parameter("/ami-chain/example/snowflake/prod", "us-east-1")["Value"] == first["ami_id"]


def test_a_revoked_build_cannot_be_promoted(sandbox_env, repo, packer):
    base = built(repo, sandbox_env)["base"]
    aws_client("ec2").create_tags(
        Resources=[base["ami_id"]],
        Tags=[{"Key": "ami-chain:revoked-at", "Value": "2026-01-01T00:00:00+00:00"}],
    )
    proc = bridge(repo, sandbox_env, "promote", "base", "prod", "--ami", base["ami_id"])
    assert proc.code == 1
    assert "revoked" in proc.stderr and "Traceback" not in proc.stderr
    assert not aws_client("ssm").describe_parameters()["Parameters"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["promote", "base", "prod"], "nothing to promote"),
        (["promote", "base", "Prod"], "not a channel name"),
        (["promote", "base", "prod", "--ami", "ami-0123456789abcdef0"], "No image"),
        (["rollback", "base", "prod"], "no history"),
        (["channel", "history", "nope", "prod"], "Unknown definition"),
    ],
)
def test_bad_requests_are_refused_and_write_nothing(sandbox_env, repo, args, message):
    proc = bridge(repo, sandbox_env, *args)
    assert proc.code == 1, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not aws_client("ssm").describe_parameters()["Parameters"]


def test_a_channel_whose_image_is_revoked_is_reported_not_rolled_back(sandbox_env, repo, packer):
    base = built(repo, sandbox_env)["base"]
    assert bridge(repo, sandbox_env, "promote", "base", "prod").code == 0
    status = bridge(repo, sandbox_env, "status")
    assert "channels: prod" in status.stdout and "REVOKED" not in status.stdout
    proc = bridge(repo, sandbox_env, "revoke", "base", "--reason", "bad kernel")
    assert proc.code == 0, proc.stderr
    status = bridge(repo, sandbox_env, "status")
    assert "prod:REVOKED" in status.stdout
    # Rolled back only when asked: the channel still holds the revoked image.
    assert parameter("/ami-chain/example/base/prod", "us-east-1")["Value"] == base["ami_id"]
    query = {
        "definition": "base",
        "channel": "prod",
        "catalog_id": "example",
        "region": "us-east-1",
    }
    read = external(sandbox_env, query)
    assert read.code == 1
    assert "revoked" in read.stderr and "bad kernel" in read.stderr and "rollback" in read.stderr


def test_a_channel_whose_image_was_deregistered_is_refused_not_answered(sandbox_env, repo, packer):
    """Someone deregisters the image a channel holds: the channel query fails, naming the image
    and the rollback, and never hands Terraform the dead AMI."""
    base = built(repo, sandbox_env)["base"]
    assert bridge(repo, sandbox_env, "promote", "base", "prod").code == 0
    query = {
        "definition": "base",
        "channel": "prod",
        "catalog_id": "example",
        "region": "us-east-1",
    }
    assert json.loads(external(sandbox_env, query).stdout)["ami_id"] == base["ami_id"]
    deregister("us-east-1", base["ami_id"])
    assert parameter("/ami-chain/example/base/prod", "us-east-1")["Value"] == base["ami_id"]
    read = external(sandbox_env, query)
    assert read.code == 1, read.stdout
    assert base["ami_id"] not in read.stdout
    said = " ".join(read.stderr.split())
    assert f"holds {base['ami_id']} (version 1), which does not exist in us-east-1" in said
    assert "ami-bridge rollback base prod" in said and "Traceback" not in read.stderr


def test_a_channel_query_needs_no_repository(sandbox_env, repo, packer, tmp_path):
    base = built(repo, sandbox_env)["base"]
    assert bridge(repo, sandbox_env, "promote", "base", "prod").code == 0
    query = {
        "definition": "base",
        "channel": "prod",
        "catalog_id": "example",
        "region": "us-east-1",
    }
    # Run where there is no git repository at all, as in an infrastructure repository's CI.
    read = run_bridge(["external"], sandbox_env, stdin=json.dumps(query), cwd=tmp_path)
    assert read.code == 0, read.stderr
    result = json.loads(read.stdout)
    assert result["ami_id"] == base["ami_id"] and result["channel_version"] == "1"
    assert result["build_id"] == base["build_id"] and result["fingerprint"] == base["fingerprint"]
