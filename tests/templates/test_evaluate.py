"""HCL2 expressions evaluated as Packer evaluates them (templates/evaluate.py): variables from their
layers in Packer's precedence, locals, interpolation, and what only the build can know."""

from __future__ import annotations

from typing import Any

import pytest

from bridge.templates import hcl
from bridge.templates.evaluate import HclScope
from bridge.templates.layers import (
    Layer,
    Unknown,
    arguments,
    hcl_defaults,
    hcl_var_file,
    hcl_var_file_order,
    json_var_file,
    unknown,
)
from bridge.templates.unknowable import Unknowable

TEMPLATE = """
variable "name" {
  type    = string
  default = "ubuntu/images/*"
}
variable "owners" {
  type    = list(string)
  default = ["099720109477"]
}
variable "untyped" {}
variable "release" {
  default = env("RELEASE")
}
variables {
  legacy = "old-style"
}
locals {
  arch    = "amd64"
  pattern = "${var.name}-${local.arch}-*"
  stamp   = formatdate("YYYYMMDD", timestamp())
  both    = concat(var.owners, ["self"])
  chosen  = local.arch == "amd64" ? upper(local.arch) : "other"
  map     = { a = "A", "b-c" = var.name }
  loop_a  = local.loop_b
  loop_b  = local.loop_a
  cwd     = "${path.cwd}/x"
}
local "single" {
  expression = "${local.arch}-single"
}
"""


def scope(*layers: Layer, text: str = TEMPLATE, data: Any = None) -> tuple[HclScope, hcl.Document]:
    doc = hcl.parse("img/main.pkr.hcl", text)
    return HclScope([doc], [hcl_defaults([doc]), *layers], template_dir="img", data=data), doc


def value(expression: str, *layers: Layer, data: Any = None) -> Any:
    """The value of `expression` written in the template (as a filter's would be)."""
    s, doc = scope(*layers, text=TEMPLATE + f"probe = {expression}\n", data=data)
    return s.evaluate(doc, hcl.value_of(hcl.attributes(doc.body)["probe"]))


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ('"plain"', "plain"),
        ("var.name", "ubuntu/images/*"),
        ('"${var.name}-x"', "ubuntu/images/*-x"),
        ("local.pattern", "ubuntu/images/*-amd64-*"),
        ("var.owners", ["099720109477"]),
        ("var.owners[0]", "099720109477"),
        ("local.both", ["099720109477", "self"]),
        ("local.chosen", "AMD64"),
        ('local.map["b-c"]', "ubuntu/images/*"),
        ("local.map.a", "A"),
        ("local.single", "amd64-single"),
        ("var.legacy", "old-style"),
        ('"${path.root}/files"', "img/files"),
        ('format("%s-%d", "v", 2)', "v-2"),
        ('join(",", ["a", "b"])', "a,b"),
        ('"$${literal} %%{also}"', "${literal} %{also}"),
        ('"tab\\there \\"quoted\\""', 'tab\there "quoted"'),
        ('"v${1 + 2}"', "v3"),
        ('"${1 + 2}"', 3),  # a lone interpolation is its value, unconverted
        ("true && !false", True),
        ('lookup({ a = "x" }, "b", "fallback")', "fallback"),
    ],
)
def test_knowable_expressions_are_evaluated(expression, expected):
    assert value(expression) == expected


def test_the_last_layer_that_sets_a_variable_wins():
    first = hcl_var_file("img/a.auto.pkrvars.hcl", 'name = "from-a"\n')
    second = hcl_var_file("img/b.auto.pkrvars.hcl", 'name = "from-b"\n')
    catalog = arguments({"name": "from-catalog"}, "the catalog's `variables`")
    assert value("var.name", first) == "from-a"
    assert value("var.name", first, second) == "from-b"
    assert value("var.name", first, second, catalog) == "from-catalog"
    assert value("local.pattern", second) == "from-b-amd64-*"  # locals see the final value


def test_var_files_are_applied_in_packers_order():
    """Packer applies the HCL var files (the ones it loads, then the ones it is given) before
    the JSON ones, each group in order."""
    order = hcl_var_file_order(
        ["a.auto.pkrvars.hcl", "a.auto.pkrvars.json", "b.auto.pkrvars.hcl"], ["given.pkrvars.hcl"]
    )
    assert order == [
        "a.auto.pkrvars.hcl",
        "b.auto.pkrvars.hcl",
        "given.pkrvars.hcl",
        "a.auto.pkrvars.json",
    ]
    assert value("var.name", json_var_file("img/a.auto.pkrvars.json", {"name": "j"})) == "j"


def test_a_var_argument_is_read_as_packer_reads_it():
    """`-var` text is a string for string and untyped variables, an expression otherwise."""
    catalog = arguments(
        {"name": '["not", "a", "list"]', "owners": '["1", "2"]', "untyped": "a-*"}, "catalog"
    )
    assert value("var.name", catalog) == '["not", "a", "list"]'
    assert value("var.owners", catalog) == ["1", "2"]
    assert value("var.untyped", catalog) == "a-*"
    assert value("var.owners", arguments({"owners": ["typed"]}, "catalog")) == ["typed"]


def test_an_unused_unknowable_local_does_not_matter():
    assert value("local.pattern") == "ubuntu/images/*-amd64-*"  # `stamp` is never evaluated


@pytest.mark.parametrize(
    ("expression", "kind", "shown"),
    [
        ("var.release", "environment", 'env("RELEASE") (through var.release from the defaults'),
        ('"${local.stamp}-x"', "clock", "timestamp() (through local.stamp)"),
        ('env("X")', "environment", 'env("X")'),
        ("local.cwd", "environment", "path.cwd (through local.cwd)"),
        ("data.amazon-ami.other.id", "data source", "data.amazon-ami.other.id"),
        ('vault("/secret", "k")', "data source", 'vault("/secret", "k")'),
        ("var.untyped", "unset", "var.untyped"),
        ("var.undeclared", "unsupported", "var.undeclared"),
        ("local.loop_a", "unsupported", "local.loop_a -> local.loop_b -> local.loop_a"),
        ('[for s in ["a"] : s]', "unsupported", '[for s in ["a"] : s]'),
        ('sha256("x")', "unsupported", 'sha256("x")'),
    ],
)
def test_what_only_the_build_knows_is_unknowable(expression, kind, shown):
    with pytest.raises(Unknowable) as caught:
        value(expression)
    assert caught.value.kind == kind
    assert shown in caught.value.reason
    assert "track_source: false" in caught.value.fix


def test_the_bridges_own_variables_are_unknowable():
    bridge = unknown({"name": Unknown("ami_sha", "build", "the fingerprint")})
    with pytest.raises(Unknowable) as caught:
        value("var.name", bridge)
    assert caught.value.kind == "build" and "the fingerprint" in caught.value.reason


def test_defaults_and_var_files_take_no_references():
    """As in Packer: a default may call functions but not use variables; a var file neither."""
    with pytest.raises(Unknowable) as caught:
        value("var.name", hcl_var_file("img/x.auto.pkrvars.hcl", 'name = "${var.owners}"\n'))
    assert "no references" in caught.value.reason
    assert "var.name from img/x.auto.pkrvars.hcl" in caught.value.reason
    with pytest.raises(Unknowable, match="upper"):
        value("var.name", hcl_var_file("img/x.auto.pkrvars.hcl", 'name = upper("x")\n'))


def test_an_unknowable_element_names_its_place():
    with pytest.raises(Unknowable) as caught:
        value('{ name = "a", other = env("X") }')
    assert caught.value.path == ".other"
    with pytest.raises(Unknowable) as caught:
        value('["a", local.stamp]')
    assert caught.value.path == "[1]"


def test_data_sources_are_answered_by_the_caller():
    assert value("data.amazon-ami.x.id", data=lambda names: "/".join(names)) == (
        "data/amazon-ami/x/id"
    )
