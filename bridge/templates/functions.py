"""HCL2 values as Packer converts them (cty's string, number and bool conversions), and the
functions the bridge evaluates in a filter's expressions: the common string and list ones. The
functions only the build can answer (the environment, the clock, secrets) are listed by why.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from bridge.templates.unknowable import Unknowable, UnknownKind


def index_into(value: Any, kind: str, key: Any, where: str) -> Any:
    if isinstance(value, list) and kind == "index":
        index = number(key, where)
        if isinstance(index, int) and 0 <= index < len(value):
            return value[index]
    elif isinstance(value, dict) and to_string(key, where) in value:
        return value[to_string(key, where)]
    raise Unknowable(where, "unsupported", f"Packer would fail: there is no {key!r} there")


def to_string(value: Any, where: str) -> str:
    """A value in a string (cty's conversion): strings, numbers and bools."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    if isinstance(value, str):
        return value
    shown = "null" if value is None else type(value).__name__
    raise Unknowable(where, "unsupported", f"a {shown} where Packer needs a string")


def number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise Unknowable(where, "unsupported", "not a number")
    try:
        parsed = float(value)
    except ValueError:
        raise Unknowable(where, "unsupported", f"{value!r} is not a number") from None
    return int(parsed) if parsed.is_integer() and math.isfinite(parsed) else parsed


def boolean(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return bool(value == "true")
    raise Unknowable(where, "unsupported", f"{value!r} is not a bool")


COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    "<": lambda a, b: a < b,
    ">": lambda a, b: a > b,
    "<=": lambda a, b: a <= b,
    ">=": lambda a, b: a >= b,
}
ARITHMETIC: dict[str, Callable[[float, float], float]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: a / b,
    "%": lambda a, b: math.fmod(a, b),
}
UNKNOWABLE_FUNCTIONS: dict[UnknownKind, frozenset[str]] = {
    "environment": frozenset({"env", "abspath", "pathexpand"}),
    "clock": frozenset({"timestamp", "uuidv4", "bcrypt", "legacy_isotime"}),
    "data source": frozenset(
        {"aws_secretsmanager", "aws_secretsmanager_raw", "vault", "consul_key"}
    ),
}


def _format(spec: str, *args: Any) -> str:
    """HCL's format() for the verbs filters use: %s, %d, %v, %q and %%."""
    out, i, used = [], 0, 0
    while i < len(spec):
        c = spec[i]
        if c != "%":
            out.append(c)
            i += 1
            continue
        verb = spec[i + 1 : i + 2]
        if verb == "%":
            out.append("%")
        elif verb in ("s", "v", "d", "q"):
            arg = args[used]
            used += 1
            if verb == "d":
                out.append(str(int(number(arg, spec))))
            elif verb == "q":
                out.append(json.dumps(to_string(arg, spec)))
            else:
                out.append(to_string(arg, spec))
        else:
            raise ValueError(f"format verb %{verb} is not evaluated")
        i += 2
    return "".join(out)


def _replace(value: str, old: str, new: str) -> str:
    if len(old) > 1 and old.startswith("/") and old.endswith("/"):
        raise ValueError("a regular expression is not evaluated")
    return value.replace(old, new)


def _element(items: list[Any], index: Any) -> Any:
    return items[int(number(index, "element")) % len(items)]


def _coalesce(*values: Any) -> Any:
    for value in values:
        if value is not None and value != "":
            return value
    raise ValueError("no non-null, non-empty argument")


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "lower": lambda s: to_string(s, "lower").lower(),
    "upper": lambda s: to_string(s, "upper").upper(),
    "trimspace": lambda s: to_string(s, "trimspace").strip(),
    "trimprefix": lambda s, p: to_string(s, "trimprefix").removeprefix(p),
    "trimsuffix": lambda s, p: to_string(s, "trimsuffix").removesuffix(p),
    "replace": _replace,
    "format": _format,
    "join": lambda sep, *lists: sep.join(to_string(v, "join") for items in lists for v in items),
    "split": lambda sep, s: to_string(s, "split").split(sep),
    "concat": lambda *lists: [v for items in lists for v in items],
    "element": _element,
    "lookup": lambda m, k, *default: m[k] if k in m or not default else default[0],
    "coalesce": _coalesce,
    "length": len,
    "tostring": lambda v: to_string(v, "tostring"),
}
