from __future__ import annotations

import json
import subprocess
import sys

from bridge.validation import first_error


def test_valid_documents_are_remembered_invalid_ones_are_not(tmp_path):
    good = {"definition": "base"}
    raw = json.dumps(good).encode()
    assert first_error("query.schema.json", good, raw, tmp_path) is None
    assert len(list((tmp_path / "validated").iterdir())) == 1
    bad = {"definition": 1}
    error = first_error("query.schema.json", bad, json.dumps(bad).encode(), tmp_path)
    assert error is not None and list(error.absolute_path) == ["definition"]
    assert len(list((tmp_path / "validated").iterdir())) == 1


def test_repeated_resolve_does_not_import_jsonschema(sandbox_env, repo, packer, tmp_path):
    """The second plan with the same catalog and query skips schema validation entirely."""
    query = json.dumps({"definition": "base", "repo": str(repo.path)})
    env = {
        **sandbox_env,
        "AMI_BRIDGE_CACHE_DIR": str(tmp_path / "cache"),
        "PYTHONPROFILEIMPORTTIME": "1",
    }

    def imports() -> str:
        proc = subprocess.run(
            [sys.executable, "-m", "bridge", "external"],
            input=query,
            env=env,
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stderr

    assert "jsonschema" in imports()
    assert "jsonschema" not in imports()
