"""`make bench`'s latency world: an image factory's catalog (N definitions, twenty regions) behind
a proxy that delays every AWS call as a real network does (DELAY seconds, +/- JITTER) and counts
the calls per region.

Each row is a ratio against the physical limit measured in the same run, through the same proxy:
for `status --all` (the resolve path's one survey), ceil(N/200) sequential DescribeImages per
region with the regions concurrent; for a cache-hit `external` of one definition, a process
asking each region once for its chain's fingerprints, the regions concurrent. gc's dry run over
the twenty regions is stated with its calls. The sandbox serves one request at a time (it
serializes writes, and EC2's Query API is all POSTs), so concurrent regions are as fast as its
one-at-a-time service allows: the limits are measured in that same world.
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

from bridge import model, sandbox
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


class Delaying:
    """The proxy: every request waits DELAY +/- JITTER before it is forwarded, counted by region
    and action."""

    def __init__(self, endpoint: str) -> None:
        self.calls: Counter[tuple[str, str]] = Counter()
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
            pause = DELAY + self.random.uniform(-JITTER, JITTER)
        time.sleep(pause)

    def counted(self, run: Callable[[], object]) -> tuple[float, Counter[tuple[str, str]]]:
        """Run `run`: its wall time and the calls it made."""
        with self.lock:
            self.calls.clear()
        started = time.monotonic()
        run()
        wall = time.monotonic() - started
        with self.lock:
            return wall, Counter(self.calls)


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
    check: Callable[..., str],
    n: int,
    repeat: int,
) -> dict[str, object]:
    """The latency world's rows (printed with the rest), and their figures."""
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
        per_region = Counter(region for (region, action), k in calls.items() for _ in range(k))
        lookups = Counter(
            region
            for (region, action), k in calls.items()
            if action == "DescribeImages"
            for _ in range(k)
        )
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
        per = max(Counter(r for (r, _), k in gc_calls.items() for _ in range(k)).values())
        rows.append(
            (
                "12 gc dry run, 20 regions (each region's scan at once)",
                f"{wall:.2f} s",
                "-",
                f"stated: {sum(gc_calls.values())} calls in {len(regions_asked)} regions, at "
                f"most {per} in one (the sandbox serves one request at a time)",
            )
        )
    return results
