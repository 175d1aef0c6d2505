"""A JSON template's `{{ }}` strings rendered as Packer 1.x renders them
(templates/jsontemplate.py)."""

from __future__ import annotations

import pytest

from bridge.templates.jsontemplate import JsonScope, json_defaults
from bridge.templates.layers import Layer, Unknown, arguments, unknown
from bridge.templates.unknowable import Unknowable

VARIABLES = {
    "name": "ubuntu/images/*",
    "pattern": "{{user `name`}}-{{user `arch`}}-*",
    "arch": "amd64",
    "release": "{{env `RELEASE`}}",
    "via": "{{user `release`}}",
    "required": None,
    "empty": "",
}


def render(text: str, *layers: Layer) -> str:
    scope = JsonScope(
        list(VARIABLES),
        [json_defaults("base/base.json", VARIABLES), *layers],
    )
    return scope.render(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain", "plain"),
        ("{{user `name`}}", "ubuntu/images/*"),
        ('{{ user "name" }}', "ubuntu/images/*"),
        ("{{user `pattern`}}", "ubuntu/images/*-amd64-*"),
        ("{{user `arch` | upper}}", "AMD64"),
        ("{{lower (user `arch` | upper)}}", "amd64"),
        ("{{split `a-b-c` `-` 1}}", "b"),
        ("{{replace_all `-` `_` (user `arch`)}}", "amd64"),
        ("a {{- /* a comment */ -}} b", "ab"),
        ("{{user `undeclared`}}", ""),  # as Packer renders it
        ("{{user `empty`}}", ""),
    ],
)
def test_knowable_templates_are_rendered(text, expected):
    assert render(text) == expected


def test_a_catalog_value_overrides_the_default_everywhere_it_is_used():
    catalog = arguments({"arch": "arm64"}, "the catalog's `variables`")
    assert render("{{user `arch`}}", catalog) == "arm64"
    assert render("{{user `pattern`}}", catalog) == "ubuntu/images/*-arm64-*"


@pytest.mark.parametrize(
    ("text", "kind", "shown"),
    [
        ("{{env `X`}}", "environment", "{{env `X`}}"),
        ("{{timestamp}}", "clock", "{{timestamp}}"),
        ("{{isotime `2006`}}", "clock", "{{isotime `2006`}}"),
        ("{{template_dir}}/x", "environment", "the absolute path of the build's files"),
        ("{{vault `/a` `b`}}", "data source", "{{vault `/a` `b`}}"),
        (
            "{{user `via`}}",
            "environment",
            "{{env `RELEASE`}} (through {{user `via`}} from the defaults in base/base.json, "
            "{{user `release`}} from the defaults in base/base.json)",
        ),
        ("{{user `required`}}", "unset", "{{user `required`}}"),
        ("{{build_name}}", "unsupported", "{{build_name}}"),
        ("{{user `name`", "unsupported", "without its `}}`"),
    ],
)
def test_what_only_the_build_knows_is_unknowable(text, kind, shown):
    with pytest.raises(Unknowable) as caught:
        render(text)
    assert caught.value.kind == kind
    assert shown in caught.value.reason


def test_a_required_variable_takes_its_value_from_a_later_layer():
    assert render("{{user `required`}}", arguments({"required": "given"}, "catalog")) == "given"


def test_the_bridges_own_variables_are_unknowable():
    bridge = unknown({"name": Unknown("ami_sha", "build", "the fingerprint")})
    with pytest.raises(Unknowable, match="ami_sha"):
        render("{{user `name`}}", bridge)
