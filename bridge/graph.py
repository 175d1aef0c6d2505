"""The chain of a catalog as a Graphviz DOT or Mermaid graph."""

from __future__ import annotations

from typing import Literal, get_args

from bridge.catalog import Catalog

GraphFormat = Literal["dot", "mermaid"]
GRAPH_FORMATS: tuple[GraphFormat, ...] = get_args(GraphFormat)


def _mermaid_id(name: str) -> str:
    return name.replace("-", "_")  # Mermaid node ids take no dashes


def render(catalog: Catalog, fmt: GraphFormat = "dot") -> str:
    """The parent -> child graph of every definition, labelled with its template."""
    definitions = catalog.all()
    edges = [(d.parent, d.name) for d in definitions if d.parent]
    if fmt == "mermaid":
        lines = ["graph TD"]
        lines += [f'    {_mermaid_id(d.name)}["{d.name}<br/>{d.template}"]' for d in definitions]
        lines += [f"    {_mermaid_id(parent)} --> {_mermaid_id(child)}" for parent, child in edges]
        return "\n".join(lines)
    lines = ["digraph ami_chain {", "    rankdir=LR;"]
    lines += [f'    "{d.name}" [label="{d.name}\\n{d.template}"];' for d in definitions]
    lines += [f'    "{parent}" -> "{child}";' for parent, child in edges]
    lines.append("}")
    return "\n".join(lines)
