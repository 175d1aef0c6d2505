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


@pytest.mark.parametrize(("value", "masked"), [("12345678", True), ("1234567", False)])
def test_a_secret_of_eight_characters_is_masked_and_one_of_seven_is_not(value, masked):
    text = f"the key is {value}."
    shown = mask(text, secrets_of({"AWS_SECRET_ACCESS_KEY": value}))
    assert shown == (f"the key is {MASK}." if masked else text)


def test_a_secret_that_contains_another_is_masked_whole():
    env = {"AWS_SESSION_TOKEN": "token-abcdefgh", "API_TOKEN": "token-abcdefgh-and-more"}
    assert secrets_of(env) == ("token-abcdefgh-and-more", "token-abcdefgh")
    assert mask("t=token-abcdefgh-and-more", secrets_of(env)) == f"t={MASK}"


@pytest.mark.parametrize(
    "name",
    [
        "CLIENT_SECRETS", "DB_PASSWORDS", "MY_SECRETKEY", "GITHUB_TOKEN", "VAULT_TOKENS",
        "SSH_PRIVATE_KEY", "STRIPE_APIKEY", "DB_PASSWD", "GOOGLE_CREDENTIALS", "SECRET",
    ],
)  # fmt: skip
def test_a_name_that_says_secret_in_any_word_is_masked(name):
    env = {name: "s3cr3t-value-42"}
    assert mask("got s3cr3t-value-42", secrets_of(env)) == f"got {MASK}"


@pytest.mark.parametrize("name", ["TOKENIZER_PATH", "KEYBOARD_LAYOUT", "HOME"])
def test_a_name_that_only_contains_such_letters_is_not(name):
    env = {name: "/usr/share/tokenizer"}
    assert mask("at /usr/share/tokenizer", secrets_of(env)) == "at /usr/share/tokenizer"
