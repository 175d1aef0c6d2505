"""Random and mutated queries to `ami-bridge external`, inside a real Packer repository: a clear
error or a plain report, never a crash, and never a build.

Every case runs in a clone of the example repository with the sandbox behind it, so a query
that validates goes on to the catalog, git and EC2. Each plausible query asks not to build
(`on_missing` fail or report; a mutation of it draws values that are not `build`), so any build
is a defect: Packer is a stand-in that writes a canary file, and each case asserts there is no
canary, no instance and no image. 400 cases in all: a fixed regression set, and as many from a
fresh random seed (in the session header; set AMI_BRIDGE_FUZZ_SEED to replay one).
"""

from __future__ import annotations

import io
import json
import os
import random
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, note, seed, settings
from hypothesis import strategies as st

from bridge.cli import main
from testing.bridge import run_bridge
from testing.sandbox import aws_client, own_images

# Every kill point or many generated inputs: `make test-fast` leaves it out.
pytestmark = pytest.mark.sweep

KEYS = [
    "definition", "repo", "catalog", "commit", "region", "tag_key", "owners",
    "manifest_bucket", "manifest_prefix", "allow_dirty", "expect_fingerprint", "definitions",
]  # fmt: skip
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=10,
)
# Values a person or a template might put in a key: valid ones, near misses, hostile ones.
plausible = st.sampled_from(
    [
        "", "base", "snowflake", "ghost", "Base", ".", "..", "/", "/etc", "../..", "HEAD",
        "HEAD~1", "--upload-pack=touch /tmp/x", "us-east-1", "eu-west-1", "self",
        "123456789012", "self,$(id)", "SHA", "ami-chain.json", "base/base.json", "true", "false",
        "a" * 40, "images/", "ami-chain-manifests", "x\x00y", "\u202e", "💥",
    ]
)  # fmt: skip
# "" is unset, which for `external` means build.
not_build = st.sampled_from(["fail", "report", "BUILD", "build ", "never"]) | st.text(
    max_size=12
).filter(lambda t: t not in ("build", ""))
queries = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(
        st.sampled_from(KEYS) | st.text(max_size=12), json_values | plausible, max_size=6
    ).map(lambda d: json.dumps({**d, "on_missing": "fail"}).encode()),
    # A plausible query with one value mutated.
    st.tuples(
        st.sampled_from(["fail", "report"]),
        st.sampled_from(KEYS),
        json_values | plausible | st.text(max_size=300),
    ).map(lambda c: json.dumps({"definition": "base", "on_missing": c[0], c[1]: c[2]}).encode()),
    not_build.map(lambda v: json.dumps({"definition": "snowflake", "on_missing": v}).encode()),
    st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
)
FIXED_CASES = 200
RANDOM_CASES = 200
RANDOM_SEED = int(os.environ.get("AMI_BRIDGE_FUZZ_SEED") or random.SystemRandom().randrange(2**32))


@pytest.fixture
def world(tmp_path_factory, repo, sandbox_env, monkeypatch) -> Path:
    """The repository as working directory, a Packer that leaves a canary, its own state dir."""
    bin_dir = tmp_path_factory.mktemp("fake-packer")
    canary = bin_dir / "PACKER-RAN"
    packer = bin_dir / "packer"
    packer.write_text(f"#!/bin/sh\necho \"$@\" >> '{canary}'\nexit 1\n")
    packer.chmod(0o755)
    monkeypatch.setenv("AMI_BRIDGE_PACKER", str(packer))
    monkeypatch.setenv("AMI_BRIDGE_STATE_DIR", str(tmp_path_factory.mktemp("state")))
    monkeypatch.chdir(repo.path)
    return canary


def check_case(code: int, out: str, err: str, canary: Path) -> None:
    if canary.exists():
        ran = canary.read_text()
        canary.unlink()  # each case on its own, so Hypothesis can shrink to the one that built
        raise AssertionError(f"Packer ran: {ran}")
    assert own_images() == []
    assert aws_client("ec2").describe_instances()["Reservations"] == []
    if code == 0:  # a valid query asking for a report of the missing image
        result = json.loads(out)
        assert out == json.dumps(result, sort_keys=True) + "\n"
        assert result["found"] == "false" and result["ami_id"] == "" and err == ""
        return
    assert code in (1, 3), (code, err)
    assert out == ""
    assert err.startswith("ami-bridge: error: "), err
    assert "internal error" not in err and "Traceback" not in err
    assert "\n" not in err.strip()  # one paragraph


def run_in_process(data: bytes, canary: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sys.stdin = io.TextIOWrapper(io.BytesIO(data))
    try:
        code = main(["external"])
    finally:
        sys.stdin = sys.__stdin__
    out, err = capsys.readouterr()
    check_case(code, out, err, canary)


_SETTINGS = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    "database": None,
}


@settings(max_examples=FIXED_CASES, derandomize=True, **_SETTINGS)  # type: ignore[arg-type]
@given(data=queries)
def test_fuzzed_queries_regression_set(data, world, capsys):
    run_in_process(data, world, capsys)


@seed(RANDOM_SEED)
@settings(max_examples=RANDOM_CASES, **_SETTINGS)  # type: ignore[arg-type]
@given(data=queries)
def test_fuzzed_queries_fresh_seed(data, world, capsys):
    note(f"fuzz seed {RANDOM_SEED} (replay: AMI_BRIDGE_FUZZ_SEED={RANDOM_SEED})")
    run_in_process(data, world, capsys)


@settings(max_examples=25, **_SETTINGS)  # type: ignore[arg-type]
@given(data=queries)
def test_fuzzed_raw_bytes_through_the_real_process(data, world, sandbox_env):
    env = {
        **sandbox_env,
        **{k: os.environ[k] for k in ("AMI_BRIDGE_PACKER", "AMI_BRIDGE_STATE_DIR")},
    }
    proc = run_bridge(["external"], env, stdin=data, cwd=Path.cwd())
    check_case(proc.code, proc.stdout, proc.stderr, world)


def test_the_canary_packer_would_be_seen(world, capsys):
    """The fuzz cases' assertion can fail: a query that does ask to build trips it."""
    with pytest.raises(AssertionError, match="Packer ran"):
        run_in_process(json.dumps({"definition": "base"}).encode(), world, capsys)
