"""Helpers shared by the tests, `make demo` and `make bench`: real git repositories and their
fingerprints, the real `ami-bridge` process, sandbox checks, Terraform with its offline provider
mirror, a fault proxy.

Fixtures live in tests/conftest.py; this package holds the code they (and the scripts) call.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_REPO = ROOT / "examples" / "packer-repo"
# The seed pipeline's templates as published, made to run on the sandbox (README: the seed).
SEED_REPO = ROOT / "examples" / "seed-repo"
