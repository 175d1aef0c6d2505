"""A JSON template's `{{ }}` strings, rendered as Packer renders them before a build.

Packer's JSON templates use Go's text/template syntax: `{{user `name`}}` for a user variable,
functions such as `lower` and `split`, pipelines (`{{user `x` | upper}}`) and parentheses. Each
user variable's value (the template's default, a var file's or a `-var`'s, per layers.Layer)
is a template too, so a value may use another variable. What only the build knows (`{{env}}`,
`{{timestamp}}`, `{{vault}}`...) raises unknowable.Unknowable.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bridge.templates.functions import to_string
from bridge.templates.layers import Argument, Layer, Unknown
from bridge.templates.unknowable import Unknowable, UnknownKind


def json_defaults(path: str, variables: Mapping[str, Any]) -> Layer:
    """A JSON template's `variables` (a null one is required: it has no default)."""
    return Layer(f"the defaults in {path}", {k: v for k, v in variables.items() if v is not None})


class JsonScope:
    """A JSON template's user variables, for rendering its `{{ }}` strings as Packer does.

    Packer renders every variable's value (default, var file or `-var`) as a template too, so a
    value may use another variable, or the environment.
    """

    def __init__(self, declared: Sequence[str], layers: Sequence[Layer]):
        self._declared = set(declared)
        self._layers = list(layers)
        self._values: dict[str, str | Unknowable] = {}
        self._rendering: list[str] = []

    def render(self, text: str) -> str:
        """`text` with its `{{ }}` actions evaluated."""
        out = []
        for piece in _actions(text):
            out.append(piece if isinstance(piece, str) else self._action(piece))
        return "".join(out)

    def user(self, name: str) -> str:
        """The value of `{{user `<name>`}}`."""
        if name not in self._values:
            if name in self._rendering:
                cycle = " -> ".join([*self._rendering[self._rendering.index(name) :], name])
                raise Unknowable(_user(name), "unsupported", f"it refers to itself: {cycle}")
            self._rendering.append(name)
            try:
                self._values[name] = self._user(name)
            except Unknowable as exc:
                self._values[name] = exc
            finally:
                self._rendering.pop()
        found = self._values[name]
        if isinstance(found, Unknowable):
            raise found
        return found

    def _user(self, name: str) -> str:
        layer = next((la for la in reversed(self._layers) if name in la.values), None)
        if layer is None:
            if name not in self._declared:
                return ""  # as Packer renders a variable nothing declares or sets
            raise Unknowable(_user(name), "unset")
        value = layer.values[name]
        if isinstance(value, Unknown):
            raise Unknowable(value.expression, value.kind, value.detail)
        if isinstance(value, Argument):
            value = value.text
        try:
            return self.render(value if isinstance(value, str) else json.dumps(value))
        except Unknowable as exc:
            raise exc.through(f"{_user(name)} from {layer.origin}") from None

    def _action(self, action: _Action) -> str:
        try:
            return to_string(self._pipeline(action.pipeline, action.text), action.text)
        except Unknowable:
            raise
        except (TypeError, ValueError, IndexError) as exc:
            raise Unknowable(action.text, "unsupported", f"Packer would fail: {exc}") from None

    def _pipeline(self, pipeline: list[list[Any]], where: str) -> Any:
        result: Any = _NOTHING
        for command in pipeline:
            args = [] if result is _NOTHING else [result]
            result = self._command(command, args, where)
        return result

    def _command(self, command: list[Any], piped: list[Any], where: str) -> Any:
        head, *rest = command
        values = [self._operand(o, where) for o in rest] + piped
        if not isinstance(head, _Name):
            if values:
                raise Unknowable(where, "unsupported")
            return self._operand(head, where)
        name = head.name
        for kind, names in _UNKNOWABLE.items():
            if name in names:
                raise Unknowable(where, kind)
        if name == "user":
            (variable,) = values
            return self.user(str(variable))
        if name == "template_dir":
            raise Unknowable(where, "environment", "the absolute path of the build's files")
        function = _FUNCTIONS.get(name)
        if function is None:
            raise Unknowable(where, "unsupported")
        return function(*values)

    def _operand(self, operand: Any, where: str) -> Any:
        if isinstance(operand, list):
            return self._pipeline(operand, where)
        if isinstance(operand, _Name):
            return self._command([operand], [], where)
        return operand


_NOTHING = object()


def _user(name: str) -> str:
    return f"{{{{user `{name}`}}}}"


_UNKNOWABLE: dict[UnknownKind, frozenset[str]] = {
    "environment": frozenset({"env", "pwd", "packer_version"}),
    "clock": frozenset({"timestamp", "isotime", "uuid", "strftime"}),
    "data source": frozenset(
        {"consul_key", "vault", "aws_secretsmanager", "aws_secretsmanager_raw"}
    ),
}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "lower": lambda s: str(s).lower(),
    "upper": lambda s: str(s).upper(),
    "replace": lambda old, new, n, s: str(s).replace(old, new, int(n)),
    "replace_all": lambda old, new, s: str(s).replace(old, new),
    "split": lambda s, sep, i: str(s).split(sep)[int(i)],
}


def called(text: str, function: str) -> set[str]:
    """The literal first arguments of the calls of `function` in a template string (the
    variables `{{env `X`}}` or `{{user `x`}}` read), "*" for one that is not a literal; a
    string that is no valid template calls nothing (Packer refuses it)."""
    try:
        pieces = _actions(text)
    except Unknowable:
        return set()
    names: set[str] = set()

    def commands(pipeline: list[list[Any]]) -> None:
        for command in pipeline:
            if command and command[0] == _Name(function):
                names.add(command[1] if len(command) == 2 and isinstance(command[1], str) else "*")
            for operand in command:
                if isinstance(operand, list):
                    commands(operand)

    for piece in pieces:
        if isinstance(piece, _Action):
            commands(piece.pipeline)
    return names


@dataclass(frozen=True)
class _Name:
    """A function name in an action."""

    name: str


@dataclass(frozen=True)
class _Punct:
    """`|`, `(` or `)` in an action."""

    char: str


@dataclass(frozen=True)
class _Action:
    """One `{{ }}` action: its text (for messages) and its pipeline of commands."""

    text: str
    pipeline: list[list[Any]]


def _actions(text: str) -> list[str | _Action]:
    """`text` split into literal pieces and `{{ }}` actions (Go's text/template syntax, with
    its `{{- ` and ` -}}` whitespace trimming and `{{/* */}}` comments)."""
    pieces: list[str | _Action] = []
    i = 0
    while (start := text.find("{{", i)) >= 0:
        literal, i = text[i:start], start + 2
        if text.startswith("- ", i):
            literal, i = literal.rstrip(), i + 2
        pieces.append(literal)
        if text.startswith("/*", i):
            end = text.find("*/", i)
            close = text.find("}}", end)
            if end < 0 or close < 0:
                raise Unknowable(text[start:], "unsupported", "an unclosed comment")
            trim = text[close - 2 : close] == " -"
        else:
            tokens, close = _lex(text, i)
            trim = tokens[-1:] == [_Name("-")] and text[close - 2 : close] == " -"
            source = text[start : close + 2]
            pipeline, rest = _parse_pipeline(tokens[:-1] if trim else tokens, source)
            if rest:
                raise Unknowable(source, "unsupported", "an unmatched `)`")
            pieces.append(_Action(source, pipeline))
        i = close + 2
        if trim:
            while i < len(text) and text[i].isspace():
                i += 1
    pieces.append(text[i:])
    return [p for p in pieces if p != ""]


def _lex(text: str, i: int) -> tuple[list[Any], int]:
    """The tokens of an action from `i` to its `}}` (whose index is returned): names, strings
    (Go's raw `...` and quoted "..."), integers, and `|`, `(`, `)`."""
    tokens: list[Any] = []
    while i < len(text):
        c = text[i]
        if text.startswith("}}", i):
            return tokens, i
        if c.isspace():
            i += 1
        elif c == "`":
            end = text.find("`", i + 1)
            if end < 0:
                break
            tokens.append(text[i + 1 : end])
            i = end + 1
        elif c == '"':
            j = i + 1
            while j < len(text) and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            try:
                tokens.append(json.loads(text[i : j + 1]))
            except ValueError:
                break
            i = j + 1
        elif c in "|()":
            tokens.append(_Punct(c))
            i += 1
        else:
            j = i
            while (
                j < len(text)
                and not (text[j].isspace() or text[j] in '|()`"')
                and (not text.startswith("}}", j))
            ):
                j += 1
            word = text[i:j]
            tokens.append(int(word) if word.lstrip("-").isdigit() else _Name(word))
            i = j
    raise Unknowable(text, "unsupported", "a `{{` without its `}}`")


def _parse_pipeline(tokens: list[Any], where: str) -> tuple[list[list[Any]], list[Any]]:
    """Commands separated by `|`, each a list of operands (a nested pipeline for `( )`); the
    tokens after the pipeline (from an unmatched `)`)."""
    pipeline: list[list[Any]] = [[]]
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token == _Punct(")"):
            break
        if token == _Punct("|"):
            pipeline.append([])
        elif token == _Punct("("):
            inner, rest = _parse_pipeline(tokens[i + 1 :], where)
            if rest[:1] != [_Punct(")")]:
                raise Unknowable(where, "unsupported", "an unclosed `(`")
            pipeline[-1].append(inner)
            i = len(tokens) - len(rest)
        else:
            pipeline[-1].append(token)
        i += 1
    if any(not command for command in pipeline):
        raise Unknowable(where, "unsupported", "an empty command")
    return pipeline, tokens[i:]
