"""`make demo`: the bridge on the embedded sandbox, end to end, with real Packer and git.

1. Start the sandbox (a local AWS) and make a git repository from examples/packer-repo.
2. Resolve `snowflake` the way Terraform does: base, then snowflake, are built with Packer.
3. Resolve again: nothing is built.
4. Commit a change to the base's baseline task: base and snowflake are rebuilt.
5. The upstream publisher releases a patched Ubuntu image that the base's `source_ami_filter`
   matches: the base's fingerprint names its upstream image, so base and snowflake are rebuilt
   on the new one, with no commit.
6. Show the status table and the manifests in S3.
7. Run the CI job's Terraform (terraform/, build_phase = apply): a launch template for the
   snowflake, an Auto Scaling group on its newest version and a deployment manifest; a second
   plan has nothing to do. A committed base change is then applied: both images are rebuilt,
   the template gets version 2 and the group rolls onto it in one instance refresh. Terraform
   1.0.3 gets hashicorp/null from PyPI and the test stand-ins for hashicorp/external and
   hashicorp/aws (testing/providers/), since the registry is out of reach here.
8. Stop the sandbox.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import boto3

from bridge import sandbox

HERE = Path(__file__).resolve().parent
BUCKET = "ami-chain-manifests"


def step(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=demo", "-c", "user.email=demo@example.invalid", *args],
        cwd=repo,
        check=True,
        stdout=subprocess.DEVNULL,
    )


def external(repo: Path, env: dict[str, str], definition: str) -> dict[str, str]:
    """Run `ami-bridge external` exactly as Terraform's external data source would."""
    query = json.dumps({"definition": definition, "repo": str(repo)})
    proc = subprocess.run(
        [sys.executable, "-m", "bridge", "external"],
        input=query,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        sys.exit(f"ami-bridge external failed:\n{proc.stderr}")
    result: dict[str, str] = json.loads(proc.stdout)
    print(f"   query : {query}")
    print(
        f"   result: ami_id={result['ami_id']} built={result['built']} "
        f"parent_ami_id={result['parent_ami_id'] or '-'} fingerprint={result['fingerprint'][:12]}"
    )
    return result


def publish_upstream(name: str) -> str:
    """A new public image in the upstream publisher's account (the sandbox serves any account)."""
    ec2 = boto3.client(
        "ec2",
        region_name="us-east-1",
        aws_access_key_id=sandbox.access_key("099720109477"),
        aws_secret_access_key=sandbox.SECRET_KEY,
    )
    instance = ec2.run_instances(ImageId=sandbox.BASE_IMAGE, MinCount=1, MaxCount=1)
    ami: str = ec2.create_image(InstanceId=instance["Instances"][0]["InstanceId"], Name=name)[
        "ImageId"
    ]
    ec2.modify_image_attribute(
        ImageId=ami, Attribute="launchPermission", LaunchPermission={"Add": [{"Group": "all"}]}
    )
    return ami


def builds(env: dict[str, str]) -> list[tuple[str, str]]:
    ec2 = boto3.client("ec2", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1")
    images = ec2.describe_images(Owners=["self"])["Images"]
    rows = []
    for image in sorted(images, key=lambda i: i["CreationDate"]):
        tags = {t["Key"]: t["Value"] for t in image.get("Tags", [])}
        rows.append((tags.get("ami-chain:definition", "?"), image["ImageId"]))
    return rows


def terraform(work: Path, env: dict[str, str], repo: Path) -> None:
    from testing.providers import mirror

    binary = str(Path(sys.executable).parent / "terraform")
    tf_env = {**env, **mirror.build(work / "terraform-mirror")}
    tree = work / "tf"
    shutil.copytree(
        HERE.parent / "terraform", tree / "terraform", ignore=shutil.ignore_patterns(".terraform*")
    )
    shutil.copytree(
        HERE.parent / "modules", tree / "modules", ignore=shutil.ignore_patterns(".terraform*")
    )
    bridge = json.dumps([str(Path(sys.executable).parent / "ami-bridge")])
    variables = [
        "-var", f"repo_dir={repo}", "-var", f"manifest_bucket={BUCKET}",
        "-var", "s3_use_path_style=true", "-var", f"bridge_command={bridge}",
    ]  # fmt: skip

    def run(*args: str) -> str:
        proc = subprocess.run(
            [binary, *args, "-no-color"],
            cwd=tree / "terraform",
            env=tf_env,
            capture_output=True,
            text=True,
        )
        if proc.returncode not in (0, 2):
            sys.exit(f"terraform {args[0]} failed:\n{proc.stdout}\n{proc.stderr}")
        return proc.stdout

    step("Terraform, as the CI job runs it: terraform apply of terraform/")
    run("init", "-input=false")
    out = run("apply", "-input=false", "-auto-approve", *variables)
    summary = out[out.index("Apply complete!") :].splitlines()
    print("   " + "\n   ".join(line for line in summary if line.strip() and line != "Outputs:"))
    step("terraform plan again: nothing to do")
    plan = run("plan", "-input=false", "-detailed-exitcode", *variables)
    print(
        "   " + next(line for line in plan.splitlines() if line.startswith(("No changes", "Plan:")))
    )

    step("Commit a base change; terraform apply rebuilds, and the fleet rolls onto the new image")
    baseline = repo / "base" / "tasks" / "baseline.sh"
    baseline.write_text(baseline.read_text() + 'echo "baseline: fleet roll"\n')
    git(repo, "commit", "-q", "-am", "Baseline: fleet roll")
    run("apply", "-input=false", "-auto-approve", *variables)
    outputs = json.loads(run("output", "-json"))
    fleet = outputs["fleet_name"]["value"]
    autoscaling = boto3.client("autoscaling", region_name="us-east-1")
    (group,) = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[fleet])[
        "AutoScalingGroups"
    ]
    refreshes = autoscaling.describe_instance_refreshes(AutoScalingGroupName=fleet)
    version = group["LaunchTemplate"]["Version"]
    assert version == str(outputs["launch_template_version"]["value"]) == "2", version
    assert len(refreshes["InstanceRefreshes"]) == 1, refreshes
    print(
        f"   {fleet} runs launch template version {version} "
        f"({outputs['snowflake_ami_id']['value']}); instance refreshes: "
        + ", ".join(r["Status"] for r in refreshes["InstanceRefreshes"])
    )


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="ami-bridge-demo-"))
    repo = work / "packer-repo"
    shutil.copytree(HERE / "packer-repo", repo)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "Base and snowflake images")

    step("Starting the sandbox (local AWS)")
    with sandbox.running() as box:
        env = {**os.environ, **box.env(), "AMI_BRIDGE_STATE_DIR": str(work / "state")}
        os.environ.update(box.env())
        print(f"   endpoint {box.endpoint}; Packer repository {repo}")
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=BUCKET)

        step("Run 1: nothing exists yet, so base then snowflake are built with Packer")
        first = external(repo, env, "snowflake")
        print(f"   images now: {builds(env)}")

        step("Run 2: same commit, so nothing is built")
        second = external(repo, env, "snowflake")
        assert second["ami_id"] == first["ami_id"] and second["built"] == "false"
        print(f"   images now: {builds(env)}")

        step("Run 3: commit a change to base/tasks/baseline.sh, which both images run")
        baseline = repo / "base" / "tasks" / "baseline.sh"
        baseline.write_text(baseline.read_text() + 'echo "baseline: audit logging"\n')
        git(repo, "commit", "-q", "-am", "Baseline: audit logging")
        third = external(repo, env, "snowflake")
        assert third["built"] == "true" and third["parent_ami_id"] != first["parent_ami_id"]
        print(f"   images now: {builds(env)}")

        step("Run 4: Canonical publishes a patched Ubuntu 20.04 image; the base tracks it")
        patched = publish_upstream("ubuntu/images/hvm-ssd/ubuntu-focal-20.04-amd64-server-20261127")
        fourth = external(repo, env, "snowflake")
        assert fourth["built"] == "true" and fourth["parent_ami_id"] != third["parent_ami_id"]
        print(f"   {patched} published; images now: {builds(env)}")
        third = fourth

        step("ami-bridge status")
        subprocess.run(
            [sys.executable, "-m", "bridge", "status", "--repo", str(repo)], env=env, check=True
        )

        step(f"Manifests in s3://{BUCKET}")
        s3 = boto3.client("s3", region_name="us-east-1")
        for obj in s3.list_objects_v2(Bucket=BUCKET).get("Contents", []):
            print(f"   s3://{BUCKET}/{obj['Key']}")
        latest = third["manifest_uri"].removeprefix(f"s3://{BUCKET}/")
        body = s3.get_object(Bucket=BUCKET, Key=latest)["Body"].read().decode()
        print(f"\n   {third['manifest_uri']}:")
        print("   " + body.strip().replace("\n", "\n   "))

        terraform(work, env, repo)

        step("The catalog at a glance: ami-bridge report --html")
        written = subprocess.run(
            [sys.executable, "-m", "bridge", "report", "--html", str(work / "report"),
             "--repo", str(repo), "-q"],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()  # fmt: skip
        report = Path(written)

        step("Stopping the sandbox")
    print(f"   done; build logs are under {work / 'state' / 'logs'}")
    print(f"   the report: {report} (open it in a browser)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
