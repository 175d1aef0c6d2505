"""Exactly-once builds: concurrent resolves, a killed builder, a failed build."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from bridge import model
from testing.bridge import external, external_many, run_bridge, start_interruptible
from testing.faultproxy import FaultProxy
from testing.hold import hold, holdable, provisioning, wait_for
from testing.sandbox import (
    BUCKET,
    aws_client,
    builds_per_definition,
    manifest_keys,
    own_images,
    tags_of,
)

PROCESSES = 16


@pytest.mark.parametrize(
    ("trials", "machines"),
    [(2, "one machine (local lock)"), (3, "separate machines (S3 lease)")],
)
def test_sixteen_concurrent_resolves_build_each_image_once(
    sandbox_env, repo, packer, sandbox_server, tmp_path, trials, machines
):
    separate = machines.startswith("separate")
    if not separate:
        # No bucket, so no S3 lease: the shared state directory's lock alone must hold.
        data = repo.catalog()
        del data["manifest"]
        repo.set_catalog(data)
        repo.commit("no manifest bucket")
    for trial in range(trials):
        sandbox_server.reset()
        aws_client("s3").create_bucket(Bucket=BUCKET)

        def env_for(i, trial=trial):
            # Separate state directories: no shared local lock, only the S3 lease coordinates.
            state = tmp_path / f"t{trial}" / (f"p{i}" if separate else "shared")
            return {**sandbox_env, "AMI_BRIDGE_STATE_DIR": str(state)}

        procs = external_many(
            env_for, {"definition": "snowflake", "repo": str(repo.path)}, PROCESSES
        )
        assert [p.code for p in procs] == [0] * PROCESSES, [p.stderr for p in procs if p.code]
        # All sixteen agree on the image. Whether it was built during this resolve may differ:
        # a process that starts (or first looks) after the build is published finds it, as a
        # resolve started a minute later would; one that waited for the build says "built".
        answers = [json.loads(p.stdout) for p in procs]
        assert {(a["state"], a["built"]) for a in answers} <= {
            ("built", "true"),
            ("found", "false"),
        }, [a["state"] for a in answers]
        assert "true" in {a["built"] for a in answers}  # the process that built it says so
        results = {json.dumps(identity(a), sort_keys=True) for a in answers}
        assert len(results) == 1, differing(results)
        result = json.loads(results.pop())
        # Exactly one Packer build per definition.
        assert builds_per_definition() == Counter({"base": 1, "snowflake": 1})
        tagged = {tags_of(i)[model.TAG_DEFINITION]: i["ImageId"] for i in own_images()}
        assert tagged == {"base": result["parent_ami_id"], "snowflake": result["ami_id"]}
        assert [k for k in manifest_keys() if "/leases/" in k] == []
        if not separate:
            assert manifest_keys() == []  # no bucket in use: nothing but the lock coordinated
            # Each process that built (or waited for the build) says how builds were coordinated;
            # one that found the image coordinated nothing.
            assert all(
                "prevented on this machine only" in p.stderr
                for p, a in zip(procs, answers, strict=True)
                if a["built"] == "true"
            )
        print(
            f"{machines}: trial {trial + 1}: {PROCESSES} processes, builds {dict(builds_per_definition())}"
        )


def identity(answer: dict[str, str]) -> dict[str, str]:
    """A result without the fields that say how this process came to it (built or found)."""
    return {k: v for k, v in answer.items() if k not in ("state", "built")}


def differing(outputs: set[str]) -> dict[str, list[str]]:
    """The result fields on which `outputs` (JSON objects) disagree, with each value seen."""
    parsed = [json.loads(o) for o in outputs]
    keys = sorted({k for p in parsed for k in p})
    return {
        k: sorted({str(p.get(k)) for p in parsed})
        for k in keys
        if len({str(p.get(k)) for p in parsed}) > 1
    }


def slow_base(repo, seconds: int, ttl: int) -> None:
    template = json.loads(repo.path.joinpath("base/base.json").read_text())
    template["provisioners"].insert(0, {"type": "shell-local", "inline": [f"sleep {seconds}"]})
    repo.write("base/base.json", json.dumps(template, indent=2))
    data = repo.catalog()
    data["lease"] = {"ttl_seconds": ttl}
    repo.set_catalog(data)
    repo.commit("slow base, short lease")


def held_base(repo, ttl: int) -> None:
    """A base a test can hold (testing/hold.py), with a short lease."""
    holdable(repo)
    data = repo.catalog()
    data["lease"] = {"ttl_seconds": ttl}
    repo.set_catalog(data)
    repo.commit("a base a test can hold, short lease")


def leases() -> list[str]:
    return [k for k in manifest_keys() if "/leases/" in k]


def descendants(pid: int) -> list[int]:
    """Every live process below `pid` (from /proc), so a test can clean up after a process it
    killed: Packer runs in a session of its own, out of reach of its parent's group."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def kill_groups(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.killpg(os.getpgid(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_killed_builder_is_taken_over_at_once_on_its_machine(sandbox_env, repo, packer, tmp_path):
    held_base(repo, ttl=3)
    hold(tmp_path / "victim")  # held until it is killed
    query = json.dumps({"definition": "base", "repo": str(repo.path)})
    victim = subprocess.Popen(
        [sys.executable, "-m", "bridge", "external"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**sandbox_env, "AMI_BRIDGE_STATE_DIR": str(tmp_path / "victim")},
        start_new_session=True,
    )
    victim.stdin.write(query.encode())
    victim.stdin.close()
    packers: list[int] = []
    try:
        wait_for(lambda: leases() != [] and provisioning(tmp_path / "victim"))
        packers = descendants(victim.pid)  # the victim's Packer, in its own process group
        assert packers, "the victim's Packer is not running"
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait()
        assert victim.returncode == -signal.SIGKILL
        # Another builder picks it up and builds. On this machine it sees at once that the
        # holder's process is gone (tests/aws/test_lease.py has the other machine's expiry).
        survivor = external(
            {**sandbox_env, "AMI_BRIDGE_STATE_DIR": str(tmp_path / "survivor")}, query
        )
        assert survivor.code == 0, survivor.stderr
        assert "taking over the dead holder's build lease" in survivor.stderr
        result = json.loads(survivor.stdout)
        assert result["built"] == "true"
    finally:
        kill_groups([victim.pid, *packers])  # the victim, and its orphaned Packer
    for pid in packers:
        wait_for(lambda pid=pid: not Path(f"/proc/{pid}").exists() or _zombie(pid), timeout=10)
    # No orphan tag or manifest: the one tagged image is the survivor's, and every manifest
    # points at an image that exists and carries the fingerprint.
    tagged = [i for i in own_images() if tags_of(i).get("SHA")]
    assert [i["ImageId"] for i in tagged] == [result["ami_id"]]
    s3 = aws_client("s3")
    manifests = [k for k in manifest_keys() if "/leases/" not in k]
    assert len(manifests) == 1
    body = json.loads(s3.get_object(Bucket=BUCKET, Key=manifests[0])["Body"].read())
    assert body["amis"]["us-east-1"] == result["ami_id"]
    assert leases() == []


def test_a_builder_whose_lease_was_taken_over_tags_nothing(
    sandbox_env, sandbox_server, repo, packer, tmp_path
):
    """A live builder cut off from S3 cannot renew its lease: another machine takes it over and
    builds. The first build's AMI stays untagged, and only the taker's image is findable."""
    held_base(repo, ttl=3)
    held = hold(tmp_path / "holder")  # in Packer until the taker has built
    query = json.dumps({"definition": "base", "repo": str(repo.path)})

    def renewal(method: str, path: str, headers, body: bytes) -> bool:
        return method == "PUT" and "/leases/" in path and "If-Match" in headers

    with FaultProxy(sandbox_server.endpoint, rate=0.0, block=renewal) as proxy:
        holder = subprocess.Popen(
            [sys.executable, "-m", "bridge", "external"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={
                **sandbox_env,
                "AWS_ENDPOINT_URL": proxy.endpoint,
                "AMI_BRIDGE_PACKER_EC2_ENDPOINT": sandbox_server.endpoint,
                "AMI_BRIDGE_STATE_DIR": str(tmp_path / "holder"),
            },
            start_new_session=True,
        )
        try:
            holder.stdin.write(query.encode())
            holder.stdin.close()
            holder.stdin = None  # sent; communicate() below only reads
            wait_for(lambda: leases() != [] and provisioning(tmp_path / "holder"))
            taker = external(
                {**sandbox_env, "AMI_BRIDGE_STATE_DIR": str(tmp_path / "taker")}, query
            )
            held.unlink()  # the holder's Packer finishes now, its lease long taken over
            out, err = holder.communicate(timeout=240)
        finally:
            if holder.poll() is None:
                os.killpg(holder.pid, signal.SIGKILL)
        assert proxy.counters.injected.get("blocked", 0) > 0
    assert taker.code == 0, taker.stderr
    assert "taking over the expired build lease" in taker.stderr
    assert holder.returncode == 1 and out == b""
    assert b"was taken over while Packer ran" in err
    result = json.loads(taker.stdout)
    assert builds_per_definition() == Counter({"base": 2})  # both builds ran
    fingerprinted = [i["ImageId"] for i in own_images() if tags_of(i).get("SHA")]
    assert fingerprinted == [result["ami_id"]]
    assert [k for k in manifest_keys() if "/leases/" not in k] != []
    assert leases() == []


def test_failed_build_releases_lease_at_once(sandbox_env, repo, packer, tmp_path):
    marker = tmp_path / "let-it-build"
    template = json.loads(repo.path.joinpath("base/base.json").read_text())
    template["provisioners"].insert(0, {"type": "shell-local", "inline": [f"test -f {marker}"]})
    repo.write("base/base.json", json.dumps(template, indent=2))
    data = repo.catalog()
    data["lease"] = {"ttl_seconds": 600}
    repo.set_catalog(data)
    repo.commit("base that needs a marker")
    query = {"definition": "base", "repo": str(repo.path)}
    failed = external(sandbox_env, query)
    assert failed.code == 1 and failed.stdout == ""
    assert "Packer failed" in failed.stderr
    assert leases() == []  # released at once, not left to expire
    assert [tags_of(i).get("SHA") for i in own_images()] in ([], [None])
    marker.write_text("ok")
    retried = external(sandbox_env, query)
    assert retried.code == 0, retried.stderr
    assert json.loads(retried.stdout)["built"] == "true"


def test_ctrl_c_cancels_packer_releases_the_lease_and_tags_nothing(
    sandbox_env, repo, packer, tmp_path
):
    slow_base(repo, seconds=30, ttl=600)
    proc = start_interruptible(["build", "base", "--repo", str(repo.path)], sandbox_env)
    try:
        wait_for(lambda: leases() != [] and provisioning(tmp_path / "state"))
        os.kill(proc.pid, signal.SIGINT)  # what Ctrl-C sends the bridge
        _, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 130, stderr
        assert b"interrupted" in stderr and b"Traceback" not in stderr
        # Packer got the interrupt, cancelled the build and cleaned up after itself.
        (log,) = (tmp_path / "state" / "logs").glob("base-*.log")
        assert "Cleanly cancelled builds after being interrupted" in log.read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert leases() == []
    assert [tags_of(i).get("SHA") for i in own_images()] in ([], [None])
    assert [k for k in manifest_keys()] == []


# -- several builds at once (--jobs) ------------------------------------------------------------


def add_children(repo, names, seconds: int = 0, failing=(), meet=False) -> None:
    """Children of the base that sleep `seconds` in their provisioner (those in `failing` then
    fail with an error line of their own). With `meet`, each instead waits (up to 120 s, then
    fails) until every one of them is in its provisioner: they pass only by running at once."""
    template = json.loads(repo.path.joinpath("snowflake/snowflake.json").read_text())
    data = repo.catalog()
    here = '"$AMI_BRIDGE_STATE_DIR/here-{}"'
    everyone = " && ".join(f"[ -e {here.format(n)} ]" for n in names)
    for name in names:
        inline = [f"sleep {seconds}"]
        if meet:
            inline = [
                f"touch {here.format(name)}",
                f"n=0; until {everyone}; do n=$((n+1)); [ $n -lt 1200 ] || exit 1; sleep 0.1; done",
            ]
        if name in failing:
            inline += [f"echo 'E: {name} cannot install its package' >&2", "exit 3"]
        template["provisioners"] = [{"type": "shell-local", "inline": inline}]
        repo.write(f"{name}/{name}.json", json.dumps(template, indent=2))
        data["definitions"][name] = {"template": f"{name}/{name}.json", "parent": "base"}
    repo.set_catalog(data)
    repo.commit("children of the base")


def packer_span(state_dir, name: str) -> tuple[int, int]:
    """First and last timestamp of a definition's Packer run (machine-readable lines)."""
    (log,) = (state_dir / "logs").glob(f"{name}-*.log")
    stamps = [
        int(line.split(",", 1)[0]) for line in log.read_text().splitlines() if line[:1].isdigit()
    ]
    return stamps[0], stamps[-1]


def test_sibling_builds_run_at_once(sandbox_env, repo, packer, tmp_path):
    add_children(repo, ["tools", "agent"], meet=True)
    proc = run_bridge(["build", "--all", "--jobs", "4", "--repo", str(repo.path)], sandbox_env)
    assert proc.code == 0, proc.stderr
    assert builds_per_definition() == Counter({"base": 1, "snowflake": 1, "tools": 1, "agent": 1})
    state = tmp_path / "state"
    spans = {name: packer_span(state, name) for name in ("base", "tools", "agent")}
    (t0, t1), (a0, a1) = spans["tools"], spans["agent"]
    assert t0 <= a1 and a0 <= t1, spans  # the siblings' Packer runs overlap
    assert min(t0, a0) >= spans["base"][1]  # after their parent
    # Progress lines say which build they belong to.
    assert "[tools] packer: ==> " in proc.stderr and "[agent] packer: ==> " in proc.stderr


@pytest.mark.parametrize("where", ["--jobs", "catalog"])
def test_one_job_builds_one_at_a_time(sandbox_env, repo, packer, tmp_path, where):
    add_children(repo, ["tools", "agent"], seconds=2)
    flags = ["--jobs", "1"] if where == "--jobs" else []
    if where == "catalog":
        repo.set_catalog({**repo.catalog(), "jobs": 1})
        repo.commit("one build at a time")
    proc = run_bridge(["build", "tools", "agent", *flags, "--repo", str(repo.path)], sandbox_env)
    assert proc.code == 0, proc.stderr
    (t0, t1), (a0, a1) = (packer_span(tmp_path / "state", n) for n in ("tools", "agent"))
    assert t1 <= a0 or a1 <= t0


def test_a_failed_build_skips_its_descendants_not_its_siblings(sandbox_env, repo, packer):
    add_children(repo, ["tools", "agent"], seconds=1, failing=["tools"])
    data = repo.catalog()
    data["definitions"]["tools-gpu"] = {"template": "tools/tools.json", "parent": "tools"}
    repo.set_catalog(data)
    repo.commit("a grandchild")
    proc = run_bridge(["build", "--all", "--repo", str(repo.path)], sandbox_env)
    assert proc.code == 1
    err = " ".join(proc.stderr.split())
    assert "E: tools cannot install its package" in err
    assert "tools-gpu skipped: its ancestor 'tools' failed" in err
    assert "Traceback" not in proc.stderr
    tagged = {tags_of(i)[model.TAG_DEFINITION] for i in own_images() if tags_of(i).get("SHA")}
    assert tagged == {"base", "snowflake", "agent"}
    assert builds_per_definition()["tools-gpu"] == 0
    assert leases() == []


def test_ctrl_c_cancels_every_running_build(sandbox_env, repo, packer, tmp_path):
    add_children(repo, ["tools", "agent"], seconds=60)
    proc = start_interruptible(
        ["build", "--all", "--jobs", "4", "--repo", str(repo.path)], sandbox_env
    )
    state = tmp_path / "state"

    def in_provisioner(name: str) -> bool:
        return any(
            "Running local shell script" in log.read_text()
            for log in state.glob(f"logs/{name}-*.log")
        )

    try:
        wait_for(lambda: in_provisioner("tools") and in_provisioner("agent"), timeout=120)
        os.kill(proc.pid, signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 130, stderr
        assert b"Traceback" not in stderr
        for name in ("tools", "agent"):
            (log,) = state.glob(f"logs/{name}-*.log")
            assert "Cleanly cancelled builds after being interrupted" in log.read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    tagged = {tags_of(i)[model.TAG_DEFINITION] for i in own_images() if tags_of(i).get("SHA")}
    assert "tools" not in tagged and "agent" not in tagged
    assert leases() == []


def test_two_parallel_builds_of_the_whole_catalog_build_each_image_once(
    sandbox_env, repo, packer, tmp_path
):
    """Exactly once holds across processes that each build several definitions at once."""
    add_children(repo, ["tools", "agent"], seconds=2)
    argv = [
        sys.executable,
        "-m",
        "bridge",
        "build",
        "--all",
        "--jobs",
        "4",
        "--repo",
        str(repo.path),
    ]
    procs = [
        subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**sandbox_env, "AMI_BRIDGE_STATE_DIR": str(tmp_path / f"machine{i}")},
        )
        for i in range(3)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    assert builds_per_definition() == Counter({"base": 1, "snowflake": 1, "tools": 1, "agent": 1})
    assert leases() == []


def test_two_machines_that_read_the_same_expired_lease_build_once(
    sandbox_env, sandbox_server, repo, packer, tmp_path
):
    """A real race for an expired lease: two machines both read it, their takeover writes are
    held at a proxy until both are in flight, then released together. The conditional write on
    the ETag they read lets exactly one of them win; the other waits for its image."""
    import threading

    from bridge.aws.lease import lease_key

    planned = run_bridge(
        ["resolve", "base", "--repo", str(repo.path), "--json", "--on-missing", "report"],
        sandbox_env,
    )
    fingerprint = json.loads(planned.stdout)["base"]["fingerprint"]
    key = lease_key("images", "base", fingerprint)
    dead = {"owner": "gone", "host": "crashed", "pid": 1, "started": "?", "expires": 0}
    aws_client("s3").put_object(Bucket=BUCKET, Key=key, Body=json.dumps(dead).encode())
    both = threading.Barrier(2, timeout=120)
    held: list[str] = []

    def takeover(method, path, headers, body) -> None:
        """Hold each write of the lease that is not a create (a takeover) until both are in."""
        if method == "PUT" and path.split("?")[0].endswith(key) and "If-None-Match" not in headers:
            held.append(headers.get("If-Match", "(unconditional)"))
            both.wait()

    with FaultProxy(sandbox_server.endpoint, rate=0.0, hold=takeover) as proxy:
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "bridge", "build", "base", "--repo", str(repo.path)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env={
                    **sandbox_env,
                    "AWS_ENDPOINT_URL": proxy.endpoint,
                    "AMI_BRIDGE_PACKER_EC2_ENDPOINT": sandbox_server.endpoint,
                    "AMI_BRIDGE_STATE_DIR": str(tmp_path / f"machine{i}"),
                },
            )
            for i in range(2)
        ]
        for proc in procs:
            _, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err.decode()
    assert len(held) >= 2, held  # both takeovers were in flight at once
    assert builds_per_definition() == Counter({"base": 1})
    assert [tags_of(i)[model.TAG_DEFINITION] for i in own_images() if "SHA" in tags_of(i)] == [
        "base"
    ]
    assert leases() == []
