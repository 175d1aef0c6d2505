"""Secrets never leave the bridge: the credentials' values, in every spelling, are masked
(masking.py)."""

from __future__ import annotations

import pytest

from bridge.masking import MASK, mask, secrets_of
from bridge.templates import CREDENTIALS

# A profile's name chooses credentials; it is no secret itself.
_NAMES_ONLY = {"AWS_PROFILE", "AWS_DEFAULT_PROFILE"}


@pytest.mark.parametrize("name", sorted(CREDENTIALS - _NAMES_ONLY))
def test_every_spelling_of_a_credential_is_masked(name):
    env = {name: "AKIAEXAMPLE0123456789", "HOME": "/home/builder-account"}
    text = "key AKIAEXAMPLE0123456789 at /home/builder-account"
    assert mask(text, secrets_of(env)) == f"key {MASK} at /home/builder-account"


def test_a_value_too_short_to_be_a_secret_is_left_alone():
    assert mask("a test run", secrets_of({"AWS_SECRET_ACCESS_KEY": "test"})) == "a test run"
