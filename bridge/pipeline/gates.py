"""Test gates: a new image passes the checks its owners wrote before anyone can use it.

A definition's `tests` run after Packer has made the image and before it is published (builder.py),
under the build's lease, in order: a command (an argv list, run from the exported tree, with the
image's IDs, fingerprint, region, build ID and definition in its environment) or the built-in
`boots` (one instance launched from the image, run until EC2's status checks pass, terminated).
From the moment Packer has made it until it is published the image is a candidate (TAG_CANDIDATE,
hold()): it carries no fingerprint tag (one the template put there itself is taken off), and
lookups skip candidates and rejected images, so `resolve`, `external`, `promote`, `status` and
Terraform never see it. A failing test fails the build
with the test's last lines; the candidate is deregistered with its snapshots, or, when the catalog
says `keep_rejected`, kept and tagged TAG_REJECTED for debugging (gc deletes it). A passing run is
recorded on the image (TAG_TESTS, the tests' names) and in its manifest (`tests`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import posixpath
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bridge import model
from bridge.aws import registry
from bridge.aws.clients import aws_call
from bridge.catalog import ImageTest
from bridge.errors import BuildError, Cancelled, QueryError
from bridge.masking import mask, secrets_of
from bridge.pipeline import sessions
from bridge.repopaths import resolve_inside

if TYPE_CHECKING:
    from collections.abc import Sequence

    from botocore.exceptions import WaiterError
    from mypy_boto3_ec2.type_defs import WaiterConfigTypeDef

    from bridge.catalog import Definition
    from bridge.context import Context
    from bridge.model import Build, Image

log = logging.getLogger(__name__)

# Lines of a failing test's output that its error quotes (the whole output is in its log).
TAIL_LINES = 15


@dataclass(frozen=True)
class Outcome:
    """One test's result, as the image's manifest records it."""

    name: str
    passed: bool
    seconds: float
    command: tuple[str, ...]
    # Why it failed, and its last lines (empty when it passed).
    detail: str = ""
    # Stopped because the run was interrupted: neither passed nor failed.
    cancelled: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "passed": self.passed,
            "seconds": round(self.seconds, 1),
            "command": list(self.command),
        }


@dataclass(frozen=True)
class Candidate:
    """A new image under test: the definition, its AMIs (region -> AMI) and its identity."""

    definition: Definition
    amis: Mapping[str, str]
    fingerprint: str
    build_id: str
    region: str

    def environment(self) -> dict[str, str]:
        """What a test command is told about the candidate."""
        return {
            "AMI_BRIDGE_AMI": self.amis[self.region],
            "AMI_BRIDGE_AMIS": json.dumps(dict(sorted(self.amis.items()))),
            "AMI_BRIDGE_FINGERPRINT": self.fingerprint,
            "AMI_BRIDGE_REGION": self.region,
            "AMI_BRIDGE_BUILD_ID": self.build_id,
            "AMI_BRIDGE_DEFINITION": self.definition.name,
        }


def programs(d: Definition) -> list[tuple[str, str]]:
    """(test name, repository path) of each test whose program is a path in the repository (an
    argv[0] with a `/`; a bare name is looked up on PATH when it runs)."""
    return [
        (t.name, posixpath.normpath(t.command[0]))
        for t in d.tests
        if t.command and "/" in t.command[0]
    ]


def check_programs(d: Definition, exists: Callable[[str], bool]) -> None:
    """Refuse, before anything is built, a test whose program is not in the repository (a
    typo would otherwise fail the build only after Packer made the image)."""
    missing = [(name, path) for name, path in programs(d) if not exists(path)]
    if missing:
        raise QueryError(
            f"The tests of definition {d.name!r} run programs the repository does not have: "
            + ", ".join(f"{path} (test {name!r})" for name, path in missing)
            + ". A test's program is a path from the repository root (or a name on PATH); "
            "fix the path in the catalog's `tests`, or commit the program."
        )


def hold(ctx: Context, candidate: Candidate) -> None:
    """Mark the images Packer just made as a candidate (TAG_CANDIDATE, with whose build they
    are), and take off the fingerprint tag if the template put it there itself (the seed's
    templates tag `SHA` with `ami_sha`): until publish (publish.py) puts it back and lifts the
    mark, no lookup counts them."""
    tag_key = ctx.settings.tag_key
    images = {
        region: registry.describe_image(ctx.clients.ec2(region), region, ami)
        for region, ami in candidate.amis.items()
    }
    _tag(ctx, images, {model.TAG_CANDIDATE: candidate.build_id, **_marks(ctx, candidate)})
    tagged = [i for i in images.values() if i.tag(tag_key) is not None]
    for image in tagged:
        registry.untag_image(ctx.clients.ec2(image.region), image, (tag_key,))
    if tagged:
        log.info(
            "%s: the template tagged its image %s itself; taken off until it is published",
            candidate.definition.name,
            tag_key,
        )


def run(
    ctx: Context,
    candidate: Candidate,
    *,
    tree: Path,
    env: Mapping[str, str],
    cancelled: threading.Event | None = None,
) -> tuple[Outcome, ...]:
    """Run the definition's tests on the candidate (held: hold()), in order; the first failure
    rejects it (deregistered, or kept tagged rejected) and raises a BuildError quoting the
    test. When `cancelled` is set (Ctrl-C, SIGTERM, --fail-fast) a running test command is
    stopped with everything it started, the candidate is rejected the same way, and Cancelled
    is raised."""
    cancelled = cancelled if cancelled is not None else threading.Event()
    d = candidate.definition
    if not d.tests:
        return ()
    images = {
        region: registry.describe_image(ctx.clients.ec2(region), region, ami)
        for region, ami in candidate.amis.items()
    }
    outcomes = []
    for test in d.tests:
        log.info("testing %s (%s): %s", d.name, candidate.amis[candidate.region], test.name)
        if test.builtin == "boots":
            outcome = _boots(ctx, candidate, test)
        else:
            outcome = _command(ctx, candidate, test, tree=tree, env=env, cancelled=cancelled)
        outcomes.append(outcome)
        if outcome.cancelled:
            fate = (
                "kept, tagged rejected" if _reject(ctx, images, "interrupted") else "deregistered"
            )
            stopped = Cancelled(
                f"Interrupted while testing the new image of {d.name!r} "
                f"({candidate.amis[candidate.region]}): its test {test.name!r} was stopped with "
                f"everything it started, and the untested image was {fate}."
            )
            log.warning("%s", stopped)  # the run ends as interrupted: say what became of it
            raise stopped
        if not outcome.passed:
            kept = _reject(ctx, images, f"{outcome.name} failed")
            fate = (
                "kept, tagged ami-chain:rejected, for debugging (keep_rejected; gc deletes it)"
                if kept
                else "deregistered"
            )
            raise BuildError(
                f"The new image of {d.name!r} ({candidate.amis[candidate.region]} in "
                f"{candidate.region}) failed its test {test.name!r}: {outcome.detail} So it was "
                f"not published (no image carries fingerprint {candidate.fingerprint[:12]}); it "
                f"was {fate}. Fix the image or the test, and build again."
            )
        log.info("%s passed %s in %.1f s", d.name, test.name, outcome.seconds)
    return tuple(outcomes)


def _tag(ctx: Context, images: Mapping[str, Image], tags: Mapping[str, str]) -> None:
    for image in images.values():
        registry.tag_image(ctx.clients.ec2(image.region), image, tags)


def _command(
    ctx: Context,
    candidate: Candidate,
    test: ImageTest,
    *,
    tree: Path,
    env: Mapping[str, str],
    cancelled: threading.Event,
) -> Outcome:
    argv = list(test.command)
    if "/" in argv[0]:
        argv[0] = str(resolve_inside(tree, argv[0], what=f"test {test.name!r}"))
    secrets = secrets_of(env)
    started = time.monotonic()
    logs = ctx.settings.log_dir
    logs.mkdir(parents=True, exist_ok=True)
    # Each attempt's own log: a rebuild after a rejection may share the rejected build's ID.
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    log_path = logs / (
        f"{candidate.definition.name}-{candidate.build_id[:12]}-{stamp}-test-{test.name}.log"
    )
    try:
        # An argv list from the catalog, never a shell; in a session of its own, so a timeout
        # stops everything it started (a server it backgrounded, a `sleep` in a script).
        proc = subprocess.Popen(
            argv,
            cwd=tree,
            env={**env, **candidate.environment()},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,
            # Ended by the kernel if the bridge is killed outright (SIGKILL): no orphaned test.
            preexec_fn=sessions.die_with_parent,
        )
    except FileNotFoundError:
        return Outcome(
            test.name,
            False,
            time.monotonic() - started,
            test.command,
            f"its program {test.command[0]!r} does not exist (a path is relative to the "
            "repository root).",
        )
    try:
        stdout = sessions.communicate(proc, test.timeout_seconds, cancelled)
    except sessions.Stopped:
        return Outcome(test.name, False, time.monotonic() - started, test.command, cancelled=True)
    except subprocess.TimeoutExpired:
        sessions.stop_group(proc)
        output = mask(proc.communicate()[0] or "", secrets)
        log_path.write_text(output)
        return Outcome(
            test.name,
            False,
            time.monotonic() - started,
            test.command,
            f"it ran longer than {test.timeout_seconds:g} s (timeout_seconds) and was stopped."
            + _tail(output)
            + f" Its output is in {log_path}.",
        )
    finally:
        sessions.stop_group(proc)  # what it left running in the background ends with it
    output = mask(stdout, secrets)
    log_path.write_text(output)
    seconds = time.monotonic() - started
    if proc.returncode == 0:
        return Outcome(test.name, True, seconds, test.command)
    return Outcome(
        test.name,
        False,
        seconds,
        test.command,
        f"`{' '.join(test.command)}` exited {proc.returncode}."
        + _tail(output)
        + f" Its output is in {log_path}.",
    )


def _tail(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()][-TAIL_LINES:]
    return (" Its last lines: " + " | ".join(lines) + ".") if lines else " It printed nothing."


def _boots(ctx: Context, candidate: Candidate, test: ImageTest) -> Outcome:
    """One instance of the candidate, launched, waited for until it runs and passes EC2's status
    checks, and terminated whatever happened."""
    from botocore.exceptions import WaiterError

    region, ami = candidate.region, candidate.amis[candidate.region]
    ec2 = ctx.clients.ec2(region)
    started = time.monotonic()
    with aws_call(f"launching a test instance of {ami} in {region}", "ec2:RunInstances"):
        instance = ec2.run_instances(
            ImageId=ami,
            InstanceType=test.instance_type,  # type: ignore[arg-type]
            MinCount=1,
            MaxCount=1,
            TagSpecifications=[
                {
                    "ResourceType": "instance",
                    "Tags": [
                        {"Key": "Name", "Value": f"ami-bridge boots {candidate.definition.name}"},
                        {"Key": model.TAG_CANDIDATE, "Value": candidate.build_id},
                    ],
                }
            ],
        )["Instances"][0]["InstanceId"]
    attempts: WaiterConfigTypeDef = {
        "Delay": 5,
        "MaxAttempts": max(1, int(test.timeout_seconds // 5)),
    }
    failed: WaiterError | None = None
    try:
        # A waiter that gives up is the test's failure, not AWS's: caught inside aws_call.
        for waiter, permission in (
            ("instance_running", "ec2:DescribeInstances"),
            ("instance_status_ok", "ec2:DescribeInstanceStatus"),
        ):
            with aws_call(f"waiting for the test instance {instance}", permission):
                try:
                    ec2.get_waiter(waiter).wait(  # type: ignore[call-overload]
                        InstanceIds=[instance], WaiterConfig=attempts
                    )
                except WaiterError as exc:
                    failed = exc
            if failed is not None:
                break
    finally:
        with aws_call(f"terminating the test instance {instance}", "ec2:TerminateInstances"):
            ec2.terminate_instances(InstanceIds=[instance])
    if failed is not None:
        return Outcome(
            test.name,
            False,
            time.monotonic() - started,
            ("boots",),
            f"the instance {instance} launched from it did not run and pass EC2's status "
            f"checks ({_waited(failed)}).",
        )
    return Outcome(test.name, True, time.monotonic() - started, ("boots",))


def _waited(exc: WaiterError) -> str:
    """What a waiter that gave up last saw: the instance's state or status, else its reason."""
    last: Any = exc.last_response or {}
    statuses = [
        s.get("InstanceStatus", {}).get("Status", "?") for s in last.get("InstanceStatuses", [])
    ]
    if statuses:
        return f"its instance status is {', '.join(statuses)}"
    return str(last.get("Error", {}).get("Message") or exc)


def _marks(ctx: Context, candidate: Candidate) -> dict[str, str]:
    """The tags that say whose build a candidate is (gc finds a rejected one by them)."""
    marks = {
        model.TAG_DEFINITION: candidate.definition.name,
        model.TAG_BUILD_ID: candidate.build_id,
    }
    if ctx.settings.catalog_id:
        marks[model.TAG_CATALOG] = ctx.settings.catalog_id
    return marks


def reject(ctx: Context, candidate: Candidate, why: str) -> str:
    """Reject a new image that must not be published for the reason `why` (_reject): what
    became of it, as an error says it."""
    images = {
        region: registry.describe_image(ctx.clients.ec2(region), region, ami)
        for region, ami in candidate.amis.items()
    }
    kept = _reject(ctx, images, why)
    return (
        "kept, tagged ami-chain:rejected, for debugging (keep_rejected; gc deletes it)"
        if kept
        else "deregistered"
    )


def _reject(ctx: Context, images: Mapping[str, Image], why: str) -> bool:
    """Deregister the candidate and delete its snapshots, or with keep_rejected tag it rejected:
    whether it was kept."""
    if ctx.catalog.keep_rejected:
        now = datetime.now(timezone.utc)
        when = model.timestamp(now)
        planned = next(iter(images.values())).tag(model.TAG_BUILD_ID) or ""
        _tag(
            ctx,
            images,
            {
                model.TAG_REJECTED: f"{why} {when}",
                # The attempt's own ID: the next attempt is planned with the same one, and a
                # kept rejection must never be taken for it (promote, gc, the report).
                model.TAG_BUILD_ID: attempt_id(planned, now),
            },
        )
        return True
    for image in images.values():
        registry.delete_image(ctx.clients.ec2(image.region), image)
    return False


def attempt_id(planned: str, rejected_at: datetime) -> str:
    """The build ID a kept, rejected attempt is retagged with: derived from the ID it was planned
    with and the moment it was rejected, so no two attempts share one."""
    text = f"ami-chain rejected-attempt v1\nplanned {planned}\nat {rejected_at.isoformat()}"
    return hashlib.sha256(text.encode()).hexdigest()[:40]


def check_passed(build: Build, tests: Sequence[str], require: Sequence[str]) -> None:
    """Refuse a build whose images did not pass the definition's `tests` and the checks `require`
    names (promote --require), as their TAG_TESTS records."""
    wanted = list(dict.fromkeys([*tests, *require]))
    if not wanted:
        return
    for region, image in sorted(build.images.items()):
        passed = set(filter(None, (image.tag(model.TAG_TESTS) or "").split(",")))
        missing = [name for name in wanted if name not in passed]
        if missing:
            unknown = [name for name in missing if name not in tests]
            fix = (
                f"The definition has no test named {', '.join(unknown)}, so no build can pass "
                f"it: add it to the definition's `tests` (then `ami-bridge build "
                f"{build.definition} --force`), or drop it from --require."
                if unknown
                else f"Rebuild it so its tests run (`ami-bridge build {build.definition} "
                "--force`: tests run at build time, and an image found is not built again), or "
                "promote another build."
            )
            raise QueryError(
                f"Build {build.build_id[:12]} of {build.definition!r} ({image.ami_id} in "
                f"{region}) has not passed {', '.join(missing)} (it passed "
                f"{', '.join(sorted(passed)) or 'no tests'}), so it cannot be promoted. {fix}"
            )
