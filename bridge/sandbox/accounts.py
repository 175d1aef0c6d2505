"""The sandbox's accounts and credentials: the access key `AKIA<account ID>SBOX` acts as that
account (any other key, as ACCOUNT)."""

from __future__ import annotations

BASE_IMAGE = "ami-0c55b159cbfafe1f0"
ACCESS_KEY = "sandbox"
# The account behind ACCESS_KEY, and a second one (a workload account images are shared with).
ACCOUNT = "123456789012"
OTHER_ACCOUNT = "210987654321"
SECRET_KEY = "sandbox"  # noqa: S105 - the emulator accepts any credentials


def access_key(account: str) -> str:
    """The sandbox access key that acts as `account` (an access key ID's shape: 20 characters)."""
    return f"AKIA{account}SBOX"
