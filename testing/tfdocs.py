"""Generate the Inputs/Outputs tables of Terraform module READMEs from the code.

`python -m testing.tfdocs [--check] DIR...` rewrites (or, with --check, verifies) the block
between `<!-- BEGIN_TF_DOCS -->` and `<!-- END_TF_DOCS -->` in each DIR/README.md, from
DIR/variables.tf and DIR/outputs.tf, in terraform-docs' markdown table format.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeGuard

import hcl2
from hcl2.utils import process_escape_sequences

BEGIN = "<!-- BEGIN_TF_DOCS -->"
END = "<!-- END_TF_DOCS -->"

# python-hcl2 keeps quoted strings in source form (quotes and escapes intact) and heredocs as
# their raw token, so a literal string can be told apart from an expression (`${...}`).
_HEREDOC = re.compile(r"<<(-?)([A-Za-z][A-Za-z0-9._-]*)\r?\n(?:(.*?)\r?\n)?[ \t]*\2", re.S)
_EXPRESSION = re.compile(r"\$\{(.*)\}", re.S)


def _string(source: str) -> str:
    """The value of a quoted string or heredoc as python-hcl2 serializes it."""
    inner = source[1:-1]
    heredoc = _HEREDOC.fullmatch(inner)
    if heredoc:
        body = heredoc[3] or ""
        # `<<-` drops the indentation its lines share; `<<` keeps the body verbatim.
        return textwrap.dedent(body) if heredoc[1] else body
    # `$${` and `%%{` are template escapes for a literal `${` and `%{`.
    return process_escape_sequences(inner).replace("$${", "${").replace("%%{", "%{")


def _is_string(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"'


def _label(key: str) -> str:
    return _string(key) if _is_string(key) else key


def _literal(value: Any) -> Any:
    """Turn python-hcl2's serialization of a literal into the plain JSON value it denotes."""
    if isinstance(value, list):
        return [_literal(item) for item in value]
    if isinstance(value, dict):
        return {_label(k): _literal(v) for k, v in value.items() if k != "__is_block__"}
    if _is_string(value):
        return _string(value)
    return value


def _expression(value: str) -> str:
    """An expression as written: python-hcl2 wraps all but bare identifiers in `${...}`."""
    wrapped = _EXPRESSION.fullmatch(value)
    return wrapped[1] if wrapped else value


def _default(value: Any) -> str:
    if isinstance(value, str) and not _is_string(value):
        # A default Terraform accepts but that is not plain JSON, such as 1e3.
        return _expression(value)
    return json.dumps(_literal(value), ensure_ascii=False)


def _cell(text: str) -> str:
    # A newline would end the table row and `|` would start a new cell, even inside backticks.
    return re.sub(r"\s*\n\s*", " ", text.strip()).replace("|", "\\|")


def _blocks(path: Path, kind: str) -> list[tuple[str, dict[str, Any]]]:
    """The `kind` blocks of a .tf file as (name, attributes), in file order."""
    if not path.exists():
        return []
    with path.open(encoding="utf-8") as f:
        parsed = hcl2.load(f)
    return [(_label(name), body) for block in parsed.get(kind, []) for name, body in block.items()]


def _description(body: dict[str, Any]) -> str:
    description = body.get("description")
    return (_cell(_string(description)) if _is_string(description) else "") or "n/a"


def render(module_dir: Path) -> str:
    """The README block, markers included, documenting `module_dir`'s variables and outputs."""
    lines = [BEGIN, "## Inputs", ""]
    variables = _blocks(module_dir / "variables.tf", "variable")
    if variables:
        lines += [
            "| Name | Description | Type | Default | Required |",
            "|------|-------------|------|---------|:--------:|",
        ]
        for name, body in variables:
            type_ = _cell(_expression(body.get("type", "any")))
            # `default = null` still makes the variable optional, so test presence, not value.
            has_default = "default" in body
            default = f"`{_cell(_default(body['default']))}`" if has_default else "n/a"
            required = "no" if has_default else "yes"
            lines.append(
                f"| `{name}` | {_description(body)} | `{type_}` | {default} | {required} |"
            )
    else:
        lines.append("No inputs.")
    lines += ["", "## Outputs", ""]
    outputs = _blocks(module_dir / "outputs.tf", "output")
    if outputs:
        lines += ["| Name | Description |", "|------|-------------|"]
        lines += [f"| `{name}` | {_description(body)} |" for name, body in outputs]
    else:
        lines.append("No outputs.")
    lines.append(END)
    return "\n".join(lines)


def readme_block(readme: str) -> str:
    """The marked block of a README's text, markers included."""
    start = readme.find(BEGIN)
    end = readme.find(END, start)
    if start < 0 or end < 0:
        raise ValueError(f"README has no {BEGIN} ... {END} block: add the two markers")
    return readme[start : end + len(END)]


def update(module_dir: Path) -> bool:
    """Rewrite `module_dir`/README.md's marked block from the code; whether it changed."""
    readme_path = module_dir / "README.md"
    readme = readme_path.read_text(encoding="utf-8")
    updated = readme.replace(readme_block(readme), render(module_dir), 1)
    if updated == readme:
        return False
    readme_path.write_text(updated, encoding="utf-8")
    return True


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: regenerate the READMEs of DIRs, or with --check list the stale ones."""
    parser = argparse.ArgumentParser(prog="python -m testing.tfdocs", description=__doc__)
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if stale")
    parser.add_argument("dirs", nargs="+", type=Path, metavar="DIR")
    args = parser.parse_args(argv)
    dirs: list[Path] = args.dirs
    if args.check:
        stale = [
            d / "README.md"
            for d in dirs
            if readme_block((d / "README.md").read_text(encoding="utf-8")) != render(d)
        ]
        for path in stale:
            print(f"{path}: Inputs/Outputs tables are stale", file=sys.stderr)
        if stale:
            print("run `make docs` to regenerate them", file=sys.stderr)
            return 1
        return 0
    for d in dirs:
        if update(d):
            print(f"updated {d / 'README.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
