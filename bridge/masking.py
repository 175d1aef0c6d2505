"""Secrets never leave the bridge: the values of the environment's credentials are masked in
everything it writes (Packer's output echoed and logged, its errors), as CI systems mask theirs.

A provisioner that prints its environment (`env`, `set -x`) would otherwise put the builder's
AWS secret key and session token into the build log, stderr, CI logs and Terraform's output.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

MASK = "***"
# Environment variables whose values are secrets: AWS's credentials in every spelling
# (templates.CREDENTIALS), and any whose name says so in one of its `_`-separated words: a word
# that begins with SECRET, PASSWORD, PASSWD or CREDENTIAL (CLIENT_SECRETS, MY_SECRETKEY,
# DB_PASSWORDS), a TOKEN(S) word, or a private or API key (PRIVATE_KEY, APIKEY).
_SECRET_NAME = re.compile(
    r"^(AWS_ACCESS_KEY|AWS_ACCESS_KEY_ID|AWS_SECRET_KEY|AWS_SECRET_ACCESS_KEY|AWS_SESSION_TOKEN"
    r"|AWS_SECURITY_TOKEN)$"
    r"|(^|_)(SECRET|PASSWORD|PASSWD|CREDENTIAL)[A-Z0-9]*(_|$)"
    r"|(^|_)(TOKENS?|PRIVATE_?KEYS?|API_?KEYS?)(_|$)",
    re.IGNORECASE,
)
# Shorter values are left alone: masking them would garble ordinary words.
_SHORTEST = 8


def secrets_of(env: Mapping[str, str]) -> tuple[str, ...]:
    """The secret values in `env`, longest first (so a value containing another is masked
    whole)."""
    found = {v for k, v in env.items() if _SECRET_NAME.search(k) and len(v) >= _SHORTEST}
    return tuple(sorted(found, key=len, reverse=True))


def mask(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret value replaced by ***."""
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text
