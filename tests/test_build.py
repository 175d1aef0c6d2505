"""The build step (build.py): Packer variables and one real `packer build`."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest

from bridge.build import build_image, packer_variables
from bridge.catalog import Definition, load_catalog
from bridge.errors import BuildError
from bridge.packer import PackerRunner

FP = "0123456789abcdef" * 2 + "01234567"
SEED_VARIABLES = {"ami_sha", "ami_name", "ami_base", "region", "ec2_endpoint"}


def definition(**variables: str) -> Definition:
    return Definition("app", "app/app.json", "json", "app", (), parent="base", variables=variables)


def test_declared_seed_variables_are_filled_in():
    variables = packer_variables(
        definition(),
        FP,
        declared=SEED_VARIABLES,
        parent_ami="ami-1",
        region="eu-west-1",
        ec2_endpoint="http://127.0.0.1:5000",
    )
    assert variables == {
        "ami_sha": FP,
        "ami_name": f"app-{FP[:12]}",
        "ami_base": "ami-1",
        "region": "eu-west-1",
        "ec2_endpoint": "http://127.0.0.1:5000",
    }


def test_undeclared_variables_are_not_passed():
    # Packer refuses -var for a variable the template does not declare.
    variables = packer_variables(
        definition(), FP, declared={"ami_sha"}, parent_ami="ami-1", region="us-east-1",
        ec2_endpoint="http://x",
    )  # fmt: skip
    assert variables == {"ami_sha": FP}


def test_catalog_variables_win_and_no_endpoint_means_none():
    variables = packer_variables(
        definition(region="us-west-2", docker="27"),
        FP,
        declared=SEED_VARIABLES,
        parent_ami=None,
        region="us-east-1",
        ec2_endpoint=None,
    )
    assert variables["region"] == "us-west-2" and variables["docker"] == "27"
    assert variables["ami_base"] == ""
    assert "ec2_endpoint" not in variables


@pytest.fixture
def runner(sandbox_env, packer) -> PackerRunner:
    return PackerRunner(packer, env=sandbox_env)


def test_build_image_runs_packer_and_returns_every_region(repo, runner, sandbox_env, tmp_path):
    catalog = load_catalog(repo.path)
    artifacts = build_image(
        runner,
        repo.path,
        catalog.get("base"),
        FP,
        regions=["us-east-1"],
        parent=None,
        ec2_endpoint=sandbox_env["AWS_ENDPOINT_URL"],
        log_dir=tmp_path / "logs",
        manifest_dir=None,
    )
    ami = artifacts.amis["us-east-1"]
    image = boto3.client("ec2").describe_images(ImageIds=[ami])["Images"][0]
    assert image["Name"].startswith(f"base-{FP[:12]}-")  # the template names images by ami_name
    assert "Tags" not in image or not any(t["Key"] == "SHA" for t in image["Tags"])
    assert artifacts.log_path.parent == tmp_path / "logs"
    assert f"us-east-1:{ami}" in artifacts.log_path.read_text()


def test_build_image_that_misses_a_region_is_an_error(repo, runner, sandbox_env, tmp_path):
    catalog = load_catalog(repo.path)
    with pytest.raises(BuildError, match=r"no AMI for eu-west-1.*ami_regions"):
        build_image(
            runner,
            repo.path,
            catalog.get("base"),
            FP,
            regions=["us-east-1", "eu-west-1"],
            parent=None,
            ec2_endpoint=sandbox_env["AWS_ENDPOINT_URL"],
            log_dir=tmp_path / "logs",
            manifest_dir=None,
        )


def test_artifacts_from_a_seed_style_manifest(repo, runner, tmp_path):
    """A template whose Packer output names no AMI: the workspace's manifest-<name>.json counts."""
    (repo.path / "quiet").mkdir()
    Path(repo.path / "quiet" / "quiet.json").write_text(
        json.dumps({"builders": [{"type": "null", "communicator": "none"}]})
    )
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    (workspace / "manifest-quiet.json").write_text(
        json.dumps({"builds": [{"artifact_id": "us-east-1:ami-0123456789abcdef0"}]})
    )
    quiet = Definition("quiet", "quiet/quiet.json", "json", "quiet", ())
    build = {"regions": ["us-east-1"], "parent": None, "ec2_endpoint": None}
    artifacts = build_image(
        runner, repo.path, quiet, FP, **build, log_dir=tmp_path / "logs", manifest_dir=workspace
    )
    assert dict(artifacts.amis) == {"us-east-1": "ami-0123456789abcdef0"}
    with pytest.raises(BuildError, match="reported no AMI"):
        build_image(
            runner, repo.path, quiet, FP, **build, log_dir=tmp_path / "logs", manifest_dir=None
        )
