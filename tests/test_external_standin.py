"""The external stand-in keeps the real data source's contract (the bridge is judged by it)."""

from __future__ import annotations

import json
import sys

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
