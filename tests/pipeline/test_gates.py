"""Test gates (gates.py), with real Packer against the sandbox: a new image is a candidate until
its definition's tests pass, never resolvable meanwhile, rejected when one fails, and promoted
only with every test (and every check --require names) passed."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from bridge import model
from bridge.masking import MASK
from testing.bridge import run_bridge
from testing.faultproxy import FaultProxy, creation_dates
from testing.sandbox import BUCKET, aws_client, manifest_keys, own_images, tags_of

SMOKE = """#!/bin/sh
# What a test is told, and what the bridge says of the image while the test runs.
printf '%s\\n' "$AMI_BRIDGE_AMI" "$AMI_BRIDGE_FINGERPRINT" "$AMI_BRIDGE_REGION" \\
  "$AMI_BRIDGE_BUILD_ID" "$AMI_BRIDGE_DEFINITION" "$AMI_BRIDGE_AMIS" "$(pwd)" > "$RECORD"
"$PYTHON" -m bridge resolve base --on-missing report --json --repo "$REPO" > "$RECORD.resolve"
echo "checking $AMI_BRIDGE_AMI"
if [ -n "$BREAK_IT" ]; then
  echo "E: nginx is not installed on $AMI_BRIDGE_AMI" >&2
  exit 3
fi
"""


def with_tests(repo, *tests: dict, **settings) -> None:
    """The base definition with `tests`, and tests/smoke.sh in the repository."""
    path = repo.write("tests/smoke.sh", SMOKE)
    path.chmod(0o755)
    data = repo.catalog()
    data["definitions"]["base"]["tests"] = list(tests)
    data.update(settings)
    repo.set_catalog(data)
    repo.commit("base has tests")


SMOKE_TEST = {"name": "smoke", "command": ["tests/smoke.sh", "--quick"]}


def env_for(sandbox_env, repo, tmp_path, **extra) -> dict:
    return {
        **sandbox_env,
        "RECORD": str(tmp_path / "record"),
        "PYTHON": sys.executable,
        "REPO": str(repo.path),
        **extra,
    }


def snapshots() -> set[str]:
    ec2 = aws_client("ec2")
    return {s["SnapshotId"] for s in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]}


def build(repo, env, *names: str):
    return run_bridge(["build", *(names or ["base"]), "--repo", str(repo.path), "--json"], env)


def test_a_passing_test_sees_a_candidate_nobody_can_resolve_then_the_image_publishes(
    sandbox_env, repo, packer, tmp_path
):
    with_tests(repo, SMOKE_TEST)
    env = env_for(sandbox_env, repo, tmp_path)
    proc = build(repo, env)
    assert proc.code == 0, proc.stderr
    result = json.loads(proc.stdout)["base"]
    told = (tmp_path / "record").read_text().splitlines()
    ami, fingerprint, region, build_id, definition, amis, cwd = told
    assert (ami, fingerprint, region, build_id, definition) == (
        result["ami_id"],
        result["fingerprint"],
        "us-east-1",
        result["build_id"],
        "base",
    )
    assert json.loads(amis) == {"us-east-1": result["ami_id"]}
    assert cwd != str(repo.path)  # the exported tree, not the working tree
    # While the test ran, the image was a candidate: the bridge found nothing to use.
    during = json.loads((tmp_path / "record.resolve").read_text())["base"]
    assert during["found"] == "false" and during["ami_id"] == ""
    (image,) = [i for i in own_images() if i["ImageId"] == result["ami_id"]]
    tags = tags_of(image)
    assert tags[model.TAG_TESTS] == "smoke" and model.TAG_CANDIDATE not in tags
    (key,) = [k for k in manifest_keys() if k.endswith(f"{result['fingerprint']}.json")]
    manifest = json.loads(aws_client("s3").get_object(Bucket=BUCKET, Key=key)["Body"].read())
    (recorded,) = manifest["tests"]
    assert recorded["name"] == "smoke" and recorded["passed"] is True
    assert recorded["command"] == ["tests/smoke.sh", "--quick"]


def tags_itself(repo) -> None:
    """The base's template tags its image with the fingerprint itself, as the seed's do
    (`"SHA": "{{user `ami_sha`}}"` in the builder's tags)."""
    template = json.loads((repo.path / "base" / "base.json").read_text())
    template["variables"]["ami_sha"] = ""
    template["builders"][0]["tags"] = {"SHA": "{{user `ami_sha`}}", "Name": "base"}
    repo.write("base/base.json", json.dumps(template, indent=2))


@pytest.mark.parametrize("passes", [True, False])
def test_an_image_that_tags_itself_with_its_fingerprint_is_a_candidate_until_it_passes(
    sandbox_env, repo, packer, tmp_path, passes
):
    """Packer puts the fingerprint tag on the image before any test runs: the image is still
    nobody's to resolve while its tests run, and a rejected one (kept) never resolves."""
    tags_itself(repo)
    with_tests(repo, SMOKE_TEST, keep_rejected=True)
    env = env_for(sandbox_env, repo, tmp_path, **({} if passes else {"BREAK_IT": "1"}))
    proc = build(repo, env)
    during = json.loads((tmp_path / "record.resolve").read_text())["base"]
    assert during["found"] == "false" and during["ami_id"] == ""
    (image,) = own_images()
    tags = tags_of(image)
    if passes:
        assert proc.code == 0, proc.stderr
        assert tags["SHA"] == json.loads(proc.stdout)["base"]["fingerprint"]
        assert model.TAG_CANDIDATE not in tags and tags[model.TAG_TESTS] == "smoke"
        return
    assert proc.code == 1 and "kept, tagged ami-chain:rejected" in proc.stderr
    assert "SHA" not in tags and model.TAG_REJECTED in tags  # the error's word holds
    assert run_bridge(["resolve", "base", "--repo", str(repo.path)], env).code == 3
    status = run_bridge(["status", "--repo", str(repo.path), "--json"], env)
    assert json.loads(status.stdout)["base"]["found"] == "false"


def test_a_failing_test_fails_the_build_with_its_output_and_leaves_nothing_to_resolve(
    sandbox_env, repo, packer, tmp_path
):
    with_tests(repo, SMOKE_TEST)
    env = env_for(sandbox_env, repo, tmp_path, BREAK_IT="1")
    snapshots_before = snapshots()
    proc = build(repo, env)
    assert proc.code == 1
    error = " ".join(proc.stderr.split())
    assert "failed its test 'smoke'" in error and "exited 3" in error
    assert "E: nginx is not installed on ami-" in error and "Traceback" not in error
    assert "deregistered" in error
    assert own_images() == []  # the candidate and its snapshots are gone
    assert snapshots() == snapshots_before
    assert [k for k in manifest_keys() if "/leases/" in k] == []
    assert manifest_keys() == []
    looked = run_bridge(["resolve", "base", "--repo", str(repo.path)], env)
    assert looked.code == 3


def test_a_rejected_image_may_be_kept_for_debugging_and_gc_deletes_it(
    sandbox_env, repo, packer, tmp_path
):
    with_tests(repo, SMOKE_TEST, keep_rejected=True, require_recycle_bin=False)
    env = env_for(sandbox_env, repo, tmp_path, BREAK_IT="1")
    proc = build(repo, env)
    assert proc.code == 1 and "kept, tagged ami-chain:rejected" in proc.stderr
    (kept,) = own_images()
    tags = tags_of(kept)
    assert tags[model.TAG_REJECTED].startswith("smoke failed ")
    assert "SHA" not in tags  # never resolvable
    assert run_bridge(["resolve", "base", "--repo", str(repo.path)], env).code == 3
    # The next attempt is planned with the same build ID; the rejected one keeps its own.
    fixed = build(repo, env_for(sandbox_env, repo, tmp_path))
    assert fixed.code == 0, fixed.stderr
    good = json.loads(fixed.stdout)["base"]
    assert tags[model.TAG_BUILD_ID] not in (good["build_id"], "")
    gc = run_bridge(
        ["gc", "--min-age-hours", "0", "--repo", str(repo.path), "--apply", "--json"], env
    )
    assert gc.code == 0, gc.stderr
    (row,) = [b for b in json.loads(gc.stdout)["builds"] if kept["ImageId"] in b["images"].values()]
    assert row["action"] == "deleted" and "rejected by its tests" in " ".join(row["reasons"])
    assert [i["ImageId"] for i in own_images()] == [good["ami_id"]]


def test_boots_launches_an_instance_of_the_candidate_and_terminates_it(
    sandbox_env, repo, packer, tmp_path
):
    with_tests(repo, {"name": "boots", "builtin": "boots", "instance_type": "t3.small"})
    proc = build(repo, sandbox_env)
    assert proc.code == 0, proc.stderr
    result = json.loads(proc.stdout)["base"]
    reservations = aws_client("ec2").describe_instances(
        Filters=[{"Name": f"tag:{model.TAG_CANDIDATE}", "Values": [result["build_id"]]}]
    )["Reservations"]
    (instance,) = [i for r in reservations for i in r["Instances"]]
    assert instance["ImageId"] == result["ami_id"] and instance["InstanceType"] == "t3.small"
    assert instance["State"]["Name"] == "terminated"
    (image,) = [i for i in own_images() if i["ImageId"] == result["ami_id"]]
    assert tags_of(image)[model.TAG_TESTS] == "boots"


def test_boots_fails_an_image_whose_instance_fails_the_status_checks(sandbox_env, repo, packer):
    """`boots` waits for EC2's status checks, not only for the instance to run: an image whose
    instance never becomes reachable (the sandbox's `sandbox:boot` tag) fails it, is
    deregistered, and its instance is terminated."""
    template = json.loads((repo.path / "base" / "base.json").read_text())
    template["builders"][0]["tags"] = {"sandbox:boot": "impaired"}
    repo.write("base/base.json", json.dumps(template, indent=2))
    with_tests(repo, {"name": "boots", "builtin": "boots", "timeout_seconds": 5})
    proc = build(repo, sandbox_env)
    assert proc.code == 1, proc.stdout
    assert "failed its test 'boots'" in proc.stderr and "status checks" in proc.stderr
    assert own_images() == []  # deregistered: nothing resolvable
    reservations = aws_client("ec2").describe_instances(
        Filters=[{"Name": f"tag:{model.TAG_CANDIDATE}", "Values": ["*"]}]
    )["Reservations"]
    (instance,) = [i for r in reservations for i in r["Instances"]]
    assert instance["State"]["Name"] == "terminated"


def test_promote_refuses_an_untested_image_and_one_missing_a_required_check(
    sandbox_env, repo, packer, tmp_path
):
    untested = build(repo, sandbox_env)
    assert untested.code == 0, untested.stderr
    # Tests added later are not in the fingerprint: the image stays, untested.
    with_tests(repo, SMOKE_TEST)
    promote = ["promote", "base", "prod", "--repo", str(repo.path)]
    refused = run_bridge(promote, sandbox_env)
    assert refused.code == 1 and "has not passed smoke" in refused.stderr
    assert "it passed no tests" in refused.stderr
    assert "`ami-bridge build base --force`" in " ".join(refused.stderr.split())  # how to fix it

    env = env_for(sandbox_env, repo, tmp_path)
    forced = run_bridge(["build", "base", "--force", "--repo", str(repo.path)], env)
    assert forced.code == 0, forced.stderr
    missing = run_bridge([*promote, "--require", "cve-scan"], env)
    assert missing.code == 1 and "has not passed cve-scan" in missing.stderr
    assert "has no test named cve-scan, so no build can pass it" in " ".join(missing.stderr.split())
    passed = run_bridge([*promote, "--require", "smoke"], env)
    assert passed.code == 0, passed.stderr


def test_a_forced_rebuild_made_in_the_same_second_as_the_build_it_replaces_is_the_one_used(
    sandbox_env, sandbox_server, repo, packer, tmp_path
):
    """EC2 gives an image's CreationDate in whole seconds, so a quick build and its forced
    rebuild can carry the same one (the proxy answers so for every image). The rebuild is what
    resolves, what promote checks and what gc keeps as the newest, whichever AMI ID sorts
    first."""
    # An hour ago: in the past for gc's ages, within any expiry.
    when = (datetime.now(timezone.utc) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    rewritten: list[int] = []
    same_second = creation_dates(lambda: when, rewritten)
    with FaultProxy(sandbox_server.endpoint, rate=0.0, rewrite=same_second) as proxy:
        env = env_for(
            sandbox_env,
            repo,
            tmp_path,
            AWS_ENDPOINT_URL=proxy.endpoint,
            AMI_BRIDGE_PACKER_EC2_ENDPOINT=sandbox_server.endpoint,
        )
        first = build(repo, env)
        assert first.code == 0, first.stderr
        with_tests(repo, SMOKE_TEST)
        # Builds in order, as (AMI ID, build ID). Rebuilt until the newest is the highest by
        # neither, so an order by either (on a tied date) would pick an older build.
        builds = [made_since([])]
        while builds[-1] in (max(builds), max(builds, key=lambda b: b[1])):
            assert len(builds) < 16, builds  # about 2.4 rebuilds on average
            forced = run_bridge(["build", "base", "--force", "--repo", str(repo.path)], env)
            assert forced.code == 0, forced.stderr
            builds.append(made_since(builds))
        amis = [ami for ami, _ in builds]
        resolved = run_bridge(["resolve", "base", "--json", "--repo", str(repo.path)], env)
        assert resolved.code == 0, resolved.stderr
        assert json.loads(resolved.stdout)["base"]["ami_id"] == amis[-1]
        promoted = run_bridge(
            ["promote", "base", "prod", "--require", "smoke", "--repo", str(repo.path)], env
        )
        assert promoted.code == 0, promoted.stderr
        assert amis[-1] in promoted.stdout
        # --keep 1 keeps the newest build (also current, and prod's): the older ones go.
        gc = ["gc", "--keep", "1", "--min-age-hours", "0", "--apply", "--unrecoverable"]
        swept = run_bridge([*gc, "--repo", str(repo.path)], env)
        assert swept.code == 0, swept.stderr
        assert [i["ImageId"] for i in own_images()] == [amis[-1]]
    assert sum(rewritten) > len(builds)  # the bridge saw every image in one second


def made_since(builds: list[tuple[str, str]]) -> tuple[str, str]:
    """The one image in the account that is not one of `builds`: (AMI ID, build ID)."""
    known = {ami for ami, _ in builds}
    (image,) = [i for i in own_images() if i["ImageId"] not in known]
    return image["ImageId"], tags_of(image)[model.TAG_BUILD_ID]


def test_a_test_that_runs_too_long_is_stopped_with_everything_it_started(
    sandbox_env, repo, packer, tmp_path
):
    # The test starts a process in the background (as a test starting a server does) and waits.
    record = tmp_path / "background.pid"
    waits = {
        "name": "slow",
        "command": ["sh", "-c", f"sleep 300 & echo $! > {record}; echo started; wait"],
        "timeout_seconds": 2,
    }
    with_tests(repo, waits)
    proc = build(repo, env_for(sandbox_env, repo, tmp_path))
    assert proc.code == 1
    error = " ".join(proc.stderr.split())
    assert "ran longer than 2 s (timeout_seconds) and was stopped" in error
    assert "started" in error  # its output so far
    pid = int(record.read_text())
    state = Path(f"/proc/{pid}/stat")
    # Killed with its test: gone, or a zombie its new parent has not reaped yet.
    assert not state.exists() or state.read_text().split(") ", 1)[1].startswith("Z")


def test_a_test_program_that_is_not_there_is_refused_before_anything_is_built(
    sandbox_env, repo, packer, tmp_path
):
    with_tests(repo, {"name": "smoke", "command": ["tests/smok.sh"]})  # smoke.sh is there
    for argv in (["check"], ["build", "base"]):
        proc = run_bridge([*argv, "--repo", str(repo.path)], env_for(sandbox_env, repo, tmp_path))
        assert proc.code == 1, argv
        error = " ".join(proc.stderr.split())
        assert "run programs the repository does not have: tests/smok.sh (test 'smoke')" in error
        assert "Traceback" not in error and "packer" not in error.lower()  # Packer never ran
    assert own_images() == [] and manifest_keys() == []


SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRETKEY"  # made up: the sandbox takes any


@pytest.mark.parametrize(
    ("script", "timeout", "why"),
    [
        ("exit 4", 600, "exited 4"),
        ("sleep 300", 2, "ran longer than 2 s"),
    ],
    ids=["fails", "times-out"],
)
def test_a_failing_test_that_prints_a_credential_is_masked_in_its_log_and_the_error(
    sandbox_env, repo, packer, tmp_path, script, timeout, why
):
    leaks = {
        "name": "leaks",
        "command": ["sh", "-c", f'echo "the key is $AWS_SECRET_ACCESS_KEY"; {script}'],
        "timeout_seconds": timeout,
    }
    with_tests(repo, leaks)
    proc = build(repo, env_for(sandbox_env, repo, tmp_path, AWS_SECRET_ACCESS_KEY=SECRET))
    assert proc.code == 1
    error = " ".join(proc.stderr.split())
    assert "failed its test 'leaks'" in error and why in error
    assert f"the key is {MASK}" in error  # the error quotes the test's last lines, masked
    assert SECRET not in proc.stderr and SECRET not in proc.stdout
    logs = Path(sandbox_env["AMI_BRIDGE_STATE_DIR"]) / "logs"
    (test_log,) = logs.glob("base-*-test-leaks.log")
    assert test_log.read_text().splitlines() == [f"the key is {MASK}"]
    for path in logs.rglob("*"):  # nor in any other log the build wrote
        assert not path.is_file() or SECRET not in path.read_text(errors="replace"), path


def test_a_rejected_image_cannot_be_promoted_even_where_no_tests_are_listed(
    sandbox_env, repo, packer, tmp_path
):
    """A rejected image (kept for debugging) is never put in a channel: not by --ami at a
    commit that lists no tests, and not through another build sharing its build ID."""
    with_tests(repo, SMOKE_TEST, keep_rejected=True)
    proc = build(repo, env_for(sandbox_env, repo, tmp_path, BREAK_IT="1"))
    assert proc.code == 1
    (rejected,) = own_images()
    data = repo.catalog()
    del data["definitions"]["base"]["tests"]  # a commit that dropped the test
    repo.set_catalog(data)
    repo.commit("no tests")
    promote = ["promote", "base", "prod", "--ami", rejected["ImageId"], "--repo", str(repo.path)]
    refused = run_bridge(promote, sandbox_env)
    assert refused.code == 1 and "rejected" in refused.stderr, refused.stderr
    held = aws_client("ssm").get_parameters(Names=["/ami-chain/example/base/prod"])["Parameters"]
    assert held == []  # no channel was written


def test_gc_removes_the_candidate_of_a_build_killed_during_its_tests(
    sandbox_env, repo, packer, tmp_path
):
    """A build killed while its test runs leaves a candidate nobody can use; once its lease has
    expired gc lists it as a build that never finished and deletes it."""
    import os
    import signal
    import subprocess

    from testing.hold import wait_for

    marker = tmp_path / "testing"
    repo.write(
        "tests/hang.sh",
        f'#!/bin/sh\necho $$ > "{marker}.tmp"\nmv "{marker}.tmp" "{marker}"\nsleep 300\n',
    )
    (repo.path / "tests" / "hang.sh").chmod(0o755)
    with_tests(
        repo,
        {"name": "hangs", "command": ["tests/hang.sh"]},
        lease={"ttl_seconds": 3},
        require_recycle_bin=False,
    )
    builder = subprocess.Popen(
        [sys.executable, "-m", "bridge", "build", "base", "--repo", str(repo.path)],
        env=sandbox_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for(marker.exists, timeout=120)
    finally:
        builder.kill()
        builder.wait()
        if marker.exists():
            os.killpg(int(marker.read_text()), signal.SIGKILL)
    (candidate,) = own_images()
    assert model.TAG_CANDIDATE in tags_of(candidate) and "SHA" not in tags_of(candidate)
    gc = run_bridge(
        ["gc", "--min-age-hours", "0", "--repo", str(repo.path), "--apply", "--json"], sandbox_env
    )
    assert gc.code == 0, gc.stderr
    (row,) = json.loads(gc.stdout)["builds"]
    assert row["action"] == "deleted" and "never finished" in " ".join(row["reasons"])
    assert own_images() == []


def test_each_attempt_keeps_its_own_test_log_and_the_error_names_it(
    sandbox_env, repo, packer, tmp_path
):
    """A rejected build's next attempt may share its build ID: each attempt's test output is a
    log of its own, and the build's error says where it is."""
    import re

    with_tests(repo, SMOKE_TEST)
    env = env_for(sandbox_env, repo, tmp_path, BREAK_IT="1")
    named = []
    for _ in range(2):
        proc = build(repo, env)
        assert proc.code == 1
        found = re.search(r"Its output is in (\S+\.log)\.", " ".join(proc.stderr.split()))
        assert found, proc.stderr
        named.append(Path(found.group(1)))
    assert named[0] != named[1]
    for log in named:
        assert "E: nginx is not installed on ami-" in log.read_text()
