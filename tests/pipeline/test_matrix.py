"""Builds over many CI runners (matrix.py): the matrix a run needs, wave by wave, and three of its
jobs started at once building every image exactly once, children after their parent."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bridge import model
from testing.bridge import run_bridge
from testing.sandbox import builds_per_definition, own_images, tags_of


def with_tools(repo) -> None:
    """A second child of the base, `tools` (the snowflake's template with its own provisioner)."""
    template = json.loads(repo.path.joinpath("snowflake/snowflake.json").read_text())
    template["provisioners"] = [{"type": "shell-local", "inline": ["echo tools"]}]
    repo.write("tools/tools.json", json.dumps(template, indent=2))
    data = repo.catalog()
    data["definitions"]["tools"] = {"template": "tools/tools.json", "parent": "base"}
    repo.set_catalog(data)
    repo.commit("a second child")


def matrix(repo, env, *flags: str) -> dict:
    proc = run_bridge(["matrix", "--all", "--repo", str(repo.path), *flags], env)
    assert proc.code == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 1  # one line, for a CI step's outputs
    return json.loads(proc.stdout)


def test_three_matrix_jobs_at_once_build_each_image_once_children_after_their_parent(
    sandbox_env, repo, packer, tmp_path
):
    with_tools(repo)
    assert matrix(repo, sandbox_env) == {
        "waves": [
            {"include": [{"definition": "base"}]},
            {"include": [{"definition": "snowflake"}, {"definition": "tools"}]},
        ],
        "count": 2,
    }
    assert matrix(repo, sandbox_env, "--wave", "1", "--format", "circleci") == {
        "definition": ["snowflake", "tools"]
    }
    assert matrix(repo, sandbox_env, "--wave", "2") == {"include": []}

    # Every job of every wave started at once, on runners of their own (a CI system that
    # retried or overlapped them): the leases keep each image exactly-once.
    jobs = {
        name: subprocess.Popen(
            [sys.executable, "-m", "bridge", "build", name, "--repo", str(repo.path), "--json"],
            env={**sandbox_env, "AMI_BRIDGE_STATE_DIR": str(tmp_path / name)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("base", "snowflake", "tools")
    }
    results = {}
    for name, job in jobs.items():
        out, err = job.communicate(timeout=600)
        assert job.returncode == 0, err
        results[name] = json.loads(out)
    assert builds_per_definition() == {"base": 1, "snowflake": 1, "tools": 1}
    base = results["base"]["base"]["ami_id"]
    for child in ("snowflake", "tools"):
        (image,) = [i for i in own_images() if i["ImageId"] == results[child][child]["ami_id"]]
        assert tags_of(image)[model.TAG_PARENT_AMI] == base  # built after, on its parent

    for name in ("base", "snowflake", "tools"):  # a re-run of any job builds nothing
        again = run_bridge(["build", name, "--repo", str(repo.path), "--json"], sandbox_env)
        assert again.code == 0, again.stderr
        assert json.loads(again.stdout)[name]["built"] == "false"
    assert builds_per_definition() == {"base": 1, "snowflake": 1, "tools": 1}
    assert matrix(repo, sandbox_env) == {"waves": [], "count": 0}


def test_a_negative_wave_is_refused(sandbox_env, repo):
    proc = run_bridge(["matrix", "--all", "--wave", "-1", "--repo", str(repo.path)], sandbox_env)
    assert proc.code == 1 and "--wave is -1" in proc.stderr and "Traceback" not in proc.stderr


def test_a_parent_whose_image_exists_takes_no_wave_its_children_are_the_first(
    sandbox_env, repo, packer
):
    with_tools(repo)
    built = run_bridge(["build", "base", "--repo", str(repo.path), "--json"], sandbox_env)
    assert built.code == 0, built.stderr
    assert builds_per_definition() == {"base": 1}

    # The base is settled: its children wait on nothing, so they are wave 0 (no empty wave
    # before them that a CI job would run for nothing), and there is no second wave.
    assert matrix(repo, sandbox_env) == {
        "waves": [{"include": [{"definition": "snowflake"}, {"definition": "tools"}]}],
        "count": 1,
    }
    assert matrix(repo, sandbox_env, "--wave", "0", "--format", "circleci") == {
        "definition": ["snowflake", "tools"]
    }
    assert matrix(repo, sandbox_env, "--wave", "1") == {"include": []}


@pytest.mark.parametrize("fmt", ["github", "circleci"])
def test_a_wave_past_the_last_is_empty_not_an_error(fmt):
    from bridge.pipeline.matrix import encoded

    empty = {"include": []} if fmt == "github" else {"definition": []}
    assert encoded([["base"], ["snowflake"]], fmt, 1) != empty
    for wave in (2, 3, 10):
        assert encoded([["base"], ["snowflake"]], fmt, wave) == empty


def test_the_format_named_on_the_command_line_is_the_one_given(sandbox_env, repo):
    """`--format github` typed out (a string from argv, not the default's object) gives
    GitHub's shape, and `--format circleci` CircleCI's."""
    for fmt, key in (("github", "include"), ("circleci", "definition")):
        args = ["matrix", "--all", "--wave", "0", "--format", fmt, "--repo", str(repo.path)]
        proc = run_bridge(args, sandbox_env)
        assert proc.code == 0, proc.stderr
        assert list(json.loads(proc.stdout)) == [key], proc.stdout
