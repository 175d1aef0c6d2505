"""`make test-stress`: the suite under load, as on a busy shared CI runner.

A CPU and I/O load runs on every core (stress-ng from apt: `--cpu N --io N --hdd 1`, N the
cores) while `pytest -n auto` runs the suite; this is repeated RUNS times (default 3) and stops
at the first failure. Each run's wall time is printed. Extra arguments go to pytest: `make
test-stress ARGS="-k revoke" RUNS=20` runs the revocation tests twenty times under load.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    runs = int(os.environ.get("RUNS", "3"))
    stress = shutil.which("stress-ng")
    if stress is None:
        print(
            "stress-ng is not on PATH: install it with `apt-get install stress-ng` "
            "(`make setup` does).",
            file=sys.stderr,
        )
        return 1
    cores = os.cpu_count() or 1
    load = subprocess.Popen(
        [stress, "--cpu", str(cores), "--io", str(cores), "--hdd", "1", "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    walls: list[float] = []
    try:
        for run in range(1, runs + 1):
            started = time.monotonic()
            code = subprocess.call(
                [
                    sys.executable,
                    "-m",
                    "pytest",
                    "-n",
                    "auto",
                    "-q",
                    "-p",
                    "no:cacheprovider",
                    *args,
                ]
            )
            walls.append(time.monotonic() - started)
            print(f"test-stress: run {run} of {runs}: exit {code} in {walls[-1]:.0f} s", flush=True)
            if code != 0:
                return code
    finally:
        load.terminate()
        load.wait()
    print(f"test-stress: {runs} runs passed under load; wall times "
          + ", ".join(f"{w:.0f} s" for w in walls))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
