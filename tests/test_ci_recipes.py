"""The CI recipes in examples/ci run as written: their shell steps, in order, against the sandbox
with real Packer and Terraform, so they cannot rot.

What a CI service provides (checkouts, credentials, tool installs) the test world provides
instead: the Packer repository beside a copy of the root configuration, the sandbox's
credentials, Packer and Terraform on PATH, and ami-bridge installed in this environment. The
steps that fetch those are named `Check out ...` or `Install ...` and are the only ones skipped.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
import yaml

from testing import ROOT
from testing.sandbox import BUCKET, aws_client, own_images, tags_of

RECIPES = ROOT / "examples" / "ci"
PROVIDED = ("Check out", "Install")
RUN_ID = "4242"


def github_steps(workspace: Path) -> Iterator[tuple[str, str, dict[str, str]]]:
    """(job, script, env) of every `run` step, jobs in `needs` order, with the expressions this
    workflow uses evaluated as GitHub would."""
    workflow = yaml.safe_load((RECIPES / "github-actions" / "ami-chain.yml").read_text())
    values = {
        "github.workspace": str(workspace),
        "vars.AMI_MANIFEST_BUCKET": BUCKET,
        "github.ref": "refs/heads/main",
    }

    def evaluate(text: str) -> str:
        return re.sub(r"\$\{\{\s*([\w.]+)\s*\}\}", lambda m: values[m.group(1)], str(text))

    top = {k: evaluate(v) for k, v in workflow.get("env", {}).items()}
    done: list[str] = []
    jobs = workflow["jobs"]
    while len(done) < len(jobs):
        ready = [
            name
            for name, job in jobs.items()
            if name not in done and all(n in done for n in _listed(job.get("needs")))
        ]
        assert ready, f"the jobs' needs form a cycle: {sorted(set(jobs) - set(done))}"
        for name in ready:
            job = jobs[name]
            env = {**top, **{k: evaluate(v) for k, v in job.get("env", {}).items()}}
            for step in job["steps"]:
                if "run" not in step or str(step.get("name", "")).startswith(PROVIDED):
                    continue
                step_env = {k: evaluate(v) for k, v in step.get("env", {}).items()}
                yield name, evaluate(step["run"]), {**env, **step_env}
            done.append(name)


def circleci_steps(workspace: Path) -> Iterator[tuple[str, str, dict[str, str]]]:
    """(job, script, env) of every `run` step of the workflow's jobs, in `requires` order, with
    reusable commands expanded."""
    config = yaml.safe_load((RECIPES / "circleci" / "config.yml").read_text())
    (workflow,) = config["workflows"].values()
    commands = config.get("commands", {})
    for entry in workflow["jobs"]:
        name = entry if isinstance(entry, str) else next(iter(entry))
        job = config["jobs"][name]
        executor = config["executors"][job["executor"]]
        env = {**executor.get("environment", {}), **job.get("environment", {})}
        for step in _expand(job["steps"], commands):
            run = step.get("run") if isinstance(step, dict) else None
            if run is None:
                continue
            run = {"command": run} if isinstance(run, str) else run
            if str(run.get("name", "")).startswith(PROVIDED):
                continue
            yield name, run["command"], {k: str(v) for k, v in env.items()}


def _expand(steps: list, commands: Mapping) -> Iterator:
    for step in steps:
        key = step if isinstance(step, str) else next(iter(step))
        if key in commands:
            yield from _expand(commands[key]["steps"], commands)
        else:
            yield step


def _listed(value: object) -> list[str]:
    return [] if value is None else [value] if isinstance(value, str) else list(value)


@pytest.fixture
def workspace(tmp_path, repo, sandbox_env, terraform_env, terraform_bin, monkeypatch):
    """A CI checkout: terraform/ and modules/ (this repository) with the Packer repository
    beside them as packer-images/, and the environment the CI service would give the steps."""
    work = tmp_path / "workspace"
    work.mkdir()
    for part in ("terraform", "modules"):
        shutil.copytree(ROOT / part, work / part, ignore=shutil.ignore_patterns(".terraform*"))
    shutil.move(str(repo.path), work / "packer-images")
    return work


def run_steps(steps, env: dict[str, str], cwd: Path) -> list[str]:
    ran = []
    for job, script, step_env in steps:
        lint = subprocess.run(
            [str(Path(sys.executable).parent / "shellcheck"), "--shell=bash", "-"],
            input=script,
            capture_output=True,
            text=True,
        )
        assert lint.returncode == 0, (
            f"{job}: shellcheck finds problems in:\n{script}\n{lint.stdout}"
        )
        # Both services run steps with bash -eo pipefail.
        proc = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
            cwd=cwd,
            env={**env, **step_env},
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, (
            f"{job}: step failed ({proc.returncode}):\n{script}\n{proc.stdout}\n{proc.stderr}"
        )
        ran.append(script)
    return ran


def ci_env(sandbox_env, terraform_env, terraform_bin: str, tmp_path: Path) -> dict[str, str]:
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "terraform").symlink_to(terraform_bin)
    return {
        **sandbox_env,
        **terraform_env,
        # ami-bridge (and shellcheck) as installed in this environment.
        "PATH": os.pathsep.join([str(tools), str(Path(sys.executable).parent), os.environ["PATH"]]),
        # The sandbox serves S3 by path.
        "TF_VAR_s3_use_path_style": "true",
    }


def check_outcome(workspace: Path, build_url: str) -> None:
    images = {tags_of(i)["ami-chain:definition"]: i for i in own_images()}
    assert set(images) == {"base", "snowflake"}
    assert {tags_of(i)["ami-chain:build-url"] for i in images.values()} == {build_url}
    assert (workspace / "images.json").exists()
    templates = aws_client("ec2").describe_launch_templates()["LaunchTemplates"]
    assert len(templates) == 1  # the saved plan was applied


def test_the_github_actions_workflow_runs_as_written(
    workspace, sandbox_env, terraform_env, terraform_bin, tmp_path
):
    env = {
        **ci_env(sandbox_env, terraform_env, terraform_bin, tmp_path),
        "GITHUB_RUN_ID": RUN_ID,
        "GITHUB_REPOSITORY": "example/infra",
        "GITHUB_SERVER_URL": "https://github.com",
    }
    ran = run_steps(github_steps(workspace), env, workspace)
    assert any("ami-bridge build --all" in s for s in ran)
    assert any("apply -input=false tfplan" in s for s in ran)
    check_outcome(workspace, f"https://github.com/example/infra/actions/runs/{RUN_ID}")


def test_the_circleci_workflow_runs_as_written(
    workspace, sandbox_env, terraform_env, terraform_bin, tmp_path
):
    url = f"https://app.circleci.com/pipelines/gh/example/infra/{RUN_ID}"
    env = {
        **ci_env(sandbox_env, terraform_env, terraform_bin, tmp_path),
        "CIRCLE_BUILD_URL": url,
        "TF_VAR_manifest_bucket": BUCKET,
    }
    ran = run_steps(circleci_steps(workspace), env, workspace)
    assert any("ami-bridge build --all" in s for s in ran)
    assert any("apply -input=false tfplan" in s for s in ran)
    check_outcome(workspace, url)


def _fanout_children(packer_repo: Path) -> None:
    """Three children of the base (the snowflake and two more), so a wave has three shards."""
    import json

    template = json.loads((packer_repo / "snowflake" / "snowflake.json").read_text())
    catalog = json.loads((packer_repo / "ami-chain.json").read_text())
    for name in ("tools", "agent"):
        template["provisioners"] = [{"type": "shell-local", "inline": [f"echo {name}"]}]
        (packer_repo / name).mkdir()
        (packer_repo / name / f"{name}.json").write_text(json.dumps(template, indent=2))
        catalog["definitions"][name] = {"template": f"{name}/{name}.json", "parent": "base"}
    (packer_repo / "ami-chain.json").write_text(json.dumps(catalog, indent=2))
    for argv in (["add", "-A"], ["commit", "-q", "-m", "three children"]):
        subprocess.run(["git", *argv], cwd=packer_repo, check=True, capture_output=True)


def run_fanout(workspace: Path, env: dict[str, str], tmp_path: Path) -> dict[str, list[str]]:
    """The fan-out workflow as GitHub runs it: the plan job, then each wave job's matrix, every
    shard at once on a runner of its own (its own state directory). The shards each wave ran."""
    import json
    import threading

    workflow = yaml.safe_load((RECIPES / "github-actions" / "ami-chain-fanout.yml").read_text())
    jobs = workflow["jobs"]
    tmp_path.mkdir(parents=True, exist_ok=True)
    outputs_file = tmp_path / "github_output"
    outputs_file.write_text("")
    plan_steps = [
        ("plan", s["run"], {"GITHUB_OUTPUT": str(outputs_file)})
        for s in jobs["plan"]["steps"]
        if "run" in s and not str(s.get("name", "")).startswith(PROVIDED)
    ]
    run_steps(plan_steps, env, workspace)
    outputs = dict(line.split("=", 1) for line in outputs_file.read_text().splitlines())
    assert set(outputs) == {"wave0", "wave1", "wave2"}
    ran: dict[str, list[str]] = {}
    for wave in ("wave0", "wave1", "wave2"):
        job = jobs[wave]
        assert job["strategy"]["matrix"] == f"${{{{ fromJSON(needs.plan.outputs.{wave}) }}}}"
        include = json.loads(outputs[wave])["include"]
        ran[wave] = [entry["definition"] for entry in include]
        if not include:  # the job's `if` skips it
            continue
        steps = [s for s in job["steps"] if "run" in s and not str(s["name"]).startswith(PROVIDED)]
        failures: list[BaseException] = []

        def shard(entry: dict[str, str], steps=steps, job=job) -> None:
            assert job["env"]["DEFINITION"] == "${{ matrix.definition }}"
            runner = {
                **env,
                "DEFINITION": entry["definition"],
                "AMI_BRIDGE_STATE_DIR": str(tmp_path / f"runner-{entry['definition']}"),
            }
            try:
                run_steps([(wave, s["run"], {}) for s in steps], runner, workspace)
            except BaseException as exc:  # reported by the test thread
                failures.append(exc)

        threads = [threading.Thread(target=shard, args=(e,)) for e in include]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not failures, failures
    return ran


def test_the_github_actions_fanout_workflow_builds_wave_by_wave_each_image_once(
    workspace, sandbox_env, terraform_env, terraform_bin, tmp_path
):
    _fanout_children(workspace / "packer-images")
    env = ci_env(sandbox_env, terraform_env, terraform_bin, tmp_path)
    ran = run_fanout(workspace, env, tmp_path)
    assert ran == {"wave0": ["base"], "wave1": ["snowflake", "tools", "agent"], "wave2": []}
    images = {tags_of(i)["ami-chain:definition"]: i for i in own_images()}
    assert sorted(images) == ["agent", "base", "snowflake", "tools"]
    assert len(own_images()) == 4  # each built once
    base = images["base"]["ImageId"]
    for child in ("snowflake", "tools", "agent"):
        assert tags_of(images[child])["ami-chain:parent-ami"] == base
    # A re-run plans nothing and builds nothing.
    assert run_fanout(workspace, env, tmp_path / "again") == {
        "wave0": [],
        "wave1": [],
        "wave2": [],
    }
    assert len(own_images()) == 4
