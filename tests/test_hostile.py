"""Tampering and hostile input: safe handling or a clear error, never a build from outside."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import boto3

from testing.bridge import external, run_bridge
from testing.sandbox import BUCKET, aws_client, own_images, tags_of


def test_tag_values_with_shell_characters_are_plain_data(sandbox_env, repo, packer):
    # A short path: the whole value must fit a tag (255 characters), wherever pytest keeps tmp_path.
    canary = Path(tempfile.mkdtemp(prefix="canary-")) / "pwned"
    data = repo.catalog()
    evil = f"$(touch {canary}); `touch {canary}` | touch {canary} && echo '\""
    data["definitions"]["base"]["tags"] = {"Owner": evil}
    repo.set_catalog(data)
    repo.commit("evil tag")
    proc = external(sandbox_env, {"definition": "base", "repo": str(repo.path)})
    assert proc.code == 0, proc.stderr
    image = own_images()[0]
    assert tags_of(image)["Owner"] == evil
    assert not canary.exists()


def test_injection_in_query_values_is_refused(sandbox_env, repo):
    for key, value in [
        ("tag_key", "SHA; rm -rf /"),
        ("owners", "self,$(id)"),
        ("commit", "--upload-pack=touch x"),
    ]:
        proc = external(sandbox_env, {"definition": "base", "repo": str(repo.path), key: value})
        assert proc.code == 1 and proc.stdout == ""
        assert f"'{key}'" in proc.stderr
    assert own_images() == []


def test_provisioner_symlink_leaving_repo_is_refused(sandbox_env, repo, tmp_path):
    outside = tmp_path / "outside.sh"
    outside.write_text("#!/bin/sh\necho outside\n")
    os.remove(repo.path / "base/tasks/cleanup.sh")
    os.symlink(outside, repo.path / "base/tasks/cleanup.sh")
    repo.commit("cleanup is now a link out of the repo")
    proc = external(sandbox_env, {"definition": "snowflake", "repo": str(repo.path)})
    assert proc.code == 1 and proc.stdout == ""
    assert "symlink" in proc.stderr and "outside the repository" in proc.stderr
    assert own_images() == []


def test_image_with_our_fingerprint_from_another_account_is_not_used(sandbox_env, repo):
    """Someone else's public image carrying our tag must never be picked up."""
    fingerprint = repo.tree_sha("base")
    creds = aws_client("sts").assume_role(
        RoleArn="arn:aws:iam::111111111111:role/other", RoleSessionName="other"
    )["Credentials"]
    other = boto3.client(
        "ec2",
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    )
    instance = other.run_instances(ImageId="ami-0c55b159cbfafe1f0", MinCount=1, MaxCount=1)
    image = other.create_image(InstanceId=instance["Instances"][0]["InstanceId"], Name="imposter")
    other.create_tags(Resources=[image["ImageId"]], Tags=[{"Key": "SHA", "Value": fingerprint}])
    other.modify_image_attribute(
        ImageId=image["ImageId"], LaunchPermission={"Add": [{"Group": "all"}]}
    )
    assert (
        tags_of(other.describe_images(ImageIds=[image["ImageId"]])["Images"][0])["SHA"]
        == fingerprint
    )
    proc = external(
        sandbox_env, {"definition": "base", "repo": str(repo.path), "on_missing": "report"}
    )
    assert proc.code == 0, proc.stderr
    assert json.loads(proc.stdout)["found"] == "false"


def test_tampered_manifest_does_not_change_what_resolves(sandbox_env, repo, packer):
    first = json.loads(external(sandbox_env, {"definition": "base", "repo": str(repo.path)}).stdout)
    key = first["manifest_uri"].removeprefix(f"s3://{BUCKET}/")
    s3 = aws_client("s3")
    s3.put_object(Bucket=BUCKET, Key=key, Body=b'{"amis": {"us-east-1": "ami-0badbadbadbadbad0"}')
    again = external(sandbox_env, {"definition": "base", "repo": str(repo.path)})
    assert again.code == 0
    assert json.loads(again.stdout)["ami_id"] == first["ami_id"]  # identity comes from EC2 tags
    rebuilt = run_bridge(
        ["build", "base", "--force", "--json", "--repo", str(repo.path)], sandbox_env
    )
    assert rebuilt.code == 0, rebuilt.stderr
    body = json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    assert body["amis"]["us-east-1"] == json.loads(rebuilt.stdout)["base"]["ami_id"]


def test_no_secrets_in_results_logs_tags_or_manifests(sandbox_env, repo, packer, tmp_path):
    secret, token = "SECRETzz" + "9" * 32, "TOKENzz" + "8" * 40
    env = {**sandbox_env, "AWS_SECRET_ACCESS_KEY": secret, "AWS_SESSION_TOKEN": token}
    proc = external(env, {"definition": "snowflake", "repo": str(repo.path)})
    assert proc.code == 0, proc.stderr
    seen = [proc.stdout, proc.stderr]
    state = tmp_path / "state"
    seen += [p.read_text(errors="replace") for p in state.rglob("*") if p.is_file()]
    s3 = aws_client("s3")
    for obj in s3.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        seen.append(s3.get_object(Bucket=BUCKET, Key=obj["Key"])["Body"].read().decode())
    seen += [json.dumps(i) for i in own_images()]
    assert len(seen) > 4
    for text in seen:
        assert secret not in text and token not in text


def test_owner_is_checked_even_if_the_filter_lets_an_image_through():
    """Defence in depth: an image EC2 returns for our tag but owned by a stranger is dropped."""
    from botocore.stub import Stubber

    from bridge.aws.clients import AwsClients
    from bridge.aws.registry import find_images

    ec2 = AwsClients().ec2("us-east-1")
    fp = "a" * 40
    image = {
        "ImageId": "ami-0123456789abcdef0",
        "OwnerId": "999999999999",
        "State": "available",
        "CreationDate": "2026-01-01T00:00:00.000Z",
        "Tags": [{"Key": "SHA", "Value": fp}],
    }

    def sent(owners: list[str]) -> dict:
        """The request find_images must make: the owners go to EC2 as its Owners filter (and
        disabled images are asked for: revoked ones, seen as such)."""
        return {
            "Owners": owners,
            "Filters": [
                {"Name": "tag:SHA", "Values": [fp]},
                {"Name": "state", "Values": ["available", "pending", "disabled"]},
            ],
            "IncludeDisabled": True,
        }

    with Stubber(ec2) as stub:
        stub.add_response("describe_images", {"Images": [image]}, sent(["123456789012"]))
        assert find_images(ec2, "us-east-1", [fp], tag_key="SHA", owners=["123456789012"]) == {}
        stub.add_response("describe_images", {"Images": [image]}, sent(["999999999999"]))
        found = find_images(ec2, "us-east-1", [fp], tag_key="SHA", owners=["999999999999"])
        assert [i.ami_id for i in found[fp]] == ["ami-0123456789abcdef0"]


def test_no_secrets_in_failures_crash_logs_or_debug_output(
    sandbox_env, repo, packer, tmp_path, monkeypatch, capsys
):
    """The paths that print the most: a failed build with --debug (Packer's error lines, the
    build log), and a crash (its log, and the traceback --debug prints)."""
    import io
    import sys

    from bridge.aws import registry
    from bridge.cli import main

    secret, token = "SECRETzz" + "7" * 32, "TOKENzz" + "6" * 40
    state = tmp_path / "secrets-state"
    env = {
        **sandbox_env,
        "AWS_SECRET_ACCESS_KEY": secret,
        "AWS_SESSION_TOKEN": token,
        "AMI_BRIDGE_STATE_DIR": str(state),
    }
    repo.write("base/tasks/baseline.sh", '#!/bin/sh\necho "$HOME" >&2\nexit 3\n')
    repo.commit("a failing baseline")
    query = json.dumps({"definition": "snowflake", "repo": str(repo.path)})
    failed = run_bridge(["--debug", "external"], env, stdin=query)
    assert failed.code == 1 and "Packer failed" in failed.stderr
    seen = [failed.stdout, failed.stderr]

    for key in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AMI_BRIDGE_STATE_DIR"):
        monkeypatch.setenv(key, env[key])

    def broken(*args, **kwargs):
        raise RuntimeError("a bug while looking up images")

    monkeypatch.setattr(registry, "find_images", broken)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(query.encode())))
    assert main(["--debug", "external"]) == 70
    out, err = capsys.readouterr()
    assert "Traceback" in err  # --debug prints it
    seen += [out, err]
    files = [p for p in state.rglob("*") if p.is_file()]
    assert any(p.parent.name == "crashes" for p in files)
    assert any(p.parent.name == "logs" for p in files)
    seen += [p.read_text(errors="replace") for p in files]
    for text in seen:
        assert secret not in text and token not in text
