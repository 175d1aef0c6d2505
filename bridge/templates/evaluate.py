"""HCL2 expressions the bridge can know before a build, evaluated as Packer evaluates them.

A source filter (sources.py) may take its values from the template's variables (`var.x`),
locals and string interpolation. `HclScope` evaluates them over the variables' layers
(layers.py); jsontemplate.JsonScope does the same for a JSON template's `{{ }}` strings.

What only the build can know (the environment, the clock, another data source, a variable the
bridge sets per build such as the fingerprint itself) raises Unknowable (unknowable.py), which
says why and what to do instead; so does what the bridge does not evaluate (a `for` expression,
a function outside those in functions.py). Evaluation is lazy: a local or a variable no
filter uses is never evaluated, so a `timestamp()` in an image name does not keep a filter from
being known.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bridge.templates.functions import (
    ARITHMETIC,
    COMPARISONS,
    FUNCTIONS,
    UNKNOWABLE_FUNCTIONS,
    boolean,
    index_into,
    number,
    to_string,
)
from bridge.templates.hcl import (
    Document,
    Node,
    attributes,
    block_body,
    block_labels,
    blocks,
    is_token,
    is_tree,
    name_of,
    parse,
    unescape,
    value_of,
)
from bridge.templates.layers import Argument, Expr, Layer, Unknown
from bridge.templates.unknowable import Unknowable


@dataclass(frozen=True)
class _Declared:
    """A declared variable: whether Packer reads a `-var` for it as a plain string."""

    plain: bool


class HclScope:
    """The variables and locals of an HCL2 template (its `documents`), evaluated on demand.

    `data` answers references to data sources (`data.<type>.<name>.<attribute>` as a list of
    names), or raises Unknowable; by default every data source is unknowable.
    """

    def __init__(
        self,
        documents: Sequence[Document],
        layers: Sequence[Layer],
        *,
        template_dir: str,
        data: Callable[[list[str]], object] | None = None,
    ) -> None:
        self._layers = list(layers)
        self.template_dir = template_dir  # `path.root`
        self._data = data
        self._declared: dict[str, _Declared] = {}
        self._locals: dict[str, Expr] = {}
        for doc in documents:
            for block in blocks(doc.body, "variable"):
                attrs = attributes(block_body(block))
                self._declared[block_labels(block)[0]] = _Declared(_plain(attrs))
            for block in blocks(doc.body, "variables"):
                for name, attr in attributes(block_body(block)).items():
                    self._declared[name] = _Declared(_plain({"default": attr}))
            for block in blocks(doc.body, "locals"):
                for name, attr in attributes(block_body(block)).items():
                    self._locals[name] = Expr(doc, value_of(attr), functions=True)
            for block in blocks(doc.body, "local"):
                expression = attributes(block_body(block)).get("expression")
                if expression is not None:
                    self._locals[block_labels(block)[0]] = Expr(
                        doc, value_of(expression), functions=True
                    )
        self._values: dict[str, Any] = {}
        self._evaluating: list[str] = []

    def evaluate(self, document: Document, node: Node) -> Any:
        """The value of the expression `node` of `document`, with every variable and local."""
        return _HclEvaluation(self, document, references=True, functions=True).value(node)

    def variable(self, name: str) -> Any:
        """The value Packer gives `var.<name>`: the last layer's that sets it."""
        return self._lookup(f"var.{name}", lambda: self._variable(name))

    def local(self, name: str) -> Any:
        """The value of `local.<name>`."""
        return self._lookup(f"local.{name}", lambda: self._local(name))

    def data(self, names: list[str], expression: str) -> Any:
        """The value of a data source's attribute (`names`: data, type, name, attribute)."""
        if self._data is None:
            raise Unknowable(expression, "data source")
        return self._data(names)

    def _lookup(self, key: str, compute: Callable[[], Any]) -> Any:
        if key not in self._values:
            if key in self._evaluating:
                cycle = " -> ".join([*self._evaluating[self._evaluating.index(key) :], key])
                raise Unknowable(key, "unsupported", f"it refers to itself: {cycle}")
            self._evaluating.append(key)
            try:
                self._values[key] = compute()
            except Unknowable as exc:
                self._values[key] = exc
            finally:
                self._evaluating.pop()
        found = self._values[key]
        if isinstance(found, Unknowable):
            raise found
        return found

    def _variable(self, name: str) -> Any:
        declared = self._declared.get(name)
        if declared is None:
            raise Unknowable(
                f"var.{name}", "unsupported", "no `variable` block declares it; Packer refuses it"
            )
        layer = next((la for la in reversed(self._layers) if name in la.values), None)
        if layer is None:
            raise Unknowable(f"var.{name}", "unset")
        value = layer.values[name]
        try:
            if isinstance(value, Unknown):
                raise Unknowable(value.expression, value.kind, value.detail)
            if isinstance(value, Expr):
                evaluation = _HclEvaluation(
                    self, value.document, references=False, functions=value.functions
                )
                return evaluation.value(value.node)
            if isinstance(value, Argument) and declared.plain:
                return value.text
            if isinstance(value, Argument):
                doc = parse(f"-var {name}", f"v = {value.text}\n")
                (attr,) = attributes(doc.body).values()
                return _HclEvaluation(self, doc, references=False, functions=False).value(
                    value_of(attr)
                )
            return value
        except Unknowable as exc:
            if isinstance(value, Unknown):
                raise
            raise exc.through(f"var.{name} from {layer.origin}") from None

    def _local(self, name: str) -> Any:
        expr = self._locals.get(name)
        if expr is None:
            raise Unknowable(f"local.{name}", "unsupported", "no `locals` block defines it")
        try:
            return self.evaluate(expr.document, expr.node)
        except Unknowable as exc:
            raise exc.through(f"local.{name}") from None


def _plain(attrs: Mapping[str, Node]) -> bool:
    """Whether Packer reads a `-var` value as a plain string: the declared type (or, untyped,
    the default's) is a string or a number, or there is neither."""
    declared = attrs.get("type")
    if declared is not None:
        return name_of(value_of(declared)).strip() in ("string", "number")
    default = attrs.get("default")
    if default is None:
        return True
    term = value_of(default)
    inner = term.children[0] if term.data == "expr_term" and len(term.children) == 1 else term
    return is_tree(inner) and inner.data in ("string", "int_lit", "float_lit")


class _HclEvaluation:
    """One expression's evaluation: which references and functions its place allows."""

    def __init__(
        self, scope: HclScope, document: Document, *, references: bool, functions: bool
    ) -> None:
        self.scope = scope
        self.doc = document
        self.references = references
        self.functions = functions

    def value(self, node: Node) -> Any:
        handler = getattr(self, f"_{node.data}", None)
        if handler is None:
            raise Unknowable(self.doc.source(node).strip(), "unsupported")
        return handler(node)

    def _trees(self, node: Node) -> list[Node]:
        return [c for c in node.children if is_tree(c) and c.data != "new_line_or_comment"]

    def _expr_term(self, node: Node) -> Any:
        (inner,) = self._trees(node)  # a term, or a parenthesised expression
        return self.value(inner)

    def _int_lit(self, node: Node) -> Any:
        return int(str(node.children[0]))

    def _float_lit(self, node: Node) -> Any:
        return float(str(node.children[0]))

    def _literal_value(self, node: Node) -> Any:
        return {"true": True, "false": False, "null": None}[str(node.children[0])]

    def _tuple(self, node: Node) -> Any:
        return [self._element(f"[{i}]", item) for i, item in enumerate(self._trees(node))]

    def _element(self, step: str, node: Node) -> Any:
        try:
            return self.value(node)
        except Unknowable as exc:
            raise exc.within(step) from None

    def _object(self, node: Node) -> Any:
        result = {}
        for elem in self._trees(node):
            key_node, value_node = self._trees(elem)
            (key,) = self._trees(key_node) or [key_node]
            if key.data == "keyword" or (
                key.data == "expr_term" and self._trees(key)[0].data == "identifier"
            ):
                name = name_of(key)  # a bare name is the key itself, not a reference
            else:
                name = to_string(self.value(key), self.doc.source(key))
            result[name] = self._element(f".{name}", value_node)
        return result

    def _string(self, node: Node) -> Any:
        parts = [p for p in node.children if is_tree(p)]
        pieces: list[Any] = []
        for part in parts:
            (inner,) = part.children
            if is_token(inner):
                kind = inner.type
                raw = str(inner)
                pieces.append(raw[1:] if kind.startswith("ESCAPED_") else unescape(raw))
            elif inner.data == "interpolation":
                (expression,) = self._trees(inner)
                pieces.append((self.value(expression), self.doc.source(expression)))
            else:
                raise Unknowable(self.doc.source(node), "unsupported", "a template directive")
        if len(pieces) == 1 and isinstance(pieces[0], tuple):
            return pieces[0][0]  # "${x}" is x itself, whatever its type
        return "".join(p if isinstance(p, str) else to_string(*p) for p in pieces)

    def _heredoc_template(self, node: Node) -> Any:
        text = str(node.children[0])
        if "${" in text or "%{" in text:
            raise Unknowable(text.splitlines()[0], "unsupported", "a heredoc with templates")
        body = text.split("\n", 1)[1]
        return body[: body.rstrip().rfind("\n") + 1]

    def _conditional(self, node: Node) -> Any:
        condition, yes, no = self._trees(node)
        chosen = boolean(self.value(condition), self.doc.source(condition))
        return self.value(yes if chosen else no)

    def _unary_op(self, node: Node) -> Any:
        operator, term = node.children
        assert is_tree(term)
        value = self.value(term)
        if str(operator) == "!":
            return not boolean(value, self.doc.source(node))
        return -number(value, self.doc.source(node))

    def _binary_op(self, node: Node) -> Any:
        left_node, term = self._trees(node)[:2]
        operator_node, right_node = self._trees(term)
        operator = name_of(operator_node).strip()
        where = self.doc.source(node)
        left = self.value(left_node)
        if operator in ("&&", "||"):
            first = boolean(left, where)
            if (operator == "&&") != first:
                return first
            return boolean(self.value(right_node), where)
        right = self.value(right_node)
        if operator in ("==", "!="):
            return (left == right) == (operator == "==")
        a, b = number(left, where), number(right, where)
        if operator in COMPARISONS:
            return COMPARISONS[operator](a, b)
        if operator in ("/", "%") and b == 0:
            raise Unknowable(where, "unsupported", "a division by zero")
        return ARITHMETIC[operator](a, b)

    def _get_attr_expr_term(self, node: Node) -> Any:
        return self._reference(node)

    def _index_expr_term(self, node: Node) -> Any:
        return self._reference(node)

    def _identifier(self, node: Node) -> Any:
        return self._reference(node)

    def _reference(self, node: Node) -> Any:
        """A traversal (`var.x`, `local.m["k"]`, `[1, 2][0]`): its root, then each step."""
        steps: list[tuple[str, Any]] = []
        root = node
        while root.data in ("get_attr_expr_term", "index_expr_term", "expr_term"):
            if root.data == "expr_term":
                inner = self._trees(root)
                if len(inner) != 1 or len(root.children) != 1:
                    break  # parenthesised
                root = inner[0]
                continue
            base, step = self._trees(root)
            if step.data == "get_attr":
                steps.append(("attr", name_of(step.children[-1])))
            elif step.data == "short_index":
                steps.append(("index", int(str(step.children[-1]))))
            else:
                (index,) = self._trees(step)
                steps.append(("index", self.value(index)))
            root = base
        steps.reverse()
        where = self.doc.source(node).strip()
        if root.data != "identifier":
            value = self.value(root)
        else:
            value, steps = self._root(name_of(root), steps, where)
        for kind, key in steps:
            value = index_into(value, kind, key, where)
        return value

    def _root(
        self, name: str, steps: list[tuple[str, Any]], where: str
    ) -> tuple[Any, list[tuple[str, Any]]]:
        attrs = [key for kind, key in steps if kind == "attr"]
        if name in ("var", "local", "data", "path", "packer", "source", "build"):
            if not self.references:
                raise Unknowable(
                    where, "unsupported", "Packer allows no references in defaults and var files"
                )
        if name in ("var", "local") and steps and steps[0][0] == "attr":
            first = str(steps[0][1])
            value = self.scope.variable(first) if name == "var" else self.scope.local(first)
            return value, steps[1:]
        if name == "path" and attrs[:1] == ["root"]:
            return self.scope.template_dir, steps[1:]
        if name == "path" and attrs[:1] == ["cwd"]:
            raise Unknowable(where, "environment", "the directory Packer runs in")
        if name == "data" and len(attrs) >= 3:
            return self.scope.data(["data", *map(str, attrs[:3])], where), steps[3:]
        raise Unknowable(where, "unsupported")

    def _function_call(self, node: Node) -> Any:
        name_node, *rest = self._trees(node)
        name = name_of(name_node)
        where = self.doc.source(node).strip()
        for kind, names in UNKNOWABLE_FUNCTIONS.items():
            if name in names:
                raise Unknowable(where, kind)
        function = FUNCTIONS.get(name)
        if not self.functions or len(rest) > 1:  # Packer's place for it, or a namespace
            raise Unknowable(where, "unsupported")
        arguments = rest[0] if rest else None
        if arguments and any(is_token(t) and t.type == "ELLIPSIS" for t in arguments.children):
            raise Unknowable(where, "unsupported", "arguments expanded with `...`")
        # The arguments first: what they depend on says more than an unsupported function.
        values = [self.value(a) for a in (self._trees(arguments) if arguments else [])]
        if function is None:
            raise Unknowable(where, "unsupported")
        try:
            return function(*values)
        except Unknowable:
            raise
        except (TypeError, ValueError, IndexError, KeyError, ZeroDivisionError) as exc:
            raise Unknowable(where, "unsupported", f"Packer would fail: {exc}") from None
