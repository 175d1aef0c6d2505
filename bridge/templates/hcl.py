"""HCL2 files through their parser's syntax tree, for readers that need expressions and their
places in the text rather than the values python-hcl2 serialises: evaluate.py (a filter's
variables and locals) and sources.py (pinning a filter to an AMI by rewriting the text).

Nodes are python-hcl2's Lark trees (its grammar, `hcl2.lark`), with positions into the text.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias, TypeGuard

if TYPE_CHECKING:
    from lark import Token, Tree

# Lark is imported when a file is parsed, not with this module: most runs of the bridge (a
# plan's `external` calls that find their images) parse no HCL, and Lark is a tenth of a start.
Node: TypeAlias = "Tree[Any]"


class HclSyntaxError(ValueError):
    """The text is not HCL2 (python-hcl2's parser refused it)."""


@dataclass(frozen=True)
class Document:
    """One parsed HCL2 file: where it is (repository path), its text and its syntax tree."""

    path: str
    text: str
    tree: Node

    @property
    def body(self) -> Node:
        """The file's top-level body (blocks and attributes)."""
        return _child(self.tree, "body")

    def source(self, node: Node) -> str:
        """The text `node` was parsed from."""
        start, end = span(node)
        return self.text[start:end]


def parse(path: str, text: str) -> Document:
    """`text` (the file at `path`) parsed, or HclSyntaxError."""
    import hcl2

    try:
        tree = hcl2.parses_to_tree(text)
    except Exception as exc:  # the parser raises its own lark errors
        raise HclSyntaxError(f"{type(exc).__name__}: {exc}") from None
    return Document(path, text, tree)


def is_tree(value: object) -> TypeGuard[Node]:
    """Whether `value` is a node of a syntax tree (not one of its tokens)."""
    from lark import Tree

    return isinstance(value, Tree)


def is_token(value: object) -> TypeGuard[Token]:
    """Whether `value` is a token of a syntax tree (a name, a keyword, literal text)."""
    from lark import Token

    return isinstance(value, Token)


def span(node: Node) -> tuple[int, int]:
    """Where `node` is in its document's text (start, end)."""
    return node.meta.start_pos, node.meta.end_pos


def blocks(body: Node, kind: str | None = None) -> Iterator[Node]:
    """The blocks directly in `body` (of type `kind`, when given)."""
    for child in body.children:
        if is_tree(child) and child.data == "block":
            if kind is None or block_type(child) == kind:
                yield child


def block_type(block: Node) -> str:
    """A block's type: `source` in `source "amazon-ebs" "x" {}`."""
    return name_of(block.children[0])


def block_labels(block: Node) -> list[str]:
    """A block's labels, quoted or not: ["amazon-ebs", "x"] in `source "amazon-ebs" "x" {}`."""
    labels = []
    for child in block.children[1:]:
        if is_tree(child) and child.data == "body":
            break
        if is_tree(child) and child.data == "string":
            labels.append(literal_string(child))
        elif is_tree(child) and child.data != "new_line_or_comment":
            labels.append(name_of(child))
    return labels


def block_body(block: Node) -> Node:
    """The body between a block's braces."""
    return _child(block, "body")


def attributes(body: Node) -> dict[str, Node]:
    """The attributes directly in `body`, by name (the `attribute` nodes)."""
    return {
        name_of(child.children[0]): child
        for child in body.children
        if is_tree(child) and child.data == "attribute"
    }


def value_of(attribute: Node) -> Node:
    """The expression an attribute is set to."""
    node = attribute.children[-1]
    assert is_tree(node)
    return node


def name_of(node: Node | Token) -> str:
    """The text of an identifier (or keyword, or true/false/null used as a name)."""
    if is_tree(node):
        return "".join(str(t) for t in node.scan_values(is_token))
    return str(node)


def literal_string(node: Node) -> str:
    """A quoted string without interpolation (a block label), unescaped."""
    text = "".join(
        str(token)
        for part in node.children
        if is_tree(part)
        for token in part.children
        if is_token(token)
    )
    return unescape(text)


def unescape(chars: str) -> str:
    """The characters of a quoted HCL string's literal part, with its escapes resolved."""
    from hcl2.utils import process_escape_sequences

    return str(process_escape_sequences(chars))


def quoted(value: str) -> str:
    """`value` as an HCL2 string literal."""
    # JSON's escapes are HCL's; `${` and `%{` must not start a template sequence.
    return json.dumps(value).replace("${", "$${").replace("%{", "%%{")


def traversal(node: Node) -> list[str] | None:
    """The names of a plain reference (`data.amazon-ami.x.id` -> its four names); None for any
    other expression."""
    steps: list[str] = []
    while True:
        if node.data == "expr_term" and len(node.children) == 1:
            inner = node.children[0]
            if is_tree(inner):
                node = inner
                continue
        if node.data == "get_attr_expr_term":
            base, step = node.children
            assert is_tree(base) and is_tree(step)
            steps.append(name_of(step.children[-1]))
            node = base
            continue
        if node.data == "identifier":
            return [name_of(node), *reversed(steps)]
        return None


def first_argument(call: Node) -> Node | None:
    """The first argument of a function call node, or None when it has none."""
    args = [c for c in call.children if is_tree(c) and c.data == "arguments"]
    return next((a for a in args[0].children if is_tree(a)), None) if args else None


def walk(node: Node) -> Iterator[Node]:
    """`node` and every tree below it, outermost first."""
    yield node
    for child in node.children:
        if is_tree(child):
            yield from walk(child)


def _child(node: Node, data: str) -> Node:
    for child in node.children:
        if is_tree(child) and child.data == data:
            return child
    raise HclSyntaxError(f"no {data} in {node.data}")
