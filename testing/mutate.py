"""`make mutate`: mutation testing of the modules that carry the product's guarantees.

For each module in MODULES, cosmic-ray (PyPI `cosmic-ray`) makes every small change its
operators know (a comparison turned round, a boolean flipped, a constant changed, a loop made to
run no times, an exception handler replaced) in a scratch copy of the repository, one at a time,
and runs the tests that cover that module against it (the unit and sandbox tests named beside
it, not the whole suite). A mutant the tests fail on is killed; one they pass is a promise no
test holds. The binary-operator swaps (`+` for `**`, `<<` for `-`, ...), which make hundreds of
mutants that a type check or any run would catch, are left out.

Prints the score per module and every surviving mutant with its line; a survivor listed in
EQUIVALENT (testing/mutants-equivalent.json: the same behaviour, said why) counts as neither.
Exit status 1 when a module scores under 90%.

    python -m testing.mutate [MODULE ...]      # default: every module in MODULES
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EQUIVALENT = ROOT / "testing" / "mutants-equivalent.json"
TARGET = 0.90

# Module -> the tests that cover it (fast ones: unit and sandbox tests).
MODULES: dict[str, tuple[str, ...]] = {
    "bridge/masking.py": ("tests/test_masking.py",),
    "bridge/pipeline/matrix.py": ("tests/pipeline/test_matrix.py",),
    "bridge/pipeline/plan.py": ("tests/pipeline/test_plan.py",),
    "bridge/aws/lease.py": ("tests/aws/test_lease.py",),
    "bridge/pipeline/guard.py": ("tests/aws/test_lease.py", "tests/test_locking.py"),
    "bridge/pipeline/result.py": ("tests/pipeline/test_plan.py", "tests/cli/test_protocol.py"),
    "bridge/lifecycle/retention.py": ("tests/lifecycle/",),
    "bridge/lifecycle/references.py": ("tests/lifecycle/",),
    "bridge/lifecycle/revoke.py": ("tests/lifecycle/test_revoke.py",),
    "bridge/lifecycle/channels.py": ("tests/lifecycle/test_channels.py",),
    "bridge/pipeline/verification.py": ("tests/pipeline/test_provenance.py",),
    "bridge/pipeline/gates.py": ("tests/pipeline/test_gates.py",),
    "bridge/pipeline/referee.py": ("tests/test_observe.py",),
    "bridge/observe.py": ("tests/test_observe.py",),
    "bridge/templates/environment.py": ("tests/test_reads.py", "tests/templates/"),
    "bridge/templates/files.py": ("tests/test_reads.py", "tests/templates/"),
}

# Operators left out: arithmetic and bitwise swaps between binary operators.
EXCLUDED_OPERATORS = ("core/ReplaceBinaryOperator_.*",)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help="modules (paths) to mutate; default: all")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per mutant's tests")
    args = parser.parse_args(argv)
    if shutil.which("cosmic-ray", path=str(Path(sys.executable).parent)) is None:
        print(
            "cosmic-ray is not installed: pip install -e '.[test]' (make setup) installs it.",
            file=sys.stderr,
        )
        return 1
    chosen = args.modules or list(MODULES)
    unknown = [m for m in chosen if m not in MODULES]
    if unknown:
        print(f"not a module `make mutate` knows: {', '.join(unknown)}", file=sys.stderr)
        return 1
    equivalent = json.loads(EQUIVALENT.read_text()) if EQUIVALENT.exists() else {}
    failed = []
    for module in chosen:
        started = time.monotonic()
        outcomes = run_module(module, MODULES[module], args.timeout)
        known = {
            (e["line"], e["operator"])
            for e in equivalent.get("mutant", [])
            if e["module"] == module
        }
        killed = [o for o in outcomes if o["outcome"] == "killed"]
        survived = [o for o in outcomes if o["outcome"] == "survived"]
        real = [o for o in survived if (o["line"], o["operator"]) not in known]
        counted = len(killed) + len(real)
        score = len(killed) / counted if counted else 1.0
        minutes = (time.monotonic() - started) / 60
        print(
            f"{module}: {score:.0%} killed ({len(killed)} of {counted}; "
            f"{len(survived) - len(real)} equivalent) in {minutes:.1f} min",
            flush=True,
        )
        for o in real:
            print(f"  survived {module}:{o['line']} {o['operator']} (occurrence {o['occurrence']})")
        if score < TARGET:
            failed.append(module)
    if failed:
        print(f"under {TARGET:.0%}: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def run_module(module: str, tests: Sequence[str], timeout: float) -> list[dict[str, object]]:
    """Every mutant of `module`, tested by `tests` in a scratch copy of the repository: its
    line, operator and outcome (killed, survived, or incompetent: a mutant that cannot run)."""
    bin_dir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory(prefix="ami-bridge-mutate-") as scratch:
        work = Path(scratch) / "repo"
        # The committed tree and what is uncommitted, without caches or the virtualenv.
        shutil.copytree(
            ROOT,
            work,
            ignore=shutil.ignore_patterns(
                ".git", ".venv*", "__pycache__", ".mypy_cache", ".ruff_cache", "bench", ".state"
            ),
        )
        config = work / "mutate.toml"
        excluded = ", ".join(json.dumps(e) for e in EXCLUDED_OPERATORS)
        command = " ".join(
            [str(bin_dir / "python"), "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
             "-n", "2", *tests]
        )  # fmt: skip
        config.write_text(
            "[cosmic-ray]\n"
            f"module-path = {json.dumps(module)}\n"
            f"timeout = {timeout}\n"
            "excluded-modules = []\n"
            f"test-command = {json.dumps(command)}\n"
            "[cosmic-ray.distributor]\n"
            'name = "local"\n'
            "[cosmic-ray.filters.operators-filter]\n"
            f"exclude-operators = [{excluded}]\n"
        )
        session = work / "session.sqlite"
        env = {"PYTHONPATH": str(work), "PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin"}
        for step in (
            [str(bin_dir / "cosmic-ray"), "init", str(config), str(session)],
            [str(bin_dir / "cr-filter-operators"), str(session), str(config)],
            [str(bin_dir / "cosmic-ray"), "exec", str(config), str(session)],
        ):
            subprocess.run(step, cwd=work, env={**_base_env(), **env}, check=True)
        dumped = subprocess.run(
            [str(bin_dir / "cosmic-ray"), "dump", str(session)],
            cwd=work,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    outcomes = []
    for line in dumped.splitlines():
        item, result = json.loads(line)
        if result is None or result.get("test_outcome") is None:
            continue  # skipped by the operator filter
        (mutation,) = item["mutations"]
        outcomes.append(
            {
                "line": mutation["start_pos"][0],
                "operator": mutation["operator_name"],
                "occurrence": mutation["occurrence"],
                "outcome": result["test_outcome"],
            }
        )
    return outcomes


def _base_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "AMI_BRIDGE_"))}


if __name__ == "__main__":
    raise SystemExit(main())
