"""Images age: max_age_days expires an image, which is rebuilt under the same fingerprint, and
its children follow (plan.decide, resolve.py)."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta, timezone

from testing.bridge import run_bridge
from testing.hold import wait_for
from testing.sandbox import builds_per_definition

# EC2 creation dates have whole seconds: two seconds is enough to be past a 1.7 s maximum age.
TINY_AGE_DAYS = 0.00002


def resolve(repo, env, *flags: str) -> tuple[int, dict]:
    proc = run_bridge(["resolve", "--all", "--repo", str(repo.path), "--json", *flags], env)
    return proc.code, (json.loads(proc.stdout) if proc.stdout else {"stderr": proc.stderr})


def test_an_expired_base_is_rebuilt_under_its_fingerprint_and_its_child_follows(
    sandbox_env, repo, packer
):
    data = repo.catalog()
    data["definitions"]["base"]["max_age_days"] = TINY_AGE_DAYS
    repo.set_catalog(data)
    repo.commit("the base expires at once")
    started = datetime.now(timezone.utc).replace(microsecond=0)
    code, first = resolve(repo, sandbox_env, "--on-missing", "build")
    assert code == 0, first
    lifetime = datetime.fromisoformat(first["base"]["expires_at"]) - started
    assert 0 < lifetime.total_seconds() < 30  # built just now, lasting 1.7 s
    assert first["snowflake"]["expires_at"] == ""  # no maximum age: never
    # Past the expiry the bridge reported (creation dates have whole seconds): the clock's
    # event, not a guessed sleep.
    ends = datetime.fromisoformat(first["base"]["expires_at"]) + timedelta(seconds=1)
    wait_for(lambda: datetime.now(timezone.utc) > ends, timeout=60)

    code, report = resolve(repo, sandbox_env, "--on-missing", "report")
    assert code == 3
    assert report["base"]["state"] == "expired" and report["base"]["found"] == "false"
    fail = run_bridge(["resolve", "base", "--repo", str(repo.path)], sandbox_env)
    assert fail.code == 3 and "expired" in fail.stderr and "max_age_days" in fail.stderr

    code, second = resolve(repo, sandbox_env, "--on-missing", "build")
    assert code == 0, second
    assert second["base"]["fingerprint"] == first["base"]["fingerprint"]
    assert second["base"]["ami_id"] != first["base"]["ami_id"]
    assert second["base"]["build_id"] != first["base"]["build_id"]
    # The snowflake was built on the expired base: outdated through its parent-AMI tag.
    assert second["snowflake"]["ami_id"] != first["snowflake"]["ami_id"]
    assert second["snowflake"]["parent_ami_id"] == second["base"]["ami_id"]
    assert builds_per_definition() == Counter({"base": 2, "snowflake": 2})
