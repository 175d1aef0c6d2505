"""`make bench`: the resolve path against the seed's approach and the physical floor.

Everything runs against the sandbox in one run. Machines here are noisy, so every figure is the
median of several runs and the targets are ratios. Prints a table and writes
bench/results/<timestamp>.json (and latest.json).

    python bench/run.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path

import boto3

from bridge import registry, sandbox
from bridge.catalog import load_catalog
from bridge.fingerprint import fingerprint_all, open_repo
from testing.faultproxy import FaultProxy

ROOT = Path(__file__).resolve().parent.parent

PY = sys.executable
BIN = Path(PY).parent
GIT = shutil.which("git") or "git"
TEMPLATE = {
    "variables": {
        "ami_name": "",
        "ami_sha": "",
        "ami_base": "",
        "region": "us-east-1",
        "ec2_endpoint": "",
    },
    "builders": [
        {
            "type": "amazon-ebs",
            "region": "{{user `region`}}",
            "source_ami": "{{user `ami_base`}}",
            "instance_type": "t3.micro",
            "ami_name": "{{user `ami_name`}}-{{timestamp}}",
            "communicator": "none",
            "custom_endpoint_ec2": "{{user `ec2_endpoint`}}",
            "skip_region_validation": True,
        }
    ],
    "provisioners": [{"type": "shell-local", "script": "tasks/common.sh"}],
}


def median_time(run: Callable[[], object], repeat: int, pause: float = 0.0) -> float:
    samples = []
    for _ in range(repeat):
        time.sleep(pause)  # e.g. Packer's {{timestamp}} in AMI names needs a new second
        start = time.perf_counter()
        run()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def check(
    argv: Sequence[str], env: dict[str, str], stdin: str | None = None, cwd: Path | None = None
) -> str:
    proc = subprocess.run(list(argv), input=stdin, env=env, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:4])} failed:\n{proc.stderr}\n{proc.stdout[-3000:]}")
    return proc.stdout


def git(repo: Path, *args: str) -> str:
    return check(
        [GIT, "-c", "user.name=bench", "-c", "user.email=bench@example.invalid", *args],
        dict(os.environ),
        cwd=repo,
    )


def make_repo(path: Path, n: int, depth: int = 5) -> list[str]:
    """A catalog of n definitions: chains `depth` deep (a tree of chains)."""
    path.mkdir(parents=True)
    (path / "tasks").mkdir()
    (path / "tasks" / "common.sh").write_text("#!/bin/sh\necho common\n")
    (path / "tasks" / "common.sh").chmod(0o755)
    definitions = {}
    names = []
    for i in range(n):
        name = f"d{i:03d}"
        names.append(name)
        directory = path / name
        (directory / "tasks").mkdir(parents=True)
        template = json.loads(json.dumps(TEMPLATE))
        if i % depth == 0:  # a root builds on the sandbox's Ubuntu image
            template["builders"][0]["source_ami"] = sandbox.BASE_IMAGE
        template["provisioners"].append({"type": "shell-local", "script": f"{name}/tasks/main.sh"})
        (directory / "template.json").write_text(json.dumps(template, indent=2))
        (directory / "tasks" / "main.sh").write_text(f"#!/bin/sh\necho {name}\n")
        (directory / "tasks" / "main.sh").chmod(0o755)
        spec: dict[str, object] = {"template": f"{name}/template.json"}
        if i % depth:
            spec["parent"] = names[i - 1]
        definitions[name] = spec
    (path / "ami-chain.json").write_text(
        json.dumps({"version": 1, "definitions": definitions}, indent=2)
    )
    git(path, "init", "-q", "-b", "main")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "catalog")
    return names


def add_history(path: Path, commits: int) -> None:
    """`commits` more commits touching a file no definition uses (git fast-import: seconds)."""
    lines = []
    for i in range(commits):
        body = f"{i}\n".encode()
        message = f"history {i}\n".encode()
        lines.append(b"commit refs/heads/main\n")
        lines.append(f"committer bench <bench@example.invalid> {1700000000 + i} +0000\n".encode())
        lines.append(f"data {len(message)}\n".encode() + message)
        if i == 0:
            lines.append(b"from refs/heads/main^0\n")
        lines.append(f"M 100644 inline history.txt\ndata {len(body)}\n".encode() + body + b"\n")
    subprocess.run([GIT, "fast-import", "--quiet"], input=b"".join(lines), cwd=path, check=True)
    git(path, "reset", "-q", "--hard", "main")


FLOOR_N = (
    "import json, sys, boto3\n"
    "values = json.load(open(sys.argv[1]))\n"
    "boto3.client('ec2').describe_images(Owners=['self'], Filters=["
    "{'Name': 'tag:SHA', 'Values': values}, {'Name': 'state', 'Values': ['available', 'pending']}])\n"
)


def publish_images(path: Path, region: str = "us-east-1") -> dict[str, str]:
    """Create a tagged AMI for every definition, as builds would, without running Packer.

    Also writes <path>.fingerprints.json, the values a floor process asks DescribeImages for."""
    catalog = load_catalog(path)
    snapshot = fingerprint_all(open_repo(path), catalog.all())
    ec2 = boto3.client("ec2", region_name=region)
    instance = ec2.run_instances(ImageId=sandbox.BASE_IMAGE, MinCount=1, MaxCount=1)["Instances"][0]
    amis: dict[str, str] = {}
    for d in catalog.all():
        fp = snapshot.fingerprints[d.name].value
        ami = ec2.create_image(InstanceId=instance["InstanceId"], Name=f"{d.name}-{fp[:12]}")[
            "ImageId"
        ]
        tags = {"SHA": fp, registry.TAG_DEFINITION: d.name, registry.TAG_COMMIT: snapshot.commit}
        if d.parent:
            tags[registry.TAG_PARENT_AMI] = amis[d.parent]
        ec2.create_tags(Resources=[ami], Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
        amis[d.name] = ami
    values = sorted(f.value for f in snapshot.fingerprints.values())
    path.with_suffix(".fingerprints.json").write_text(json.dumps(values))
    return amis


class Counting:
    """Counts AWS API calls (through a loopback proxy) and git invocations (through a wrapper)."""

    def __init__(self, work: Path, endpoint: str) -> None:
        self.proxy = FaultProxy(endpoint, rate=0.0)
        self.log = work / "git-calls.log"
        self.wrapper = work / "git-wrapper"
        self.wrapper.write_text(f'#!/bin/sh\necho "$*" >> {self.log}\nexec {GIT} "$@"\n')
        self.wrapper.chmod(0o755)

    def measure(self, argv: Sequence[str], env: dict[str, str]) -> tuple[int, int]:
        self.log.write_text("")
        before = self.proxy.counters.forwarded
        env = {
            **env,
            "AWS_ENDPOINT_URL": self.proxy.endpoint,
            "GIT_PYTHON_GIT_EXECUTABLE": str(self.wrapper),
        }
        check(argv, env)
        calls = self.log.read_text().splitlines()
        return self.proxy.counters.forwarded - before, len(calls)


def seed_loop(path: Path, names: Sequence[str], env: dict[str, str]) -> None:
    """The seed pipeline's tag_exists, per definition: git ls-tree, then aws ec2 describe-images."""
    for name in names:
        line = check([GIT, "ls-tree", "HEAD", name], env, cwd=path)
        sha = line.split(" ")[2].split("\t")[0]
        check(
            [str(BIN / "aws"), "ec2", "describe-images", "--filters", f"Name=tag:SHA,Values={sha}"],
            env,
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and sizes")
    args = parser.parse_args(argv)
    repeat = 3 if args.quick else 7
    sizes = [1, 10, 50] if args.quick else [1, 10, 50, 200]
    work = Path(tempfile.mkdtemp(prefix="ami-bridge-bench-"))
    results: dict[str, object] = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    rows: list[tuple[str, str, str, str]] = []

    with sandbox.running() as box:
        os.environ.update(box.env())
        env = {**os.environ, **box.env(), "AMI_BRIDGE_STATE_DIR": str(work / "state")}
        floor_argv = [
            PY, "-c",
            "import boto3; boto3.client('ec2').describe_images(Owners=['self'], "
            "Filters=[{'Name': 'tag:SHA', 'Values': ['0' * 40]}])",
        ]  # fmt: skip
        floor = median_time(lambda: check(floor_argv, env), repeat)
        results["floor_s"] = floor
        rows.append(
            ("floor: python + boto3 + 1 DescribeImages", f"{floor * 1000:.0f} ms", "1.00x", "")
        )

        # 1a: the deepest definition of a chain 5 deep, over the external protocol.
        chain = work / "chain5"
        names = make_repo(chain, 5)
        publish_images(chain)
        query = json.dumps({"definition": names[-1], "repo": str(chain)})
        t1a = median_time(lambda: check([PY, "-m", "bridge", "external"], env, stdin=query), repeat)
        results["1a_external_depth5_s"] = t1a
        rows.append(
            (
                "1a external, depth-5 chain",
                f"{t1a * 1000:.0f} ms",
                f"{t1a / floor:.2f}x",
                "<= 1.30x",
            )
        )

        counting = Counting(work, box.endpoint)
        counting.proxy.__enter__()
        per_size: dict[str, dict[str, float]] = {}
        for n in sizes:
            box.reset()
            repo = work / f"n{n}"
            names = make_repo(repo, n)
            publish_images(repo)
            resolve = [PY, "-m", "bridge", "resolve", "--all", "--repo", str(repo), "-q"]
            t_bridge = median_time(lambda resolve=resolve: check(resolve, env), repeat)
            # The floor for N definitions asks DescribeImages for the same N fingerprints.
            floor_n_argv = [PY, "-c", FLOOR_N, str(repo.with_suffix(".fingerprints.json"))]
            floor_n = median_time(lambda a=floor_n_argv: check(a, env), repeat)
            api_calls, git_calls = counting.measure(resolve, env)
            entry = {
                "bridge_s": t_bridge,
                "floor_s": floor_n,
                "api_calls": api_calls,
                "git_invocations": git_calls,
            }
            rows.append(
                (
                    f"   floor, N={n} fingerprints in 1 DescribeImages",
                    f"{floor_n * 1000:.0f} ms",
                    "",
                    "",
                )
            )
            rows.append(
                (
                    f"1b resolve --all, N={n}",
                    f"{t_bridge * 1000:.0f} ms",
                    f"{t_bridge / floor_n:.2f}x",
                    "<= 1.50x at N=200" if n == 200 else "",
                )
            )
            rows.append(
                (
                    f"3  N={n}: AWS calls / git invocations",
                    f"{api_calls} / {git_calls}",
                    "",
                    f"DescribeImages = {-(-n // 200)}; git constant",
                )
            )
            if n <= 50:
                seed_repeat = 3 if n <= 10 else 1
                t_seed = median_time(
                    lambda repo=repo, names=names: seed_loop(repo, names, env), seed_repeat
                )
                entry["seed_s"] = t_seed
                target = {10: ">= 10x", 50: ">= 40x"}.get(n, "")
                rows.append(
                    (
                        f"2  seed loop, N={n}",
                        f"{t_seed * 1000:.0f} ms",
                        f"bridge {t_seed / t_bridge:.1f}x faster",
                        target,
                    )
                )
            per_size[str(n)] = entry
        counting.proxy.__exit__(None, None, None)
        results["sizes"] = per_size

        # 4: fingerprint time against history length.
        history: dict[str, float] = {}
        for commits in (1000, 20000):
            box.reset()
            repo = work / f"history{commits}"
            make_repo(repo, 10)
            add_history(repo, commits)
            publish_images(repo)
            resolve = [PY, "-m", "bridge", "resolve", "--all", "--repo", str(repo), "-q"]
            history[str(commits)] = median_time(lambda resolve=resolve: check(resolve, env), repeat)
        ratio = history["20000"] / history["1000"]
        results["history_s"] = history
        rows.append(
            (
                "4  resolve, 1k vs 20k commits",
                f"{history['1000'] * 1000:.0f} / {history['20000'] * 1000:.0f} ms",
                f"{ratio:.2f}x",
                "within 15%",
            )
        )

        # 6: build overhead against a raw packer build of the same template and variables.
        box.reset()
        build_repo = work / "build"
        make_repo(build_repo, 1)
        catalog = load_catalog(build_repo)
        fp = fingerprint_all(open_repo(build_repo), catalog.all()).fingerprints["d000"].value
        # Exactly what the bridge passes to Packer for this root definition.
        variables = {
            "ami_sha": fp,
            "ami_name": f"d000-{fp[:12]}",
            "ami_base": "",
            "region": "us-east-1",
            "ec2_endpoint": box.endpoint,
        }
        template = json.loads((build_repo / "d000" / "template.json").read_text())
        overhead: dict[str, dict[str, float]] = {}
        for label, provisioning in (("bare", 0), ("5 s provisioning", 5)):
            if provisioning:
                template["provisioners"].insert(
                    0, {"type": "shell-local", "inline": [f"sleep {provisioning}"]}
                )
                (build_repo / "d000" / "template.json").write_text(json.dumps(template, indent=2))
                git(build_repo, "commit", "-qam", "provisioning")
                fp = (
                    fingerprint_all(open_repo(build_repo), catalog.all()).fingerprints["d000"].value
                )
                variables.update(ami_sha=fp, ami_name=f"d000-{fp[:12]}")
            raw = ["packer", "build", "-machine-readable", "-color=false"]
            for k, v in sorted(variables.items()):
                raw += ["-var", f"{k}={v}"]
            raw.append("d000/template.json")
            packer_env = {**env, "CHECKPOINT_DISABLE": "1"}
            t_raw = median_time(
                lambda raw=raw, e=packer_env: check(raw, e, cwd=build_repo), 3, pause=1.1
            )
            build = [
                PY,
                "-m",
                "bridge",
                "build",
                "d000",
                "--force",
                "--repo",
                str(build_repo),
                "-q",
            ]
            t_bridge = median_time(lambda build=build: check(build, env), 3, pause=1.1)
            overhead[label] = {"packer_s": t_raw, "bridge_s": t_bridge}
            rows.append(
                (
                    f"6  build ({label}): bridge vs raw packer",
                    f"{t_bridge * 1000:.0f} / {t_raw * 1000:.0f} ms",
                    f"{t_bridge / t_raw:.2f}x (+{(t_bridge - t_raw) * 1000:.0f} ms)",
                    "<= 1.10x",
                )
            )
        results["build_overhead"] = overhead

        # 5: terraform plan of terraform/ with nothing to build.
        results["terraform_plan"] = terraform_plan(work, env, rows, repeat=3)

    print_table(rows)
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    for name in (f"{stamp}.json", "latest.json"):
        (out_dir / name).write_text(json.dumps({**results, "table": rows}, indent=2) + "\n")
    print(f"\nresults: bench/results/{stamp}.json")
    return 0


def terraform_plan(work: Path, env: dict[str, str], rows: list, repeat: int) -> dict[str, float]:
    from testing.providers import mirror

    terraform = str(BIN / "terraform")
    tf_env = {**env, **mirror.build(work / "tf-mirror")}
    repo = work / "packer-repo"
    shutil.copytree(ROOT / "examples" / "packer-repo", repo)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "examples")
    boto3.client("s3").create_bucket(Bucket="ami-chain-manifests")
    tree = work / "tf"
    shutil.copytree(
        ROOT / "terraform", tree / "terraform", ignore=shutil.ignore_patterns(".terraform*")
    )
    shutil.copytree(
        ROOT / "modules", tree / "modules", ignore=shutil.ignore_patterns(".terraform*")
    )
    timing_log = work / "bridge-times.log"
    timed = work / "timed-bridge"
    timed.write_text(
        f"#!{PY}\nimport sys, time\nstart = time.perf_counter()\nfrom bridge.cli import main\n"
        f"code = main(sys.argv[1:])\nwith open({str(timing_log)!r}, 'a') as f:\n"
        "    f.write(f'{time.perf_counter() - start}\\n')\nsys.exit(code)\n"
    )
    timed.chmod(0o755)
    variables = [
        "-var", f"repo_dir={repo}", "-var", "manifest_bucket=ami-chain-manifests",
        "-var", "s3_use_path_style=true", "-var", f"bridge_command={json.dumps([str(timed)])}",
    ]  # fmt: skip
    cwd = tree / "terraform"
    check([terraform, "init", "-input=false", "-no-color"], tf_env, cwd=cwd)
    check(
        [terraform, "apply", "-input=false", "-auto-approve", "-no-color", *variables],
        tf_env,
        cwd=cwd,
    )
    totals, inside = [], []
    for _ in range(repeat):
        timing_log.write_text("")
        start = time.perf_counter()
        out = check(
            [terraform, "plan", "-input=false", "-no-color", "-detailed-exitcode", *variables],
            tf_env,
            cwd=cwd,
        )
        totals.append(time.perf_counter() - start)
        assert "No changes." in out, out
        inside.append(sum(float(x) for x in timing_log.read_text().split()))
    result = {
        "plan_s": statistics.median(totals),
        "bridge_s_sum": statistics.median(inside),
        "bridge_calls": len(timing_log.read_text().split()),
    }
    rows.append(
        (
            "5  terraform plan, nothing to build",
            f"{result['plan_s'] * 1000:.0f} ms",
            f"bridge {result['bridge_s_sum'] * 1000:.0f} ms in {result['bridge_calls']} calls",
            "",
        )
    )
    return result


def print_table(rows: Sequence[tuple[str, str, str, str]]) -> None:
    header = ("measure", "figure", "ratio", "target")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(4)]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


if __name__ == "__main__":
    raise SystemExit(main())
