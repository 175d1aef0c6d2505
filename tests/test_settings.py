"""Settings (settings.py): one precedence table, per-key validators shared by flags and queries."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.catalog import Catalog
from bridge.cli import main
from bridge.errors import QueryError
from bridge.settings import (
    DEFAULT_LEASE_TTL,
    DEFAULT_OWNERS,
    DEFAULT_TAG_KEY,
    Options,
    RunPolicy,
    Settings,
    cache_dir,
    parse_options,
    query_key,
    run_policy,
    state_dir,
)

EMPTY = Catalog(path="ami-chain.json", definitions={})
FULL = Catalog(
    path="ami-chain.json",
    definitions={},
    tag_key="CatalogSHA",
    owners=("111111111111",),
    regions=("eu-west-1", "us-east-1"),
    manifest_bucket="catalog-bucket",
    manifest_prefix="catalog-prefix",
    lease_bucket=None,
    lease_prefix=None,
    lease_ttl=60.0,
)
OPTIONS = Options(
    region="ap-south-1",
    tag_key="OptionSHA",
    owners=("222222222222",),
    manifest_bucket="option-bucket",
    manifest_prefix="option-prefix",
)
ENV = {"AWS_REGION": "us-west-2", "AMI_BRIDGE_STATE_DIR": "/state"}


def from_sources(options, catalog, env):
    return Settings.from_sources(options, catalog, env, repo_root=Path("/repo"))


def merged(options=Options(), catalog=EMPTY, env=None) -> Settings:
    return from_sources(options, catalog, {"AWS_REGION": "us-east-1"} if env is None else env)


# setting: (option wins, environment next, catalog next, default last)
@pytest.mark.parametrize(
    ("field", "with_option", "with_env", "with_catalog", "default"),
    [
        ("region", "ap-south-1", "us-west-2", "eu-west-1", None),
        ("tag_key", "OptionSHA", None, "CatalogSHA", DEFAULT_TAG_KEY),
        ("owners", ("222222222222",), None, ("111111111111",), DEFAULT_OWNERS),
        ("manifest_bucket", "option-bucket", None, "catalog-bucket", None),
        ("manifest_prefix", "option-prefix", None, "catalog-prefix", None),
        ("lease_bucket", "option-bucket", None, "catalog-bucket", None),
        ("lease_prefix", "option-prefix", None, "catalog-prefix", ""),
        ("lease_ttl", None, None, 60.0, DEFAULT_LEASE_TTL),
    ],
)
def test_precedence(field, with_option, with_env, with_catalog, default):
    if with_option is not None:
        assert getattr(from_sources(OPTIONS, FULL, ENV), field) == with_option
    if with_env is not None:
        assert getattr(from_sources(Options(), FULL, ENV), field) == with_env
    no_env_region = {"AWS_REGION": "us-east-1"} if field != "region" else {}
    assert getattr(from_sources(Options(), FULL, no_env_region), field) == with_catalog
    if default is not None:
        assert getattr(merged(), field) == default


def test_lease_settings_of_the_catalog_beat_the_manifest_ones():
    catalog = Catalog(
        path="c",
        definitions={},
        manifest_bucket="manifests",
        manifest_prefix="images",
        lease_bucket="leases",
        lease_prefix="locks",
    )
    settings = merged(catalog=catalog)
    assert (settings.lease_bucket, settings.lease_prefix) == ("leases", "locks")
    assert (settings.manifest_bucket, settings.manifest_prefix) == ("manifests", "images")


def test_no_region_anywhere_is_an_error_that_says_where_to_set_one():
    with pytest.raises(QueryError, match="AWS_REGION") as info:
        from_sources(Options(), EMPTY, {})
    assert "--region" in str(info.value) and "catalog" in str(info.value)


def test_environment_settings():
    env = {
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": "http://all",
        "AWS_ENDPOINT_URL_EC2": "http://ec2",
        "AMI_BRIDGE_PACKER": "/opt/packer",
        "AMI_BRIDGE_PACKER_MANIFESTS": "/workspace",
        "CI_JOB_URL": "https://ci.example/1",
    }
    settings = merged(env=env)
    assert settings.ec2_endpoint == "http://ec2"
    assert merged(env={**env, "AMI_BRIDGE_PACKER_EC2_ENDPOINT": "http://p"}).ec2_endpoint == (
        "http://p"
    )
    assert settings.packer == "/opt/packer"
    assert str(settings.packer_manifest_dir) == "/workspace"
    assert settings.build_url == "https://ci.example/1"
    assert merged().packer == "packer" and merged().packer_manifest_dir is None


def test_state_dir():
    assert str(state_dir({"AMI_BRIDGE_STATE_DIR": "/s"})) == "/s"
    assert str(state_dir({"XDG_STATE_HOME": "/x"})) == "/x/ami-bridge"
    assert str(state_dir({"HOME": "/h"})) == "/h/.local/state/ami-bridge"
    settings = merged(env={"AWS_REGION": "us-east-1", "AMI_BRIDGE_STATE_DIR": "/s"})
    assert (str(settings.log_dir), str(settings.lock_dir)) == ("/s/logs", "/s/locks")


def test_cache_dir():
    assert str(cache_dir({"AMI_BRIDGE_CACHE_DIR": "/c", "AMI_BRIDGE_STATE_DIR": "/s"})) == "/c"
    assert str(cache_dir({"XDG_CACHE_HOME": "/x", "AMI_BRIDGE_STATE_DIR": "/s"})) == "/x/ami-bridge"
    assert str(cache_dir({"HOME": "/h"})) == "/h/.cache/ami-bridge"


def test_caches_go_to_the_cache_directory_and_the_state_directory_keeps_logs_and_locks(
    sandbox_env, repo, packer, tmp_path
):
    from testing.bridge import run_bridge

    state, cache = tmp_path / "state", tmp_path / "cache"
    env = {**sandbox_env, "AMI_BRIDGE_STATE_DIR": str(state), "AMI_BRIDGE_CACHE_DIR": str(cache)}
    proc = run_bridge(["build", "base", "--repo", str(repo.path)], env)
    assert proc.code == 0, proc.stderr
    assert sorted(p.name for p in cache.iterdir()) == ["models", "packer-version.json", "validated"]
    assert {"models", "packer-version.json", "validated"}.isdisjoint(
        p.name for p in state.iterdir()
    )
    assert list((state / "logs").glob("base-*.log"))


def test_parse_options_reads_strings_and_treats_empty_as_unset():
    options = parse_options(
        {
            "owners": "self,123456789012",
            "allow_dirty": "true",
            "on_missing": "report",
            "region": "",
        },
        spell=str,
    )
    assert options.owners == ("self", "123456789012")
    assert options.allow_dirty is True
    assert options.on_missing == "report"
    assert options.region is None
    assert parse_options({}, spell=str) == Options()


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("owners", "me"),
        ("region", "Mars-1"),
        ("tag_key", "aws:reserved"),
        ("on_missing", "sometimes"),
        ("manifest_bucket", "Not_A_Bucket"),
        ("commit", "--upload-pack=evil"),
    ],
)
def test_flags_and_queries_share_one_validator(key, value, capsys):
    with pytest.raises(QueryError) as query_error:
        parse_options({key: value}, spell=query_key)
    query_message = str(query_error.value)
    assert query_message.startswith(f"Query key {key!r} has the invalid value {value!r}.")
    if key == "on_missing":
        return  # a flag with choices: argparse refuses it first
    flag = "--" + key.replace("_", "-")
    assert main(["status", "--repo", "/nonexistent", f"{flag}={value}"]) == 1
    flag_message = capsys.readouterr().err
    # The same rule, in the caller's own words.
    expected = query_message.replace(f"Query key {key!r}", f"Option {flag}").replace(
        f"query key {key!r}", f"option {flag}"
    )
    assert flag_message.strip() == f"ami-bridge: error: {expected}"


@pytest.mark.parametrize(
    ("command", "given", "expected"),
    [
        ("external", None, "build"),  # Terraform's data source builds
        ("resolve", None, "fail"),  # a person's resolve asks
        ("build", None, "build"),
        ("external", "report", "report"),
        ("resolve", "build", "build"),
        ("build", "fail", "build"),  # `build` always builds
    ],
)
def test_the_run_policy_is_decided_once_from_the_options_then_the_commands_default(
    command, given, expected
):
    policy = run_policy(command, Options(on_missing=given), {}, EMPTY, force=["base"])
    assert policy == RunPolicy(expected, "build", frozenset({"base"}), None, 4, False)
    assert policy.writes is (expected == "build")
