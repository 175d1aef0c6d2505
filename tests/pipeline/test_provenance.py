"""Signed provenance (provenance.py), with real Packer and KMS in the sandbox: every build's
in-toto statement is signed, stored beside its manifest and verified up the chain; a tampered
statement, one for another AMI, one signed by another key and a missing parent's each fail with
their reason."""

from __future__ import annotations

import base64
import json

import pytest

from bridge import model
from bridge.sandbox import ACCOUNT, OTHER_ACCOUNT
from testing.bridge import run_bridge
from testing.sandbox import BUCKET, aws_client, own_images, tags_of

ALIAS = "alias/ami-provenance"


def kms_key() -> str:
    kms = aws_client("kms")
    key = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["Arn"]
    kms.create_alias(AliasName=ALIAS, TargetKeyId=key)
    return key


@pytest.fixture
def signed(sandbox_env, repo, packer):
    """The example chain built with a provenance key: (repo, result per definition)."""
    kms_key()
    data = repo.catalog()
    data["provenance"] = {"key": ALIAS}
    data["share"] = [OTHER_ACCOUNT]  # a workload account launches them
    repo.set_catalog(data)
    repo.commit("signed provenance")
    proc = run_bridge(["build", "--all", "--repo", str(repo.path), "--json"], sandbox_env)
    assert proc.code == 0, proc.stderr
    return json.loads(proc.stdout)


def envelope_key(definition: str, fingerprint: str) -> str:
    """Beside the manifest: the newest build of the fingerprint (what a workload account finds)."""
    return f"images/{definition}/{fingerprint}.intoto.json"


def own_key(result: dict) -> str:
    """The build's own statement, which its images' tag names."""
    return f"images/{result['definition']}/{result['fingerprint']}/{result['build_id']}.intoto.json"


def read(key: str) -> dict:
    return json.loads(aws_client("s3").get_object(Bucket=BUCKET, Key=key)["Body"].read())


def write(key: str, data: dict) -> None:
    aws_client("s3").put_object(Bucket=BUCKET, Key=key, Body=json.dumps(data).encode())


def verify(repo, env, *args: str):
    return run_bridge(["verify", *args, "--repo", str(repo.path)], env)


def test_a_built_chain_verifies_to_its_root_and_says_what_made_it(sandbox_env, repo, signed):
    base, snowflake = signed["base"], signed["snowflake"]
    key = own_key(snowflake)
    envelope = read(key)
    assert read(envelope_key("snowflake", snowflake["fingerprint"])) == envelope
    assert envelope["payloadType"] == "application/vnd.in-toto+json"
    statement = json.loads(base64.b64decode(envelope["payload"]))
    assert statement["predicateType"] == "https://slsa.dev/provenance/v1"
    (subject,) = statement["subject"]
    assert subject["name"].endswith(f":image/{snowflake['ami_id']}")
    assert subject["digest"] == {"amiChainFingerprint": snowflake["fingerprint"]}
    build = statement["predicate"]["buildDefinition"]
    assert build["externalParameters"]["commit"] == snowflake["git_commit"]
    (parent,) = [d for d in build["resolvedDependencies"] if d.get("name") == "parent"]
    assert parent["uri"] == f"ec2:us-east-1:{base['ami_id']}"
    assert parent["annotations"]["provenance"] == f"s3://{BUCKET}/{own_key(base)}"
    run = statement["predicate"]["runDetails"]
    assert run["builder"]["version"]["packer"] == "1.6.6"
    assert run["metadata"]["invocationId"] == snowflake["build_id"]
    # What the build was seen to read (observe.py), each file with its git blob.
    (observed,) = [b for b in run["byproducts"] if b["name"] == "observed-reads"]
    reads = {r["path"]: r["blob"] for r in observed["annotations"]["reads"]}
    blob = repo.git("rev-parse", "HEAD:snowflake/tasks/docker.sh").strip()
    assert observed["annotations"]["traced"] is True and reads["snowflake/tasks/docker.sh"] == blob
    (image,) = [i for i in own_images() if i["ImageId"] == snowflake["ami_id"]]
    assert tags_of(image)[model.TAG_PROVENANCE] == f"s3://{BUCKET}/{key}"

    by_kms = verify(repo, sandbox_env, "snowflake")
    assert by_kms.code == 0, by_kms.stderr
    lines = by_kms.stdout.splitlines()
    assert lines[0] == f"trusting the KMS key {ALIAS} (the catalog's provenance.key at this commit)"
    assert lines[1].startswith(f"verified snowflake {snowflake['ami_id']}")
    assert lines[2].startswith(f"verified base {base['ami_id']}")
    by_ami = verify(repo, sandbox_env, snowflake["ami_id"])
    assert by_ami.code == 0, by_ami.stderr

    # A workload account's way: the public key alone, no access to KMS.
    public = aws_client("kms").get_public_key(KeyId=ALIAS)["PublicKey"]
    repo.write("keys/provenance.der", "")
    (repo.path / "keys" / "provenance.der").write_bytes(public)
    offline = run_bridge(  # a file named from the working directory, wherever it is
        ["verify", "snowflake", "--public-key", "provenance.der", "--repo", str(repo.path)],
        sandbox_env,
        cwd=repo.path / "keys",
    )
    assert offline.code == 0, offline.stderr
    missing = verify(repo, sandbox_env, "snowflake", "--public-key", "provenance.der")
    assert missing.code == 1 and "Cannot read the public key provenance.der" in missing.stderr


def test_a_workload_account_verifies_from_the_manifests_and_the_public_key_alone(
    sandbox_env, sandbox_server, repo, signed, tmp_path
):
    """No KMS access and no tags (an owner's tags never reach another account): the images are
    found through the manifests, their provenance beside them, the signature by the public key."""
    public = aws_client("kms").get_public_key(KeyId=ALIAS)["PublicKey"]
    (repo.path / "keys").mkdir()
    (repo.path / "keys" / "provenance.der").write_bytes(public)
    consumer = {
        **sandbox_env,
        **sandbox_server.env(account=OTHER_ACCOUNT),
        "AMI_BRIDGE_STATE_DIR": str(tmp_path / "consumer"),
    }
    key = str(repo.path / "keys" / "provenance.der")  # an absolute path
    args = ["snowflake", "--owners", ACCOUNT, "--public-key", key]
    proc = verify(repo, consumer, *args)
    assert proc.code == 0, proc.stderr
    trusted, first = proc.stdout.splitlines()[:2]
    assert trusted == f"trusting the public key in {key}"
    assert first.startswith(f"verified snowflake {signed['snowflake']['ami_id']}")
    without_key = verify(repo, consumer, "snowflake", "--owners", ACCOUNT)
    # The catalog names its key by an alias of the builder's account: not the consumer's.
    assert without_key.code == 1 and "Traceback" not in without_key.stderr
    assert "--public-key FILE" in without_key.stderr  # the way an account without the key has


def refused(proc, *phrases: str) -> None:
    assert proc.code == 1, proc.stdout
    error = " ".join(proc.stderr.split())
    assert "Traceback" not in error
    for phrase in phrases:
        assert phrase in error, error


def test_a_tampered_statement_does_not_verify(sandbox_env, repo, signed):
    key = own_key(signed["snowflake"])
    envelope = read(key)
    statement = json.loads(base64.b64decode(envelope["payload"]))
    statement["predicate"]["buildDefinition"]["externalParameters"]["commit"] = "0" * 40
    envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    write(key, envelope)
    refused(verify(repo, sandbox_env, "snowflake"), "signature does not match")


def test_a_statement_for_another_ami_does_not_verify(sandbox_env, repo, signed):
    write(own_key(signed["snowflake"]), read(own_key(signed["base"])))
    refused(
        verify(repo, sandbox_env, "snowflake"),
        f"not {signed['snowflake']['ami_id']} in us-east-1",
    )


def test_a_statement_signed_by_another_key_does_not_verify(sandbox_env, repo, signed):
    key = own_key(signed["snowflake"])
    envelope = read(key)
    kms = aws_client("kms")
    other = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["Arn"]
    payload = base64.b64decode(envelope["payload"])
    kind = envelope["payloadType"].encode()
    message = b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)
    signature = kms.sign(
        KeyId=other, Message=message, MessageType="RAW", SigningAlgorithm="ECDSA_SHA_256"
    )["Signature"]
    envelope["signatures"] = [{"keyid": other, "sig": base64.b64encode(signature).decode()}]
    write(key, envelope)
    refused(verify(repo, sandbox_env, "snowflake"), "signature does not match")


def test_a_child_whose_parents_provenance_is_missing_does_not_verify(sandbox_env, repo, signed):
    aws_client("s3").delete_object(Bucket=BUCKET, Key=own_key(signed["base"]))
    refused(
        verify(repo, sandbox_env, "snowflake"),
        f"The provenance of base ({signed['base']['ami_id']} in us-east-1), the ancestor of "
        f"snowflake {signed['snowflake']['ami_id']},",
        "does not exist",
    )


def test_a_build_replaced_by_a_rebuild_of_its_fingerprint_still_verifies(sandbox_env, repo, signed):
    """A forced rebuild (or one after expiry) makes a second build of the same fingerprint: the
    first keeps its own statement, and a child built on it still verifies through it."""
    old_base, old_child = signed["base"], signed["snowflake"]
    proc = run_bridge(["build", "base", "--force", "--repo", str(repo.path), "--json"], sandbox_env)
    assert proc.code == 0, proc.stderr
    new_base = json.loads(proc.stdout)["base"]
    assert new_base["fingerprint"] == old_base["fingerprint"]
    assert new_base["ami_id"] != old_base["ami_id"]
    for ami in (old_base["ami_id"], new_base["ami_id"]):
        proc = verify(repo, sandbox_env, ami)
        assert proc.code == 0, proc.stderr
        assert proc.stdout.splitlines()[1].startswith(f"verified base {ami}")
    proc = verify(repo, sandbox_env, old_child["ami_id"])  # built on the old base
    assert proc.code == 0, proc.stderr
    assert proc.stdout.splitlines()[2].startswith(f"verified base {old_base['ami_id']}")
    # Beside the manifest: the newest build, as the manifest describes it.
    newest = json.loads(
        base64.b64decode(read(envelope_key("base", new_base["fingerprint"]))["payload"])
    )
    assert newest["subject"][0]["name"].endswith(f":image/{new_base['ami_id']}")


@pytest.mark.parametrize("wrong", ["a typo", "an encryption key"])
def test_a_key_that_cannot_sign_is_refused_before_anything_is_built(
    sandbox_env, repo, packer, wrong
):
    kms_key()
    if wrong == "a typo":
        key, said = ALIAS[:-1], "does not exist"
    else:
        key = aws_client("kms").create_key(KeyUsage="ENCRYPT_DECRYPT")["KeyMetadata"]["KeyId"]
        said = "its usage is ENCRYPT_DECRYPT"
    data = repo.catalog()
    data["provenance"] = {"key": key}
    repo.set_catalog(data)
    repo.commit("a provenance key that cannot sign")
    proc = run_bridge(["build", "base", "--repo", str(repo.path)], sandbox_env)
    refused(proc, f"provenance key {key}", said, "nothing was built")
    # Nothing half-written: no image (an unsigned one would be found and never signed), no
    # manifest, no lease.
    assert own_images() == []
    assert aws_client("s3").list_objects_v2(Bucket=BUCKET).get("KeyCount", 0) == 0


def test_the_statement_of_another_build_of_the_same_fingerprint_does_not_verify(
    sandbox_env, sandbox_server, repo, signed, tmp_path
):
    """A forced rebuild makes a second image of the same fingerprint: the first build's
    statement, signed by the same key and stating the same fingerprint, still names another
    AMI, so put in place of the second's it does not vouch for the second image."""
    old = signed["base"]
    proc = run_bridge(["build", "base", "--force", "--repo", str(repo.path), "--json"], sandbox_env)
    assert proc.code == 0, proc.stderr
    new = json.loads(proc.stdout)["base"]
    assert new["fingerprint"] == old["fingerprint"] and new["ami_id"] != old["ami_id"]
    first = read(own_key(old))

    # Where the new image's tag points.
    (image,) = [i for i in own_images() if i["ImageId"] == new["ami_id"]]
    assert tags_of(image)[model.TAG_PROVENANCE] == f"s3://{BUCKET}/{own_key(new)}"
    own = read(own_key(new))
    write(own_key(new), first)
    refused(verify(repo, sandbox_env, new["ami_id"]), f"not {new['ami_id']} in us-east-1")
    refused(verify(repo, sandbox_env, "base"), f"not {new['ami_id']} in us-east-1")
    write(own_key(new), own)
    assert verify(repo, sandbox_env, new["ami_id"]).code == 0

    # Beside the manifest, where a workload account (no tags, no KMS) looks.
    public = aws_client("kms").get_public_key(KeyId=ALIAS)["PublicKey"]
    (tmp_path / "provenance.der").write_bytes(public)
    consumer = {
        **sandbox_env,
        **sandbox_server.env(account=OTHER_ACCOUNT),
        "AMI_BRIDGE_STATE_DIR": str(tmp_path / "consumer"),
    }
    args = ["base", "--owners", ACCOUNT, "--public-key", str(tmp_path / "provenance.der")]
    assert verify(repo, consumer, *args).code == 0
    write(envelope_key("base", new["fingerprint"]), first)
    refused(verify(repo, consumer, *args), f"not {new['ami_id']} in us-east-1")


def test_require_provenance_holds_on_channel_queries(sandbox_env, repo, signed):
    """A channel is how workload accounts consume images: with require_provenance, the image
    the channel holds must verify (by its tag, or the statement beside its manifest); an image
    nobody signed fails the query."""
    from testing.bridge import external

    assert run_bridge(["promote", "base", "prod", "--repo", str(repo.path)], sandbox_env).code == 0
    query = {
        "definition": "base",
        "channel": "prod",
        "catalog_id": "example",
        "region": "us-east-1",
        "require_provenance": "true",
        "provenance_key": ALIAS,
    }
    ok = external(sandbox_env, query)
    assert ok.code == 0, ok.stderr
    assert json.loads(ok.stdout)["ami_id"] == signed["base"]["ami_id"]
    # As the ami_channel module asks (`external --module`, its variables' names).
    module = run_bridge(["external", "--module"], sandbox_env, stdin=json.dumps(query))
    assert module.code == 0, module.stderr
    keyless = external(sandbox_env, {k: v for k, v in query.items() if k != "provenance_key"})
    assert keyless.code == 1 and "needs `provenance_key`" in keyless.stderr
    # The channel pointed by hand at an image nobody signed, described as the base's build.
    ec2 = aws_client("ec2")
    instance = ec2.run_instances(ImageId=signed["base"]["ami_id"], MinCount=1, MaxCount=1)
    unsigned = ec2.create_image(
        InstanceId=instance["Instances"][0]["InstanceId"], Name="hand-made"
    )["ImageId"]
    fingerprint = signed["base"]["fingerprint"]
    aws_client("ssm").put_parameter(
        Name="/ami-chain/example/base/prod", Value=unsigned, Type="String", DataType="aws:ec2:image",
        Description=f"ami-chain base build x fingerprint {fingerprint}", Overwrite=True,
    )  # fmt: skip
    untold = external(sandbox_env, query)  # no tag, no bucket: where to look is unknown
    assert untold.code == 1 and "manifest_bucket" in untold.stderr
    failed = external(
        sandbox_env, {**query, "manifest_bucket": BUCKET, "manifest_prefix": "images"}
    )
    assert failed.code == 1 and "does not verify" in failed.stderr, failed.stderr
    assert unsigned in failed.stderr
    without = external(sandbox_env, {k: v for k, v in query.items() if "provenance" not in k})
    assert without.code == 0  # only require_provenance asks


def test_a_switched_catalog_key_verifies_only_against_itself_and_a_pinned_key_refuses_it(
    sandbox_env, repo, signed
):
    """The trust root moves with the repository unless it is pinned: a commit that switches
    `provenance.key`, then a rebuild, verifies with the catalog's (new) key, and `verify --key`
    with the old one refuses it; each success says which key it trusted."""
    pinned = verify(repo, sandbox_env, "base", "--key", ALIAS)
    assert pinned.code == 0, pinned.stderr
    assert pinned.stdout.splitlines()[0] == f"trusting the KMS key {ALIAS} (--key)"
    kms = aws_client("kms")
    other = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["Arn"]
    kms.create_alias(AliasName="alias/someone-else", TargetKeyId=other)
    data = repo.catalog()
    data["provenance"] = {"key": "alias/someone-else"}
    repo.set_catalog(data)
    change = f"provenance.key changed from {ALIAS} to alias/someone-else"
    # Reported as a trust change before it is committed (a pre-commit hook) and after (CI).
    for when in ("(uncommitted)", "at commit "):
        checked = run_bridge(["check", "--repo", str(repo.path)], sandbox_env)
        assert checked.code == 0, checked.stderr
        assert f"trust change: {change} {when}" in " ".join(checked.stderr.split())
        if when == "(uncommitted)":
            repo.commit("switch the provenance key")
    switched = repo.git("rev-parse", "HEAD").strip()
    rebuilt = run_bridge(["build", "base", "--force", "--repo", str(repo.path)], sandbox_env)
    assert rebuilt.code == 0, rebuilt.stderr
    moved = verify(repo, sandbox_env, "base")
    assert moved.code == 0, moved.stderr
    assert "alias/someone-else (the catalog's provenance.key at this commit)" in moved.stdout
    assert f"trust change: {change} at commit {switched[:12]}" in moved.stdout
    repo.write("README.md", "unrelated\n")
    repo.commit("an unrelated change")
    quiet = run_bridge(["check", "--repo", str(repo.path)], sandbox_env)
    assert quiet.code == 0 and "trust change" not in quiet.stderr, quiet.stderr
    refused = verify(repo, sandbox_env, "base", "--key", ALIAS)
    assert refused.code == 1 and "its signature does not match" in refused.stderr
    junk = repo.path / "junk.pem"
    junk.write_text("not a key\n")
    unreadable = verify(repo, sandbox_env, "base", "--public-key", str(junk))
    assert unreadable.code == 1 and "is not a public key" in unreadable.stderr


def test_the_statement_names_the_repository_by_its_remote(sandbox_env, repo, packer):
    """The git dependency is the repository's `origin` URL (https, without the credentials a
    CI clone's URL may carry), not the catalog's ID."""
    kms_key()
    repo.git("remote", "add", "origin", "https://ci-token@git.example.com/platform/images.git")
    data = repo.catalog()
    data["provenance"] = {"key": ALIAS}
    repo.set_catalog(data)
    repo.commit("signed")
    proc = run_bridge(["build", "base", "--repo", str(repo.path), "--json"], sandbox_env)
    assert proc.code == 0, proc.stderr
    base = json.loads(proc.stdout)["base"]
    statement = json.loads(base64.b64decode(read(own_key(base))["payload"]))
    (source,) = [
        d for d in statement["predicate"]["buildDefinition"]["resolvedDependencies"]
        if "gitCommit" in d.get("digest", {})
    ]  # fmt: skip
    assert source["uri"] == f"git+https://git.example.com/platform/images@{base['git_commit']}"
    assert "ci-token" not in json.dumps(statement)


@pytest.mark.parametrize("how", ["literal", "variable"])
def test_a_root_with_a_fixed_source_ami_names_it_as_a_dependency(sandbox_env, repo, packer, how):
    """A root that names its upstream image outright (`source_ami`, literally or through a
    variable's default) lists it as its `source-ami` dependency, as a tracked filter's pick is."""
    kms_key()
    ec2 = aws_client("ec2")
    upstream = ec2.describe_images(
        Owners=["099720109477"],
        Filters=[{"Name": "name", "Values": ["ubuntu/images/hvm-ssd/ubuntu-focal-20.04-amd64-*"]}],
    )["Images"][0]["ImageId"]
    template = json.loads((repo.path / "base/base.json").read_text())
    builder = template["builders"][0]
    del builder["source_ami_filter"]
    if how == "literal":
        builder["source_ami"] = upstream
    else:
        template["variables"]["upstream"] = upstream
        builder["source_ami"] = "{{user `upstream`}}"
    repo.write("base/base.json", json.dumps(template, indent=2))
    data = repo.catalog()
    data["provenance"] = {"key": ALIAS}
    repo.set_catalog(data)
    repo.commit("a fixed upstream image")
    proc = run_bridge(["build", "base", "--repo", str(repo.path), "--json"], sandbox_env)
    assert proc.code == 0, proc.stderr
    base = json.loads(proc.stdout)["base"]
    statement = json.loads(base64.b64decode(read(own_key(base))["payload"]))
    named = [
        d["uri"]
        for d in statement["predicate"]["buildDefinition"]["resolvedDependencies"]
        if d.get("name") == "source-ami"
    ]
    assert named == [f"ec2:us-east-1:{upstream}"]
