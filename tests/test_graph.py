from __future__ import annotations

from bridge.catalog import load_catalog
from bridge.graph import render


def test_dot_and_mermaid(repo):
    data = repo.catalog()
    data["definitions"]["web-app"] = {"template": "snowflake/snowflake.json", "parent": "snowflake"}
    repo.set_catalog(data)
    catalog = load_catalog(repo.path)
    dot = render(catalog, "dot").splitlines()
    assert dot[0] == "digraph ami_chain {" and dot[-1] == "}"
    assert '    "base" -> "snowflake";' in dot and '    "snowflake" -> "web-app";' in dot
    mermaid = render(catalog, "mermaid").splitlines()
    assert mermaid[0] == "graph TD"
    assert "    snowflake --> web_app" in mermaid
    assert '    web_app["web-app<br/>snowflake/snowflake.json"]' in mermaid
