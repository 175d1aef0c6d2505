"""The external stand-in keeps the real data source's contract (the bridge is judged by it)."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
from pathlib import Path

from testing.providers import mirror
from testing.terraform import Terraform

PROGRAMS = {
    # Empty program elements are dropped, so python sees no extra argument.
    "good": 'import json,sys; assert sys.argv == ["-c"], sys.argv; q=json.load(sys.stdin); '
    'print(json.dumps({"echo": json.dumps(q, sort_keys=True)}))',
    "number": "print('{\"a\": 1}')",
    "trailing": 'print(\'{"a": "b"} extra\')',
    "empty": "pass",
    "failing": 'import sys; sys.stderr.write("clear message from the program"); sys.exit(3)',
    "silent_failure": "import sys; sys.exit(4)",
}


def test_external_standin_contract(tmp_path, terraform_bin, terraform_env):
    blocks = []
    for name, code in PROGRAMS.items():
        blocks.append(
            f'data "external" "{name}" {{\n'
            f"  program = {json.dumps([sys.executable, '-c', code, ''])}\n"
            '  query   = { b = "2", a = "1", gone = null, empty = "" }\n'
            "}\n"
        )
    blocks.append('output "echo" {\n  value = data.external.good.result.echo\n}\n')
    (tmp_path / "main.tf").write_text("\n".join(blocks))
    tf = Terraform(terraform_bin, tmp_path, terraform_env)
    tf.init()
    proc = tf.run("plan", "-input=false", check=False)
    assert proc.returncode == 1
    stderr = " ".join(proc.stderr.split())
    assert stderr.count("Unexpected External Program Results") == 3  # number, trailing, empty
    assert "External Program Execution Failed" in stderr
    assert "Error Message: clear message from the program" in stderr
    assert "Error Message: exit status 4" in stderr  # empty stderr: only the status
    for name in ("number", "trailing", "empty", "failing", "silent_failure"):
        assert f"data.external.{name}" in stderr
    assert "data.external.good" not in stderr
    # The good program got the query with sorted keys, null dropped, empty string kept.
    (tmp_path / "main.tf").write_text(blocks[0] + blocks[-1])
    tf.run("apply", "-input=false", "-auto-approve")
    assert json.loads(tf.outputs()["echo"]) == {"a": "1", "b": "2", "empty": ""}


# The grandparent of the data source's program: the process that started the provider.
PROBE = (
    "import json, os; ppid = open(f'/proc/{os.getppid()}/stat').read().rsplit(')', 1)[1].split()[1]; "
    "starter = open(f'/proc/{ppid}/cmdline', 'rb').read().split(b'\\0'); "
    "print(json.dumps({'probe': os.environ.get('AMI_BRIDGE_PROBE', ''), 'cwd': os.getcwd(), "
    "'starter': ' '.join(a.decode() for a in starter)}))"
)


def test_a_warm_started_standin_runs_with_terraforms_environment_and_directory(
    tmp_path, terraform_bin, terraform_env
):
    (tmp_path / "main.tf").write_text(
        'data "external" "probe" {\n'
        f"  program = {json.dumps([sys.executable, '-c', PROBE])}\n"
        "}\n"
        'output "probe" {\n  value = data.external.probe.result\n}\n'
    )
    tf = Terraform(terraform_bin, tmp_path, {**terraform_env, "AMI_BRIDGE_PROBE": "from-terraform"})
    tf.init()
    tf.run("apply", "-input=false", "-auto-approve")
    probe = tf.outputs()["probe"]
    # Forked from the warm server, yet with what Terraform gave the provider process it started.
    assert "warm.py" in probe["starter"], probe
    assert probe["probe"] == "from-terraform"
    assert probe["cwd"] == str(tmp_path)


HANDSHAKE = {
    "TF_PLUGIN_MAGIC_COOKIE": "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2",
    "PLUGIN_PROTOCOL_VERSIONS": "6",
}


def children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def test_a_warm_started_standin_ends_with_the_process_terraform_started(tmp_path):
    env = {**os.environ, **mirror.build(tmp_path), **HANDSHAKE}
    executable = next(tmp_path.glob("mirror/**/terraform-provider-external_*"))
    with mirror.warm_starts(tmp_path) as server:
        launcher = subprocess.Popen([str(executable)], env=env, stdout=subprocess.PIPE, text=True)
        assert launcher.stdout is not None
        # go-plugin's handshake: core protocol 1, Terraform plugin protocol 6, a socket.
        assert launcher.stdout.readline().startswith("1|6|unix|")
        (provider,) = children_of(server.pid)
        exited = os.pidfd_open(provider)
        launcher.kill()  # as Terraform kills a plugin that does not stop
        launcher.wait()
        assert select.select([exited], [], [], 120)[0] == [exited], "the provider outlived it"
        os.close(exited)
