"""Tests start the bridge forked from a warm server (testing.bridge): the same program, the
caller's streams, directory and environment, or a cold start where Python's settings differ."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from testing import ROOT, bridge
from testing.hold import wait_for
from tests.test_external_standin import children_of


def test_a_bridge_started_warm_is_forked_and_runs_with_the_callers_streams_and_directory(
    tmp_path,
):
    with bridge.warm_starts(tmp_path) as server:
        argv = bridge.program(os.environ)
        assert str(bridge.PROGRAM) in argv
        proc = subprocess.Popen(
            [*argv, "external"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=tmp_path,
            text=True,
        )
        # `external` reads its query first: until it has one, the forked bridge is waiting.
        wait_for(lambda: bool(children_of(server.pid)))
        (child,) = children_of(server.pid)
        out, err = proc.communicate(json.dumps({"definition": "base", "repo": "."}))
        assert child != proc.pid
    assert (proc.returncode, out) == (1, "")
    # The relative repository was taken from the caller's working directory.
    assert f"{tmp_path} is not inside a git repository" in err
    assert "Traceback" not in err


def test_a_bridge_started_warm_reads_the_callers_environment(tmp_path, repo):
    env = {**os.environ, "AMI_BRIDGE_JOBS": "many", "AMI_BRIDGE_STATE_DIR": str(tmp_path / "s")}
    with bridge.warm_starts(tmp_path):
        assert "launch.py" in " ".join(bridge.program(env))
        proc = bridge.run_bridge(["build", "base", "--repo", "."], env, cwd=repo.path)
    assert proc.code == 1
    assert "AMI_BRIDGE_JOBS is 'many'" in proc.stderr


def test_python_settings_that_differ_from_the_servers_start_the_bridge_cold(tmp_path):
    with bridge.warm_starts(tmp_path):
        assert "launch.py" in " ".join(bridge.program(os.environ))
        other_locale = "C" if os.environ.get("LC_CTYPE") != "C" else "C.UTF-8"
        for setting in ({"PYTHONIOENCODING": "latin-1"}, {"LC_CTYPE": other_locale}):
            assert bridge.program({**os.environ, **setting}) == [sys.executable, "-m", "bridge"]


def test_every_command_imports_in_a_fresh_interpreter_as_the_cli_imports_it():
    """A warm server has imported every module before a command runs; a cold start imports only
    the CLI and its command. An import that works only after another module was imported first
    would pass every warm test, and fails here."""
    commands = sorted(
        path.stem
        for path in (ROOT / "bridge" / "cli" / "commands").glob("*.py")
        if path.stem != "__init__"
    )
    assert "external" in commands
    for command in commands:
        proc = subprocess.run(
            [
                sys.executable,
                "-c",
                "import importlib, sys; import bridge.cli; "
                "importlib.import_module('bridge.cli.commands.' + sys.argv[1])",
                command,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode == 0, f"bridge.cli.commands.{command}:\n{proc.stderr}"
