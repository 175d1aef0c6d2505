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
    assert "    snowflake --> web_happ" in mermaid
    assert '    web_happ["web-app<br/>snowflake/snowflake.json"]' in mermaid


def test_names_that_differ_in_dash_and_underscore_stay_two_nodes(repo):
    data = repo.catalog()
    for name in ("leaf-two", "leaf_two"):
        data["definitions"][name] = {"template": "base/base.json", "parent": "base"}
    repo.set_catalog(data)
    mermaid = render(load_catalog(repo.path), "mermaid").splitlines()
    ids = [line.split("[")[0].strip() for line in mermaid if line.endswith('"]')]
    assert len(ids) == len(set(ids)) == 4


def test_labels_are_escaped(repo):
    repo.write('odd/we"ird.json', (repo.path / "base" / "base.json").read_text())
    data = repo.catalog()
    data["definitions"]["odd"] = {"template": 'odd/we"ird.json'}
    repo.set_catalog(data)
    catalog = load_catalog(repo.path)
    assert '    "odd" [label="odd\\nodd/we\\"ird.json"];' in render(catalog, "dot").splitlines()
    assert '    odd["odd<br/>odd/we#quot;ird.json"]' in render(catalog, "mermaid").splitlines()


def test_revoked_definitions_are_marked_with_their_reason(repo):
    catalog = load_catalog(repo.path)
    revoked = {"snowflake": 'base revoked: "CVE" [x]'}
    dot = render(catalog, "dot", revoked).splitlines()
    assert (
        '    "snowflake" [label="snowflake\\nsnowflake/snowflake.json\\nREVOKED: base revoked:  CVE '
        '  x ", color=red, style=dashed];'
    ) in dot
    assert '    "base" [label="base\\nbase/base.json"];' in dot
    mermaid = render(catalog, "mermaid", revoked).splitlines()
    assert "    class snowflake revoked" in mermaid
    assert "    class base revoked" not in mermaid
    assert render(catalog, "dot") == render(catalog, "dot", {})


def test_expired_definitions_are_marked(repo):
    catalog = load_catalog(repo.path)
    dot = render(catalog, "dot", {}, ["base"]).splitlines()
    assert (
        '    "base" [label="base\\nbase/base.json\\nEXPIRED", color=orange, style=dotted];'
    ) in dot
    assert '    "snowflake" [label="snowflake\\nsnowflake/snowflake.json"];' in dot
    mermaid = render(catalog, "mermaid", {}, ["base"]).splitlines()
    assert "    class base expired" in mermaid and "    class snowflake expired" not in mermaid
    # Revoked wins over expired: one mark per node.
    both = render(catalog, "dot", {"base": "bad"}, ["base"])
    assert "EXPIRED" not in both and "REVOKED: bad" in both
