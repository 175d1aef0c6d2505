"""Random and mutated queries to `ami-bridge external`: a clear error, never a crash or a build."""

from __future__ import annotations

import io
import json
import os
import sys
from types import SimpleNamespace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.cli import main
from testing.bridge import external
from testing.sandbox import own_images

KEYS = [
    "definition", "repo", "catalog", "commit", "region", "on_missing", "tag_key", "owners",
    "manifest_bucket", "manifest_prefix", "allow_dirty",
]  # fmt: skip
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=10,
)
queries = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=12), json_values, max_size=6).map(
        lambda d: json.dumps(d).encode()
    ),
    # A plausible query with one value mutated.
    st.tuples(st.sampled_from(KEYS), json_values | st.text(max_size=300)).map(
        lambda kv: json.dumps({"definition": "base", "on_missing": "build", kv[0]: kv[1]}).encode()
    ),
    st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
)
STATS = SimpleNamespace(cases=0)


@settings(
    max_examples=int(os.environ.get("AMI_BRIDGE_FUZZ_EXAMPLES", "400")),
    derandomize=os.environ.get("AMI_BRIDGE_FUZZ_EXAMPLES") is None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=queries)
def test_fuzzed_queries_fail_cleanly(data, tmp_path, monkeypatch, capsys, sandbox_env):
    # Not a Packer repository: any query that validates still fails before AWS or Packer.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AMI_BRIDGE_PACKER", str(tmp_path / "packer-must-not-run"))
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    code = main(["external"])
    out, err = capsys.readouterr()
    STATS.cases += 1
    assert code == 1
    assert out == ""
    assert err.startswith("ami-bridge: error: "), err
    assert "internal error" not in err and "Traceback" not in err
    assert "\n" not in err.strip()  # one paragraph


def test_fuzz_built_nothing(sandbox_env):
    assert own_images() == []
    print(f"fuzz cases tried: {STATS.cases}")


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=queries)
def test_fuzzed_queries_through_the_real_process(data, sandbox_env, tmp_path):
    proc = external(
        {**sandbox_env, "AMI_BRIDGE_PACKER": str(tmp_path / "nope")}, data.decode("latin-1")
    )
    assert proc.code == 1 and proc.stdout == ""
    assert proc.stderr.startswith("ami-bridge: error: ") and "Traceback" not in proc.stderr
