"""Two catalogs in one account never touch each other's images or channels.

Two teams fork one template repository: identical content, so identical fingerprints and build
IDs, but catalogs with their own IDs and manifest prefixes, building in the same account. Each
lifecycle command is run in catalog A, and EC2, SSM and S3 are read back to show that B's images
and channels are as they were.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from bridge import model
from testing.bridge import run_bridge
from testing.git import GitRepo, make_repo
from testing.sandbox import aws_client, tags_of


@dataclass(frozen=True)
class Team:
    repo: GitRepo
    amis: dict[str, str]  # definition -> its AMI (us-east-1)


def bridge(team: Team | GitRepo, env, *args: str):
    repo = team.repo if isinstance(team, Team) else team
    return run_bridge([*args, "--repo", str(repo.path)], env)


def image(ami: str) -> dict:
    (found,) = aws_client("ec2").describe_images(ImageIds=[ami])["Images"]
    return found


def untouched(team: Team) -> None:
    """Every image of `team` is as a build left it: not revoked, not deprecated, enabled."""
    for name, ami in team.amis.items():
        found = image(ami)
        tags = tags_of(found)
        assert not set(model.REVOCATION_TAGS) & set(tags), (name, tags)
        assert "DeprecationTime" not in found, (name, found["DeprecationTime"])
        assert found["State"] == "available", (name, found["State"])


@pytest.fixture
def teams(sandbox_env, tmp_path, packer) -> tuple[Team, Team]:
    made = []
    for name in ("team-a", "team-b"):
        repo = make_repo(tmp_path / name)
        data = repo.catalog()
        data["id"] = name
        data["manifest"]["prefix"] = f"images-{name}"
        repo.set_catalog(data)
        repo.commit(f"the catalog of {name}")
        built = bridge(repo, sandbox_env, "build", "--all", "--json")
        assert built.code == 0, built.stderr
        amis = {n: r["ami_id"] for n, r in json.loads(built.stdout).items()}
        made.append(Team(repo, amis))
    a, b = made
    assert set(a.amis.values()).isdisjoint(b.amis.values())  # each built its own
    return a, b


def test_revoking_a_definition_revokes_only_this_catalogs_images(sandbox_env, teams):
    a, b = teams
    proc = bridge(a, sandbox_env, "revoke", "base", "--reason", "CVE-2026-2")
    assert proc.code == 0, proc.stderr
    for ami in a.amis.values():  # the base and the snowflake built on it
        assert model.TAG_REVOKED_AT in tags_of(image(ami))
    untouched(b)


def test_revoking_by_ami_revokes_that_image_not_its_twin_in_another_catalog(sandbox_env, teams):
    a, b = teams
    ami = a.amis["snowflake"]
    proc = bridge(a, sandbox_env, "revoke", "snowflake", "--ami", ami, "--reason", "bad")
    assert proc.code == 0, proc.stderr
    assert model.TAG_REVOKED_AT in tags_of(image(ami))
    untouched(b)
    refused = bridge(a, sandbox_env, "revoke", "snowflake", "--ami", b.amis["snowflake"],
                     "--reason", "not ours")  # fmt: skip
    assert refused.code == 1 and "another catalog (team-b)" in refused.stderr
    untouched(b)


def test_restoring_restores_only_this_catalogs_images(sandbox_env, teams):
    a, b = teams
    for team in (a, b):
        proc = bridge(team, sandbox_env, "revoke", "base", "--reason", "both")
        assert proc.code == 0, proc.stderr
    proc = bridge(a, sandbox_env, "restore", "base")
    assert proc.code == 0, proc.stderr
    untouched(a)
    for ami in b.amis.values():
        assert model.TAG_REVOKED_AT in tags_of(image(ami))


def test_promote_puts_only_this_catalogs_build_in_its_channel(sandbox_env, teams):
    a, b = teams
    fingerprint = tags_of(image(a.amis["base"]))["SHA"]
    assert tags_of(image(b.amis["base"]))["SHA"] == fingerprint  # the same content
    for how in (["--fingerprint", fingerprint], []):
        proc = bridge(a, sandbox_env, "promote", "base", "staging", *how)
        assert proc.code == 0, proc.stderr
        held = aws_client("ssm").get_parameter(Name="/ami-chain/team-a/base/staging")["Parameter"]
        assert held["Value"] == a.amis["base"], how
    refused = bridge(a, sandbox_env, "promote", "base", "staging", "--ami", b.amis["base"])
    assert refused.code == 1 and "another catalog (team-b)" in refused.stderr
    held = aws_client("ssm").get_parameter(Name="/ami-chain/team-a/base/staging")["Parameter"]
    assert held["Value"] == a.amis["base"]


def test_each_catalog_has_channels_of_its_own_by_default(sandbox_env, teams):
    """Channels live under the catalog's ID: the same channel of the same definition in two
    catalogs is two parameters, each read by its own catalog's ID."""
    a, b = teams
    for team in (a, b):
        assert bridge(team, sandbox_env, "promote", "base", "prod").code == 0
    ssm = aws_client("ssm")
    for team, other in ((a, b), (b, a)):
        catalog_id = team.repo.catalog()["id"]
        held = ssm.get_parameter(Name=f"/ami-chain/{catalog_id}/base/prod")["Parameter"]
        assert held["Value"] == team.amis["base"] != other.amis["base"]
        query = {"definition": "base", "channel": "prod", "catalog_id": catalog_id}
        read = run_bridge(["external"], sandbox_env, stdin=json.dumps(query))
        assert read.code == 0, read.stderr
        assert json.loads(read.stdout)["ami_id"] == team.amis["base"]
    assert ssm.get_parameters(Names=["/ami-chain/base/prod"])["Parameters"] == []


def test_a_channel_shared_by_two_catalogs_is_never_overwritten_by_the_other(sandbox_env, teams):
    """Two catalogs that keep the old shared names (`channels.prefix` = ami-chain) never
    overwrite each other's channel."""
    a, b = teams
    for team in (a, b):
        data = team.repo.catalog()
        data["channels"] = {"prefix": "ami-chain"}
        team.repo.set_catalog(data)
        team.repo.commit("the channels' old names")
    assert bridge(a, sandbox_env, "promote", "base", "prod").code == 0
    proc = bridge(b, sandbox_env, "promote", "base", "prod")
    assert proc.code == 1
    assert "holds" in proc.stderr and "another catalog (team-a)" in proc.stderr
    assert "`channels` `prefix`" in proc.stderr
    held = aws_client("ssm").get_parameter(Name="/ami-chain/base/prod")["Parameter"]
    assert held["Value"] == a.amis["base"] and held["Version"] == 1
    # With a prefix of its own, B's channel is its own.
    data = b.repo.catalog()
    data["channels"] = {"prefix": "team-b"}
    b.repo.set_catalog(data)
    b.repo.commit("channels of its own")
    assert bridge(b, sandbox_env, "promote", "base", "prod").code == 0
    held = aws_client("ssm").get_parameter(Name="/team-b/base/prod")["Parameter"]
    assert held["Value"] == b.amis["base"]


def launchers(ami: str) -> list[dict]:
    return aws_client("ec2").describe_image_attribute(ImageId=ami, Attribute="launchPermission")[
        "LaunchPermissions"
    ]


def test_rollback_moves_only_this_catalogs_channel(sandbox_env, teams):
    """Both catalogs promote two builds of the same content; A's rollback moves A's channel back
    and leaves B's where B put it."""
    a, b = teams
    ssm = aws_client("ssm")
    first = {}
    for team in (a, b):
        assert bridge(team, sandbox_env, "promote", "base", "prod").code == 0
        first[team.repo.catalog()["id"]] = team.amis["base"]
        rebuilt = bridge(team, sandbox_env, "build", "base", "--force", "--json")
        assert rebuilt.code == 0, rebuilt.stderr
        assert bridge(team, sandbox_env, "promote", "base", "prod").code == 0
    held_b = ssm.get_parameter(Name="/ami-chain/team-b/base/prod")["Parameter"]
    assert held_b["Version"] == 2
    proc = bridge(a, sandbox_env, "rollback", "base", "prod")
    assert proc.code == 0, proc.stderr
    held_a = ssm.get_parameter(Name="/ami-chain/team-a/base/prod")["Parameter"]
    assert held_a["Value"] == first["team-a"] and held_a["Version"] == 3
    assert ssm.get_parameter(Name="/ami-chain/team-b/base/prod")["Parameter"] == held_b


def test_a_share_change_in_one_catalog_leaves_the_others_permissions_alone(sandbox_env, teams):
    """A shares with a workload account, then stops; B's images, of the same content and shared
    with that account by B, keep B's permissions throughout."""
    from bridge.sandbox import OTHER_ACCOUNT

    a, b = teams
    for team, entries in ((b, [OTHER_ACCOUNT]), (a, [OTHER_ACCOUNT]), (a, [])):
        data = team.repo.catalog()
        data["share"] = entries
        team.repo.set_catalog(data)
        team.repo.commit(f"share with {entries}")
        built = bridge(team, sandbox_env, "build", "--all", "--json")
        assert built.code == 0, built.stderr
        for ami in team.amis.values():  # the same images, their sharing brought in line
            assert ({"UserId": OTHER_ACCOUNT} in launchers(ami)) == bool(entries), ami
    for ami in b.amis.values():
        assert launchers(ami) == [{"UserId": OTHER_ACCOUNT}], ami
