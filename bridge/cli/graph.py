"""The chain of a catalog as a Graphviz DOT or Mermaid graph, or drawn by Graphviz's `dot` as
SVG or PNG (`draw`)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Collection, Mapping
from typing import Literal, get_args

from bridge.catalog import Catalog
from bridge.errors import BridgeError

GraphFormat = Literal["dot", "mermaid", "svg", "png"]
GRAPH_FORMATS: tuple[GraphFormat, ...] = get_args(GraphFormat)
# Drawn by Graphviz from the DOT text.
DRAWN: frozenset[GraphFormat] = frozenset({"svg", "png"})

# A state -> its colour, in drawn graphs and the report (the text says the state too).
COLOURS = {
    "found": "#1a7f37",
    "built": "#1a7f37",
    "pending": "#0969da",
    "partial": "#9a6700",
    "missing": "#6e7781",
    "outdated": "#bc4c00",
    "expired": "#bc4c00",
    "archived": "#8250df",
    "revoked": "#cf222e",
    "error": "#24292f",
}


def draw(dot_text: str, fmt: GraphFormat) -> bytes:
    """The DOT graph drawn as `fmt` (svg, png) by Graphviz's `dot`; a clear error without it."""
    found = shutil.which("dot")
    if found is None:
        raise BridgeError(
            f"Drawing the graph as {fmt} needs Graphviz's `dot`, which is not on PATH. Install "
            "Graphviz (`apt-get install graphviz`; `make setup` does), or print the graph as "
            "text with --format dot or mermaid."
        )
    proc = subprocess.run(
        [found, f"-T{fmt}"], input=dot_text.encode(), capture_output=True, timeout=120, check=False
    )
    if proc.returncode != 0:
        said = proc.stderr.decode(errors="replace").strip()[:300]
        raise BridgeError(
            f"Graphviz's dot could not draw the graph ({said}). Print it with --format dot to "
            "see the text it was given."
        )
    return proc.stdout


def _mermaid_id(name: str) -> str:
    """A Mermaid node ID for a definition name (ids take no dashes): one-to-one, so `leaf-two`
    and `leaf_two` stay two nodes."""
    return name.replace("_", "__").replace("-", "_h")


def _dot_text(text: str) -> str:
    """`text` inside a double-quoted DOT string."""
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _mermaid_text(text: str) -> str:
    """`text` inside a double-quoted Mermaid label (entity codes, as Mermaid has them)."""
    return text.replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")


def render(
    catalog: Catalog,
    fmt: GraphFormat = "dot",
    revoked: Mapping[str, str] | None = None,
    expired: Collection[str] = (),
    *,
    states: Mapping[str, str] | None = None,
) -> str:
    """The parent -> child graph of every definition, labelled with its template.

    `revoked` maps the definitions whose image is revoked to the reason: those nodes are marked
    (red, dashed, `REVOKED` and the reason in the label). `expired` definitions (older than their
    max_age_days) are marked too (orange, dotted, `EXPIRED`). `states` (definition -> its
    state) writes each other node's state in its label and colours it (COLOURS), classes each
    DOT node `state-<state>` and names it `node-<name>` (and each edge `edge-<child>`), which
    Graphviz's SVG keeps (report.py).
    """
    definitions = catalog.all()
    marked = revoked or {}
    aged = set(expired) - set(marked)
    edges = [(d.parent, d.name) for d in definitions if d.parent]

    def note(name: str, newline: str) -> str:
        if name in aged:
            return f"{newline}EXPIRED"
        if name not in marked:
            return ""
        return f"{newline}REVOKED: {_quoted(marked[name])}"

    if fmt in DRAWN:
        raise ValueError(f"render gives text: draw {fmt} from the dot format")

    def state(name: str, newline: str) -> str:  # written out unless the mark says it
        if not states or name not in states or name in marked or name in aged:
            return ""
        return f"{newline}{states[name]}"

    if fmt == "mermaid":
        lines = ["graph TD"]
        lines += [
            f'    {_mermaid_id(d.name)}["{d.name}<br/>{_mermaid_text(d.template)}'
            f'{note(d.name, "<br/>")}{state(d.name, "<br/>")}"]'
            for d in definitions
        ]
        lines += [f"    {_mermaid_id(parent)} --> {_mermaid_id(child)}" for parent, child in edges]
        if marked:
            lines.append("    classDef revoked stroke:#c00,stroke-dasharray:4")
            lines += [
                f"    class {_mermaid_id(d.name)} revoked" for d in definitions if d.name in marked
            ]
        if aged:
            lines.append("    classDef expired stroke:#e80,stroke-dasharray:2")
            lines += [
                f"    class {_mermaid_id(d.name)} expired" for d in definitions if d.name in aged
            ]
        return "\n".join(lines)
    lines = ["digraph ami_chain {", "    rankdir=LR;"]
    newline = "\\n"  # DOT's line break inside a label
    for d in definitions:
        style = (
            ", color=red, style=dashed"
            if d.name in marked
            else ", color=orange, style=dotted"
            if d.name in aged
            else ""
        )
        label = f"{d.name}{newline}{_dot_text(d.template)}{note(d.name, newline)}"
        if states and d.name in states:
            style += f', class="state-{states[d.name]}", id="node-{d.name}"'
            if state(d.name, newline):  # revoked and expired are marked already
                label += state(d.name, newline)
                style += f', color="{COLOURS.get(states[d.name], "black")}", penwidth=2'
        lines.append(f'    "{d.name}" [label="{label}"{style}];')
    # With states (the report), each edge is named after its child: `edge-<child>`.
    for parent, child in edges:
        named = f' [id="edge-{child}"]' if states else ""
        lines.append(f'    "{parent}" -> "{child}"{named};')
    lines.append("}")
    return "\n".join(lines)


def _quoted(text: str) -> str:
    """A reason inside a double-quoted DOT or Mermaid label: no quotes, brackets or newlines."""
    return "".join(c if c not in '"[]<>\\\n' else " " for c in text)
