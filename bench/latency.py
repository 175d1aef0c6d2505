"""`make bench`'s latency world: an image factory's catalog (N definitions, twenty regions) behind
a proxy that delays every AWS call as a real network does (DELAY seconds, +/- JITTER) and counts
the calls per region and action.

Each row is a ratio against the physical limit measured in the same run, through the same proxy:
for `status --all` (the resolve path's one survey), ceil(N/200) sequential DescribeImages per
region with the regions concurrent; for a cache-hit `external` of one definition, a process
asking each region once for its chain's fingerprints, the regions concurrent; for a build of a
root and three children copied to the twenty regions and shared with a hundred accounts, the
critical path (raw Packer builds of the root and then of one child, then one copy); for a
revocation of a root with fifty descendants, a process making the lookups a revocation cannot
skip and the same writes, every region at once and each region's one after another. gc's dry
run over the twenty regions is stated with its calls. The sandbox serves one request at a time (it serializes writes, and EC2's Query API
is all POSTs), so concurrent regions are as fast as its one-at-a-time service allows: the limits
are measured in that same world.
"""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import boto3

from bridge import model, packer, sandbox
from bridge.catalog import load_catalog
from bridge.fingerprint import fingerprint_all
from bridge.git import open_repo
from testing.faultproxy import FaultProxy

DELAY = 0.100
JITTER = 0.020
REGIONS = (
    "us-east-1", "us-east-2", "us-west-1", "us-west-2", "ca-central-1", "sa-east-1",
    "eu-west-1", "eu-west-2", "eu-west-3", "eu-central-1", "eu-north-1", "eu-south-1",
    "ap-south-1", "ap-northeast-1", "ap-northeast-2", "ap-northeast-3", "ap-southeast-1",
    "ap-southeast-2", "af-south-1", "me-south-1",
)  # fmt: skip
PY = sys.executable
HOME = REGIONS[0]  # where builds run (the resolve region)
PROVISIONING = 5  # seconds of provisioning in each build of row 13
# A hundred accounts to share with: twelve-digit IDs, which is all EC2 (and moto) checks.
ACCOUNTS = tuple(f"{300000000000 + 7919 * i:012d}" for i in range(100))

# The limit of a survey: ceil(N/200) DescribeImages per region, one after another, the regions
# at once (argv: the fingerprints file, the regions).
LIMIT = """
import json, sys, threading, boto3
values = json.load(open(sys.argv[1])); regions = sys.argv[2].split(",")
clients = {r: boto3.client("ec2", region_name=r) for r in regions}
def one(region):
    for start in range(0, len(values), 200):
        clients[region].describe_images(Owners=["self"], Filters=[
            {"Name": "tag:SHA", "Values": values[start:start + 200]},
            {"Name": "state", "Values": ["available", "pending"]}])
threads = [threading.Thread(target=one, args=(r,)) for r in regions]
[t.start() for t in threads]; [t.join() for t in threads]
"""

# The limit of a revocation: the lookups it cannot skip and its writes, every region at once.
# First the build (its fingerprint, one DescribeImages per region), then each generation of
# descendants (the images whose parent-AMI tag names an AMI of the last one, 200 values a call)
# until none is new; then in each region, one image after another in that order, tags on the
# image and its snapshots and EC2's deprecation time (argv: the fingerprint, the regions).
REVOCATION = """
import sys, threading, boto3
from datetime import datetime, timedelta, timezone
fingerprint, regions = sys.argv[1], sys.argv[2].split(",")
clients = {r: boto3.client("ec2", region_name=r) for r in regions}
def everywhere(work):
    out = {}
    threads = [threading.Thread(target=lambda r: out.setdefault(r, work(r)), args=(r,))
               for r in regions]
    [t.start() for t in threads]; [t.join() for t in threads]
    return out
def tagged(key, values):
    def look(region):
        found = []
        for start in range(0, len(values), 200):
            found += clients[region].describe_images(Owners=["self"], Filters=[
                {"Name": f"tag:{key}", "Values": values[start:start + 200]},
                {"Name": "state", "Values": ["available", "pending", "disabled"]}],
                IncludeDisabled=True)["Images"]
        return found
    return everywhere(look)
order = {r: [] for r in regions}
generation = tagged("SHA", [fingerprint])
seen = set()
while True:
    new = {r: [i for i in found if i["ImageId"] not in seen] for r, found in generation.items()}
    amis = sorted(i["ImageId"] for found in new.values() for i in found)
    if not amis:
        break
    seen.update(amis)
    for region, found in new.items():
        order[region] += found
    generation = tagged("ami-chain:parent-ami", amis)
at = datetime.now(timezone.utc).replace(second=0, microsecond=0) + timedelta(minutes=2)
tags = [{"Key": f"bench:{k}", "Value": v} for k, v in
        (("revoked-at", at.isoformat()), ("reason", "x" * 80), ("by", "0" * 36))]
def write(region):
    for image in order[region]:
        snapshots = [m["Ebs"]["SnapshotId"] for m in image["BlockDeviceMappings"] if "Ebs" in m]
        clients[region].create_tags(Resources=[image["ImageId"], *snapshots], Tags=tags)
        clients[region].enable_image_deprecation(ImageId=image["ImageId"], DeprecateAt=at)
everywhere(write)
"""


class Delaying:
    """The proxy: every request waits DELAY +/- JITTER before it is forwarded, counted by region
    and action."""

    def __init__(self, endpoint: str) -> None:
        self.calls: Counter[tuple[str, str]] = Counter()
        self.times: list[tuple[float, str]] = []  # (monotonic time, action) of each call
        self.ended = 0.0  # when the last `counted` run ended
        self.lock = threading.Lock()
        self.random = random.Random(30)
        self.proxy = FaultProxy(endpoint, rate=0.0, hold=self._hold)

    def _hold(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> None:
        scope = headers.get("Authorization", "").split("Credential=", 1)[-1].split("/")
        region = scope[2] if len(scope) > 2 else "?"
        action = (
            body.split(b"Action=", 1)[-1].split(b"&", 1)[0].decode() if b"Action=" in body else ""
        )
        action = action or headers.get("X-Amz-Target", "").rsplit(".", 1)[-1] or method
        with self.lock:
            self.calls[(region, action)] += 1
            self.times.append((time.monotonic(), action))
            pause = DELAY + self.random.uniform(-JITTER, JITTER)
        time.sleep(pause)

    def counted(self, run: Callable[[], object]) -> tuple[float, Counter[tuple[str, str]]]:
        """Run `run`: its wall time and the calls it made."""
        with self.lock:
            self.calls.clear()
            self.times.clear()
        started = time.monotonic()
        run()
        self.ended = time.monotonic()
        with self.lock:
            return self.ended - started, Counter(self.calls)

    def after_last(self, action: str) -> tuple[float, int]:
        """Of the last `counted` run: the time from the last call of `action` to the end, and
        the calls made meanwhile."""
        with self.lock:
            last = max(t for t, a in self.times if a == action)
            return self.ended - last, sum(1 for t, _ in self.times if t > last)


def catalog_repo(make_repo: Callable[..., list[str]], path: Path, n: int) -> list[str]:
    """N definitions (chains five deep) whose images must exist in all twenty regions."""
    names = make_repo(path, n)
    catalog = json.loads((path / "ami-chain.json").read_text())
    catalog["regions"] = list(REGIONS)
    (path / "ami-chain.json").write_text(json.dumps(catalog, indent=2))
    subprocess.run(["git", "commit", "-qam", "twenty regions"], cwd=path, check=True)
    return names


def publish_everywhere(path: Path) -> None:
    """A tagged image of every definition in every region (as builds and copies would leave
    them, without Packer), and <path>.fingerprints.json for the limit."""
    catalog = load_catalog(path)
    snapshot = fingerprint_all(open_repo(path), catalog.all())
    fps = {d.name: snapshot.fingerprints[d.name].value for d in catalog.all()}

    def region(name: str) -> None:
        ec2 = boto3.client("ec2", region_name=name)
        instance = ec2.run_instances(ImageId=sandbox.BASE_IMAGE, MinCount=1, MaxCount=1)
        amis: dict[str, str] = {}
        for d in catalog.all():
            tags = {"SHA": fps[d.name], model.TAG_DEFINITION: d.name, model.TAG_BUILD_ID: d.name}
            if d.parent:
                tags[model.TAG_PARENT_AMI] = amis[d.parent]
            amis[d.name] = ec2.create_image(
                InstanceId=instance["Instances"][0]["InstanceId"],
                Name=f"{d.name}-{name}",
                TagSpecifications=[
                    {
                        "ResourceType": "image",
                        "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
                    }
                ],
            )["ImageId"]

    threads = [threading.Thread(target=region, args=(r,)) for r in REGIONS]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    path.with_suffix(".fingerprints.json").write_text(json.dumps(sorted(fps.values())))


def by_region(calls: Mapping[tuple[str, str], int], *actions: str) -> Counter[str]:
    """Calls per region (only those of `actions`, when given)."""
    counted: Counter[str] = Counter()
    for (region, action), k in calls.items():
        if not actions or action in actions:
            counted[region] += k
    return counted


def by_action(calls: Mapping[tuple[str, str], int]) -> dict[str, dict[str, int]]:
    """Region -> action -> calls, for the results file."""
    table: dict[str, dict[str, int]] = {}
    for (region, action), k in sorted(calls.items()):
        table.setdefault(region, {})[action] = k
    return table


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def run_rows(
    work: Path,
    env: dict[str, str],
    endpoint: str,
    rows: list[tuple[str, str, str, str]],
    target: Callable[[str, bool], None],
    *,
    make_repo: Callable[..., list[str]],
    family_repo: Callable[..., list[str]],
    check: Callable[..., str],
    reset: Callable[[], None],
    n: int,
    repeat: int,
) -> dict[str, object]:
    """The latency world's rows (printed with the rest), and their figures. Rows 13 and 14 each
    start from an empty sandbox (`reset`): their catalogs are worlds of their own."""
    repo = work / f"factory-{n}"
    names = catalog_repo(make_repo, repo, n)
    publish_everywhere(repo)
    delaying = Delaying(endpoint)
    results: dict[str, object] = {"delay_s": DELAY, "jitter_s": JITTER, "n": n}
    with delaying.proxy:
        slow = {**env, "AWS_ENDPOINT_URL": delaying.proxy.endpoint}
        fps = str(repo.with_suffix(".fingerprints.json"))
        limit_argv = [PY, "-c", LIMIT, fps, ",".join(REGIONS)]
        status = [PY, "-m", "bridge", "status", "--json", "--repo", str(repo), "-q"]
        check(status, slow)  # writes the slim models and the caches once
        limits, bridge = [], []
        calls: Counter[tuple[str, str]] = Counter()
        for _ in range(repeat):
            limits.append(delaying.counted(lambda: check(limit_argv, slow))[0])
            wall, calls = delaying.counted(lambda: check(status, slow))
            bridge.append(wall)
        limit, t_status = median(limits), median(bridge)
        per_region = by_region(calls)
        lookups = by_region(calls, "DescribeImages")
        most = max(lookups.values())
        allowed = math.ceil(n / 200)
        results["survey"] = {"limit_s": limit, "bridge_s": t_status, "calls": dict(per_region)}
        target(f"10 survey N={n} over 20 regions <= 1.50x the limit", t_status / limit <= 1.50)
        target(f"10 survey: DescribeImages per region <= {allowed}", most <= allowed)
        rows.append(
            (
                f"10 status --all, N={n}, 20 regions, {DELAY * 1000:.0f} ms per call",
                f"{t_status:.2f} s",
                f"{t_status / limit:.2f}x",
                f"<= 1.50x limit ({limit:.2f} s); DescribeImages/region {most} <= {allowed}; "
                f"calls/region {max(per_region.values())}",
            )
        )

        # The limit of one definition's answer: its chain's fingerprints, one DescribeImages per
        # region, the regions at once (as the sandbox serves them: one request at a time).
        catalog = load_catalog(repo)
        snapshot = fingerprint_all(open_repo(repo), catalog.closure([names[-1]]))
        chain = repo.with_suffix(".chain.json")
        chain.write_text(json.dumps(sorted(f.value for f in snapshot.fingerprints.values())))
        chain_limit = [PY, "-c", LIMIT, str(chain), ",".join(REGIONS)]
        query = json.dumps({"definition": names[-1], "repo": str(repo)})
        external = [PY, "-m", "bridge", "external"]
        check(external, slow, stdin=query)
        floors, hits = [], []
        hit_calls: Counter[tuple[str, str]] = Counter()
        for _ in range(repeat):
            floors.append(delaying.counted(lambda: check(chain_limit, slow))[0])
            wall, hit_calls = delaying.counted(lambda: check(external, slow, stdin=query))
            hits.append(wall)
        floor, t_hit = median(floors), median(hits)
        results["external_hit"] = {
            "limit_s": floor,
            "bridge_s": t_hit,
            "calls": sum(hit_calls.values()),
        }
        target("11 cache-hit external over 20 regions <= 1.20x the limit", t_hit / floor <= 1.20)
        rows.append(
            (
                "11 external, cache hit, one definition of that catalog (20 regions)",
                f"{t_hit * 1000:.0f} ms",
                f"{t_hit / floor:.2f}x",
                f"<= 1.20x limit ({floor * 1000:.0f} ms: a process, 1 lookup/region at once); "
                f"{sum(hit_calls.values())} calls",
            )
        )

        gc = [PY, "-m", "bridge", "gc", "--json", "--repo", str(repo), "-q"]
        wall, gc_calls = delaying.counted(lambda: check(gc, slow))
        regions_asked = {region for region, _ in gc_calls}
        results["gc_dry_run"] = {
            "s": wall,
            "calls": sum(gc_calls.values()),
            "regions": len(regions_asked),
        }
        per = max(by_region(gc_calls).values())
        rows.append(
            (
                "12 gc dry run, 20 regions (each region's scan at once)",
                f"{wall:.2f} s",
                "-",
                f"stated: {sum(gc_calls.values())} calls in {len(regions_asked)} regions, at "
                f"most {per} in one (the sandbox serves one request at a time)",
            )
        )
        reset()
        results["wide_build"] = wide_build(
            work, slow, delaying, rows, target, family_repo=family_repo, check=check
        )
        reset()
        results["revoke_tree"] = revoke_tree(
            work, slow, delaying, rows, target, make_repo=make_repo, check=check
        )
    return results


def commit(path: Path, message: str) -> None:
    identity = ["-c", "user.name=bench", "-c", "user.email=bench@example.invalid"]
    subprocess.run(["git", *identity, "commit", "-qam", message], cwd=path, check=True)


def wide_build(
    work: Path,
    slow: dict[str, str],
    delaying: Delaying,
    rows: list[tuple[str, str, str, str]],
    target: Callable[[str, bool], None],
    *,
    family_repo: Callable[..., list[str]],
    check: Callable[..., str],
) -> dict[str, object]:
    """Row 13: `build --all` of a changed root and its three children (PROVISIONING seconds of
    provisioning each), each image copied to the twenty regions and shared with a hundred
    accounts, against the critical path measured through the same proxy: raw `packer build` of
    the root, then of one child on it (as the bridge runs them, on a twin repository: the same
    work, other fingerprints), then one CopyImage to available."""
    critical_repo, repo = work / "wide-critical", work / "wide"
    family_repo(critical_repo, 3, PROVISIONING, "wide-critical")
    names = family_repo(repo, 3, PROVISIONING, "wide")
    catalog_file = repo / "ami-chain.json"
    data = json.loads(catalog_file.read_text())
    data.update(regions=list(REGIONS), share=list(ACCOUNTS))
    catalog_file.write_text(json.dumps(data, indent=2))
    commit(repo, "twenty regions, a hundred accounts")

    snapshot = fingerprint_all(open_repo(critical_repo), load_catalog(critical_repo).all())
    fps = {name: f.value for name, f in snapshot.fingerprints.items()}
    endpoint = delaying.proxy.endpoint
    packer_env = {**slow, "CHECKPOINT_DISABLE": "1"}
    away = REGIONS[1]
    ec2 = boto3.client("ec2", region_name=away, endpoint_url=endpoint)

    def raw_build(name: str, base: str) -> str:
        # Exactly the variables the bridge passes to Packer for this definition.
        variables = {
            "ami_sha": fps[name],
            "ami_name": f"{name}-{fps[name][:12]}",
            "ami_base": base,
            "region": HOME,
            "ec2_endpoint": endpoint,
        }
        argv = ["packer", "build", "-machine-readable", "-color=false"]
        for k, v in sorted(variables.items()):
            argv += ["-var", f"{k}={v}"]
        out = check([*argv, f"{name}/template.json"], packer_env, cwd=critical_repo)
        lines = [line for raw in out.splitlines() if (line := packer.parse_line(raw))]
        return packer.artifacts(lines)[HOME]

    def critical_path() -> None:
        child = raw_build("child1", raw_build("root", ""))
        copy = ec2.copy_image(SourceImageId=child, SourceRegion=HOME, Name=f"child1-{away}")
        ec2.get_waiter("image_available").wait(
            ImageIds=[copy["ImageId"]], WaiterConfig={"Delay": 1, "MaxAttempts": 60}
        )

    # The end of a Packer build is its last call, DeleteKeyPair: what follows it is publishing,
    # copying and sharing.
    critical, critical_calls = delaying.counted(critical_path)
    critical_tail = delaying.after_last("DeleteKeyPair")
    time.sleep(1.1)  # Packer's {{timestamp}} in AMI names
    build = [PY, "-m", "bridge", "build", "--all", "--jobs", "4", "--repo", str(repo), "-q"]
    wall, calls = delaying.counted(lambda: check(build, slow))
    tail = delaying.after_last("DeleteKeyPair")
    ratio = wall / critical
    images = len(names)
    shares = by_region(calls, "ModifyImageAttribute")
    copies = by_region(calls, "CopyImage")
    tags = by_region(calls, "CreateTags")
    per_region = by_region(calls)
    others = [r for r in REGIONS if r != HOME]
    target("13 build, 20 regions, 100 accounts <= 1.20x the critical path", ratio <= 1.20)
    target(
        f"13 sharing: ModifyImageAttribute per region <= {images} (one per image)",
        max(shares[r] for r in REGIONS) <= images,
    )
    target(
        f"13 copies: CopyImage per other region = {images} (one per image)",
        all(copies[r] == images for r in others) and copies[HOME] == 0,
    )
    rows.append(
        (
            f"13 build --all: root + 3 children ({PROVISIONING} s each), 20 regions, 100 accounts",
            f"{wall:.2f} s",
            f"{ratio:.2f}x",
            f"<= 1.20x critical path ({critical:.2f} s: raw packer root then child, 1 copy); "
            f"per region: ModifyImageAttribute {max(shares.values())}, CopyImage "
            f"{max(copies.values())}, CreateTags {min(tags[r] for r in others)}-"
            f"{max(tags.values())}; calls/region {min(per_region[r] for r in others)}-"
            f"{max(per_region[r] for r in others)} ({HOME}: {per_region[HOME]}); after the "
            f"last Packer build {tail[0]:.2f} s, {tail[1]} calls (critical path: "
            f"{critical_tail[0]:.2f} s, {critical_tail[1]} calls)",
        )
    )
    return {
        "critical_s": critical,
        "bridge_s": wall,
        "ratio": ratio,
        "after_last_build": {
            "bridge_s": tail[0],
            "bridge_calls": tail[1],
            "critical_s": critical_tail[0],
            "critical_calls": critical_tail[1],
        },
        "accounts": len(ACCOUNTS),
        "critical_calls": sum(critical_calls.values()),
        "calls": by_action(calls),
    }


def revoke_tree(
    work: Path,
    slow: dict[str, str],
    delaying: Delaying,
    rows: list[tuple[str, str, str, str]],
    target: Callable[[str, bool], None],
    *,
    make_repo: Callable[..., list[str]],
    check: Callable[..., str],
) -> dict[str, object]:
    """Row 14: `revoke` of a root with fifty descendants (ten children, four grandchildren
    each), every build in the twenty regions, against its limit (REVOCATION): the lookups it
    cannot skip and the same writes, every region at once, each region's one after another in
    the revocation's order (parents first)."""
    repo = work / "revoke"
    names = make_repo(repo, 51, depth=51)  # one root; every other template builds on a parent
    catalog_file = repo / "ami-chain.json"
    data = json.loads(catalog_file.read_text())
    for i, name in enumerate(names[1:], start=1):
        data["definitions"][name]["parent"] = names[0] if i <= 10 else names[1 + (i - 11) // 4]
    data["regions"] = list(REGIONS)
    catalog_file.write_text(json.dumps(data, indent=2))
    commit(repo, "a root, ten children, forty grandchildren")
    publish_everywhere(repo)

    catalog = load_catalog(repo)
    root = fingerprint_all(open_repo(repo), catalog.closure([names[0]])).fingerprints[names[0]]
    limit_argv = [PY, "-c", REVOCATION, root.value, ",".join(REGIONS)]
    revoke = [PY, "-m", "bridge", "revoke", names[0], "--reason", "bench: CVE-0000-0000"]
    # The bridge first: the limit's writes deprecate the images, and a revocation leaves a
    # deprecation EC2 has already as it is (a run completed again writes nothing twice).
    wall, calls = delaying.counted(lambda: check([*revoke, "--repo", str(repo), "-q"], slow))
    limit, limit_calls = delaying.counted(lambda: check(limit_argv, slow))
    ratio = wall / limit
    builds = len(names)
    writes = by_region(calls, "CreateTags", "EnableImageDeprecation")
    lookups = by_region(calls, "DescribeImages")
    per_region = by_region(calls)
    # The lookups the limit makes in each region (the build, then a search per generation, 200
    # AMIs a call: 20, 200, 800), and one more per generation found, for its builds' copies
    # (by build ID): two generations here.
    needed = max(by_region(limit_calls, "DescribeImages").values())
    allowed = needed + 2
    target(
        "14 revoke of a root with 50 descendants, 20 regions <= 1.30x the limit",
        ratio <= 1.30,
    )
    target(
        f"14 revoke: writes per region = {2 * builds} (2 per build)",
        all(writes[r] == 2 * builds for r in REGIONS),
    )
    target(f"14 revoke: DescribeImages per region <= {allowed}", max(lookups.values()) <= allowed)
    rows.append(
        (
            "14 revoke: a root + 50 descendants (10 children, 40 grandchildren), 20 regions",
            f"{wall:.2f} s",
            f"{ratio:.2f}x",
            f"<= 1.30x limit ({limit:.2f} s: {needed} lookups + {2 * builds} writes/region, "
            f"regions at once); {sum(calls.values())} calls; per region: writes "
            f"{max(writes.values())} = 2 x {builds} builds, DescribeImages "
            f"{max(lookups.values())} <= {needed} + 2 generations, calls "
            f"{max(per_region.values())}",
        )
    )
    return {
        "limit_s": limit,
        "bridge_s": wall,
        "ratio": ratio,
        "builds": builds,
        "limit_calls": sum(limit_calls.values()),
        "calls": by_action(calls),
    }
