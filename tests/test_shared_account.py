"""Several catalogs in one account (ownership.py): each counts, changes and deletes only its own
images, and images another account may be running are never deleted from under it."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import boto3

from bridge import model
from bridge.aws.share import marker
from bridge.sandbox import BASE_IMAGE, OTHER_ACCOUNT, access_key
from testing.bridge import external, run_bridge
from testing.faultproxy import DENIED, FaultProxy
from testing.git import make_repo
from testing.sandbox import aws_client, fake_build, own_images, recycle_bin, tags_of

EAST, WEST = "us-east-1", "eu-west-1"


def catalog(tmp_path, name: str, **settings):
    """A repository of its own with the example's definitions, cloned from its own origin;
    `settings` go into its catalog (the example's `id` is removed: each catalog's ID is derived
    from its repository's origin)."""
    repo = make_repo(tmp_path / name)
    repo.git("remote", "add", "origin", f"git@github.com:acme/{name}.git")
    data = repo.catalog()
    data.pop("id", None)
    data.update(settings)
    repo.set_catalog(data)
    repo.commit(f"{name}'s catalog")
    return repo


def bridge(repo, env, *args: str):
    proc = run_bridge([*args, "--repo", str(repo.path)], env)
    return proc


def build(repo, env, *names: str) -> dict:
    proc = bridge(repo, env, "build", *(names or ["--all"]), "--json")
    assert proc.code == 0, proc.stderr
    return json.loads(proc.stdout)


def commit_change(repo, text: str) -> None:
    baseline = repo.path / "base" / "tasks" / "baseline.sh"
    baseline.write_text(baseline.read_text() + f"echo {text}\n")
    repo.commit(text)


def images_of(region: str) -> set[str]:
    return {i["ImageId"] for i in own_images(region)}


def test_gc_in_one_catalog_never_touches_anothers_images(sandbox_env, tmp_path, packer):
    recycle_bin((EAST, WEST))
    a = catalog(tmp_path, "a", regions=[EAST])
    b = catalog(tmp_path, "b", regions=[EAST, WEST])
    b_current = {n: json.loads(r["amis_json"]) for n, r in build(b, sandbox_env).items()}
    for text in ("one", "two", "three"):
        commit_change(a, text)
        build(a, sandbox_env, "base")
    a_tag = {tags_of(i).get(model.TAG_CATALOG) for i in own_images(EAST)} - {None}
    assert len(a_tag) == 2  # two catalogs, told apart
    dry = bridge(a, sandbox_env, "gc", "--min-age-hours", "0", "--keep", "0", "--json")
    assert dry.code == 0, dry.stderr
    listed = {ami for b_ in json.loads(dry.stdout)["builds"] for ami in b_["images"].values()}
    b_amis = {ami for amis in b_current.values() for ami in amis.values()}
    assert not listed & b_amis  # never even a candidate
    applied = bridge(a, sandbox_env, "gc", "--min-age-hours", "0", "--keep", "0", "--apply")
    assert applied.code == 0, applied.stderr
    assert b_amis <= images_of(EAST) | images_of(WEST)
    status = bridge(b, sandbox_env, "status", "--json")
    assert {n: r["state"] for n, r in json.loads(status.stdout).items()} == {
        "base": "found",
        "snowflake": "found",
    }


def test_identical_catalogs_build_their_own_images_and_never_undo_each_other(
    sandbox_env, tmp_path, packer
):
    """Byte-identical content, one shared with an account and one not: each has its own image,
    its own launch permissions, manifest and commit."""
    shared = catalog(tmp_path, "shared", share=[OTHER_ACCOUNT])
    private = catalog(tmp_path, "private")
    first = build(shared, sandbox_env, "base")["base"]
    # One manifest prefix for both: the second would overwrite the first's record; refused
    # before anything is built.
    refused = bridge(private, sandbox_env, "build", "base")
    assert refused.code == 1 and "Give each catalog its own manifest prefix" in refused.stderr
    assert len(own_images(EAST)) == 1
    data = private.catalog()
    data["manifest"] = {**data["manifest"], "prefix": "private-images"}
    private.set_catalog(data)
    private.commit("its own manifest prefix")
    second = build(private, sandbox_env, "base")["base"]
    assert first["fingerprint"] == second["fingerprint"]  # the same content
    assert first["ami_id"] != second["ami_id"]  # each catalog's own image
    again = build(shared, sandbox_env, "base")["base"]
    assert again["ami_id"] == first["ami_id"] and again["built"] == "false"
    ec2 = aws_client("ec2", EAST)
    permissions = ec2.describe_image_attribute(
        ImageId=first["ami_id"], Attribute="launchPermission"
    )
    assert permissions["LaunchPermissions"] == [{"UserId": OTHER_ACCOUNT}]
    for result, repo in ((first, shared), (second, private)):
        assert result["git_commit"] == repo.git("rev-parse", "HEAD").strip()
        manifest = json.loads(bridge(repo, sandbox_env, "manifest", "base").stdout)
        assert manifest["amis"] == {EAST: result["ami_id"]}


def test_revoke_accepts_only_a_build_of_the_named_definition_in_this_catalog(
    sandbox_env, tmp_path, packer
):
    mine = catalog(tmp_path, "mine")
    theirs = catalog(tmp_path, "theirs")
    built = build(theirs, sandbox_env, "base")["base"]
    public = bridge(mine, sandbox_env, "revoke", "base", "--reason", "x", "--ami", BASE_IMAGE)
    assert public.code == 1 and "is not a build of 'base'" in public.stderr
    other = bridge(mine, sandbox_env, "revoke", "base", "--reason", "x", "--ami", built["ami_id"])
    assert other.code == 1 and "another catalog" in other.stderr
    (image,) = aws_client("ec2").describe_images(ImageIds=[built["ami_id"]])["Images"]
    assert model.TAG_REVOKED_AT not in tags_of(image) and "DeprecationTime" not in image
    (upstream,) = aws_client("ec2").describe_images(ImageIds=[BASE_IMAGE])["Images"]
    assert "DeprecationTime" not in upstream


def test_the_sandbox_refuses_deprecating_an_image_another_account_owns(sandbox_env):
    ec2 = aws_client("ec2", EAST)
    try:
        ec2.enable_image_deprecation(ImageId=BASE_IMAGE, DeprecateAt="2099-01-01T00:00:00Z")
    except ec2.exceptions.ClientError as exc:
        assert exc.response["Error"]["Code"] == "AuthFailure"
    else:
        raise AssertionError("a non-owner deprecated an image")


def test_a_shared_image_a_workload_account_runs_survives_gc(sandbox_env, repo, packer):
    """gc cannot see another account's instances; EC2's lastLaunchedTime (launches by any
    account) keeps an image launched within --launched-within days."""
    data = repo.catalog()
    data["share"] = [OTHER_ACCOUNT]
    repo.set_catalog(data)
    repo.commit("shared with a workload account")
    first = build(repo, sandbox_env)["snowflake"]
    workload = boto3.client(
        "ec2",
        region_name=EAST,
        aws_access_key_id=access_key(OTHER_ACCOUNT),
        aws_secret_access_key="sandbox",
    )
    workload.run_instances(ImageId=first["ami_id"], MinCount=1, MaxCount=1)
    commit_change(repo, "patched")
    second = build(repo, sandbox_env)["snowflake"]
    assert second["ami_id"] != first["ami_id"]
    flags = ["gc", "--min-age-hours", "0", "--keep", "0", "--json"]
    # Without the window, the old image would start leaving service: nothing this account can
    # see uses it.
    blind = json.loads(bridge(repo, sandbox_env, *flags, "--launched-within", "0").stdout)
    actions = {b["images"][EAST]: b["action"] for b in blind["builds"]}
    assert actions[first["ami_id"]] == "deprecate"
    applied = bridge(repo, sandbox_env, *flags, "--apply")
    assert applied.code == 0, applied.stderr
    kept = {b["images"][EAST]: b for b in json.loads(applied.stdout)["builds"]}
    assert kept[first["ami_id"]]["action"] == "keep"
    assert any("lastLaunchedTime" in r for r in kept[first["ami_id"]]["reasons"])
    assert first["ami_id"] in images_of(EAST)


def test_a_shared_image_whose_last_launch_cannot_be_read_is_kept(sandbox_env, sandbox_server, repo):
    """gc cannot see a workload account's instances, and here EC2 cannot say when the image was
    last launched (DescribeImageAttribute lastLaunchedTime fails): the image may be running
    somewhere, so gc keeps it and says why, while an unshared build as old is deleted."""
    recycle_bin((EAST, WEST))
    shared = fake_build("base", "old-shared")
    for region, ami in shared.items():
        ec2 = aws_client("ec2", region)
        ec2.modify_image_attribute(
            ImageId=ami, LaunchPermission={"Add": [{"UserId": OTHER_ACCOUNT}]}
        )
        ec2.create_tags(
            Resources=[ami], Tags=[{"Key": model.TAG_SHARED, "Value": marker([OTHER_ACCOUNT])}]
        )
    private = fake_build("base", "old-private")
    flags = ["gc", "--min-age-hours", "0", "--keep", "0", "--retire-days", "0", "--json"]

    def block(method, path, headers, body):
        return b"Action=DescribeImageAttribute" in body and b"lastLaunchedTime" in body

    # Refused, as for credentials without the permission (a 503 would be the same to gc, after
    # botocore's retries).
    with FaultProxy(sandbox_server.endpoint, rate=0.0, block=block, blocked=DENIED) as proxy:
        env = {**sandbox_env, "AWS_ENDPOINT_URL": proxy.endpoint}
        applied = bridge(repo, env, *flags, "--apply")
        assert proxy.counters.injected.get("blocked", 0) > 0
    assert applied.code == 0, applied.stderr
    fates = {b["build_id"]: b for b in json.loads(applied.stdout)["builds"]}
    assert fates["old-private"]["action"] == "deleted"
    assert fates["old-shared"]["action"] == "keep"
    assert any(
        "whose instances gc cannot see, and its last launch cannot be read" in r
        for r in fates["old-shared"]["reasons"]
    ), fates["old-shared"]["reasons"]
    for region, ami in shared.items():
        (image,) = aws_client("ec2", region).describe_images(ImageIds=[ami])["Images"]
        assert "DeprecationTime" not in image and image["State"] == "available"
        assert private[region] not in images_of(region)
    # Once EC2 can say (never launched), nothing keeps it.
    again = bridge(repo, sandbox_env, *flags, "--apply")
    assert again.code == 0, again.stderr
    assert shared[EAST] not in images_of(EAST) and shared[WEST] not in images_of(WEST)


def test_built_images_are_protected_from_deregistration_and_gc_lifts_it_to_delete(
    sandbox_env, repo, packer
):
    recycle_bin((EAST, WEST))
    data = repo.catalog()
    data["regions"] = [EAST, WEST]
    repo.set_catalog(data)
    repo.commit("two regions")
    first = build(repo, sandbox_env, "base")["base"]
    amis = json.loads(first["amis_json"])
    for region, ami in amis.items():  # the build and its copy
        ec2 = aws_client("ec2", region)
        (found,) = ec2.describe_images(ImageIds=[ami])["Images"]
        assert found["DeregistrationProtection"] == "enabled"
        try:
            ec2.deregister_image(ImageId=ami)
        except ec2.exceptions.ClientError as exc:
            assert exc.response["Error"]["Code"] == "OperationNotPermitted"
        else:
            raise AssertionError("a protected image was deregistered")
    commit_change(repo, "patched")
    build(repo, sandbox_env, "base")
    gc = bridge(repo, sandbox_env, "gc", "--min-age-hours", "0", "--keep", "0", "--apply")
    assert gc.code == 0, gc.stderr
    assert amis[EAST] not in images_of(EAST) and amis[WEST] not in images_of(WEST)


def test_a_catalog_may_leave_its_images_unprotected(sandbox_env, repo, packer):
    data = repo.catalog()
    data["protect"] = False
    repo.set_catalog(data)
    repo.commit("no protection")
    ami = build(repo, sandbox_env, "base")["base"]["ami_id"]
    (found,) = aws_client("ec2").describe_images(ImageIds=[ami])["Images"]
    assert found.get("DeregistrationProtection", "disabled") == "disabled"


def test_gc_sees_a_copy_in_a_region_the_catalog_does_not_list(sandbox_env, repo, packer):
    """A build copied by hand to another region, where an instance runs it: the build is in
    use, so none of its images is deleted."""
    old = build(repo, sandbox_env, "base")["base"]["ami_id"]
    far = aws_client("ec2", "ap-southeast-2")
    copy = far.copy_image(SourceImageId=old, SourceRegion=EAST, Name="by-hand", CopyImageTags=True)[
        "ImageId"
    ]
    far.run_instances(ImageId=copy, MinCount=1, MaxCount=1)
    commit_change(repo, "patched")
    build(repo, sandbox_env, "base")
    gc = bridge(repo, sandbox_env, "gc", "--min-age-hours", "0", "--keep", "0", "--json", "--apply")
    assert gc.code == 0, gc.stderr
    (kept,) = [b for b in json.loads(gc.stdout)["builds"] if old in b["images"].values()]
    assert kept["action"] == "keep" and kept["images"]["ap-southeast-2"] == copy
    assert old in images_of(EAST)


def retiring_since(ami: str, stage: str, days: float) -> None:
    """Record that the image's retirement reached `stage` `days` ago: the time gc waits between
    steps, passed without waiting (the tag is the retirement's state)."""
    at = datetime.now(timezone.utc) - timedelta(days=days)
    aws_client("ec2").create_tags(
        Resources=[ami],
        Tags=[{"Key": model.TAG_RETIRING, "Value": f"{stage} {at:%Y-%m-%dT%H:%M:%SZ}"}],
    )


def shared_then_replaced(repo, env) -> tuple[str, Callable[[], dict]]:
    """The base shared with a workload account, built, then replaced by a patched build: the
    old build's AMI, and a function that runs `gc --apply` and returns the old build's row."""
    recycle_bin()
    data = repo.catalog()
    data["share"] = [OTHER_ACCOUNT]
    repo.set_catalog(data)
    repo.commit("shared with a workload account")
    old = build(repo, env, "base")["base"]["ami_id"]
    commit_change(repo, "patched")
    build(repo, env, "base")
    flags = ["gc", "--min-age-hours", "0", "--keep", "0", "--json", "--apply"]

    def fate() -> dict:
        proc = bridge(repo, env, *flags)
        assert proc.code == 0, proc.stderr
        (row,) = [b for b in json.loads(proc.stdout)["builds"] if old in b["images"].values()]
        return row

    return old, fate


def test_a_shared_build_leaves_service_in_steps_other_accounts_can_see(sandbox_env, repo, packer):
    old, fate = shared_then_replaced(repo, sandbox_env)
    ec2 = aws_client("ec2")
    assert fate()["action"] == "deprecated"  # first, a step the workload account sees
    (image,) = ec2.describe_images(ImageIds=[old])["Images"]
    assert "DeprecationTime" in image
    assert tags_of(image)[model.TAG_RETIRING].startswith("deprecated ")
    waiting = fate()
    assert waiting["action"] == "keep" and "retiring: deprecated at" in waiting["reasons"][0]
    retiring_since(old, "deprecated", 8)
    assert fate()["action"] == "disabled"  # a week on: nobody can launch it
    assert ec2.describe_images(ImageIds=[old])["Images"] == []
    (image,) = ec2.describe_images(ImageIds=[old], IncludeDisabled=True)["Images"]
    assert image["State"] == "disabled"
    permissions = ec2.describe_image_attribute(ImageId=old, Attribute="launchPermission")
    assert permissions["LaunchPermissions"] == []
    snapshot = image["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]
    volumes = ec2.describe_snapshot_attribute(
        SnapshotId=snapshot, Attribute="createVolumePermission"
    )["CreateVolumePermissions"]
    assert volumes == []  # nor can its disk be copied
    retiring_since(old, "disabled", 8)
    assert fate()["action"] == "deleted"  # another week on
    assert ec2.describe_images(ImageIds=[old], IncludeDisabled=True)["Images"] == []


def test_a_workload_account_never_gets_exit_0_with_no_image(sandbox_env, sandbox_server, repo,
                                                             packer, tmp_path):  # fmt: skip
    """A region's copy not shared with the workload account: `external` with the default
    on_missing fails saying so, as `resolve` does, instead of answering an empty `ami_id`;
    with on_missing=report it answers the state."""
    from bridge.sandbox import ACCOUNT

    data = repo.catalog()
    data["share"] = [OTHER_ACCOUNT]
    data["regions"] = ["us-east-1", "eu-west-1"]
    repo.set_catalog(data)
    repo.commit("shared in two regions")
    built = run_bridge(["build", "base", "--repo", str(repo.path), "--json"], sandbox_env)
    assert built.code == 0, built.stderr
    west = json.loads(json.loads(built.stdout)["base"]["amis_json"])["eu-west-1"]
    aws_client("ec2", "eu-west-1").modify_image_attribute(
        ImageId=west, LaunchPermission={"Remove": [{"UserId": OTHER_ACCOUNT}]}
    )
    consumer = {
        **sandbox_env,
        **sandbox_server.env(account=OTHER_ACCOUNT),
        "AMI_BRIDGE_STATE_DIR": str(tmp_path / "consumer"),
    }
    query = {"definition": "base", "repo": str(repo.path), "owners": ACCOUNT, "region": "eu-west-1"}
    proc = external(consumer, query)
    assert proc.code == 3 and proc.stdout == "", proc.stdout  # missing, as `resolve` says
    assert "its copy in eu-west-1 is missing or not shared" in proc.stderr
    assert "Traceback" not in proc.stderr
    reported = external(consumer, {**query, "on_missing": "report"})
    assert reported.code == 0, reported.stderr
    answer = json.loads(reported.stdout)
    assert answer["ami_id"] == "" and answer["found"] == "false"
    assert answer["state"] in {"partial", "missing"}


def test_revoke_ami_refuses_an_image_another_account_owns(sandbox_env, repo, packer):
    """`owners` = self means this account's images: an image another account shared with this
    one (or made public) is not this catalog's to revoke, whatever the caller can see of it."""
    mine = build(repo, sandbox_env)["base"]
    workload = boto3.client(
        "ec2",
        region_name=EAST,
        aws_access_key_id=access_key(OTHER_ACCOUNT),
        aws_secret_access_key="sandbox",
    )
    (reservation,) = workload.run_instances(ImageId=BASE_IMAGE, MinCount=1, MaxCount=1)["Instances"]
    theirs = workload.create_image(InstanceId=reservation["InstanceId"], Name="theirs")["ImageId"]
    workload.create_tags(
        Resources=[theirs],
        Tags=[
            {"Key": model.TAG_DEFINITION, "Value": "base"},
            {"Key": "SHA", "Value": mine["fingerprint"]},
        ],
    )
    workload.modify_image_attribute(ImageId=theirs, LaunchPermission={"Add": [{"Group": "all"}]})
    proc = bridge(repo, sandbox_env, "revoke", "base", "--ami", theirs, "--reason", "not ours")
    assert proc.code == 1
    said = " ".join(proc.stderr.split())
    assert f"No image {theirs} of owners self exists" in said, said
    (image,) = workload.describe_images(ImageIds=[theirs])["Images"]
    assert not set(model.REVOCATION_TAGS) & {t["Key"] for t in image.get("Tags", [])}


def test_a_retiring_build_back_in_use_is_reinstated(sandbox_env, repo, packer):
    """gc deprecated a shared build it no longer saw in use; a revert makes it current again: the
    next gc lifts the deprecation and the retirement, so other accounts stop seeing it go."""
    old, fate = shared_then_replaced(repo, sandbox_env)
    assert fate()["action"] == "deprecated"
    repo.git("revert", "--no-edit", "HEAD")  # the patch undone: the old build is current again
    resolved = bridge(repo, sandbox_env, "resolve", "base", "--json")
    assert json.loads(resolved.stdout)["base"]["ami_id"] == old, resolved.stderr
    back = fate()
    assert back["action"] == "reinstated" and "back in use" in " ".join(back["reasons"])
    (image,) = aws_client("ec2").describe_images(ImageIds=[old])["Images"]
    assert "DeprecationTime" not in image and model.TAG_RETIRING not in tags_of(image)
    assert fate()["action"] == "keep"


def test_an_image_shared_by_hand_that_another_account_launched_survives_gc(
    sandbox_env, repo, packer
):
    """Someone shared an image with the console, not through the catalog's `share`: gc cannot
    see that account's instances either, so it reads the image's last launch as it does for the
    catalog's own shares, and keeps it."""
    recycle_bin()
    first = build(repo, sandbox_env, "base")["base"]["ami_id"]
    aws_client("ec2").modify_image_attribute(
        ImageId=first, LaunchPermission={"Add": [{"UserId": OTHER_ACCOUNT}]}
    )
    workload = boto3.client(
        "ec2",
        region_name=EAST,
        aws_access_key_id=access_key(OTHER_ACCOUNT),
        aws_secret_access_key="sandbox",
    )
    workload.run_instances(ImageId=first, MinCount=1, MaxCount=1)
    commit_change(repo, "patched")
    build(repo, sandbox_env, "base")
    flags = ["gc", "--min-age-hours", "0", "--keep", "0", "--retire-days", "0", "--json"]
    applied = bridge(repo, sandbox_env, *flags, "--apply")
    assert applied.code == 0, applied.stderr
    (row,) = [b for b in json.loads(applied.stdout)["builds"] if first in b["images"].values()]
    assert row["action"] == "keep", row
    assert any(
        f"shared with {OTHER_ACCOUNT} (by hand, not through the catalog)" in r
        for r in row["reasons"]
    ), row["reasons"]
    assert first in images_of(EAST)
