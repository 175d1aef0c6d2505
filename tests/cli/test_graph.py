from __future__ import annotations

from bridge.catalog import load_catalog
from bridge.cli.graph import render


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


def _svg_nodes(svg: str) -> dict[str, str]:
    """Each node's title -> the text drawn in it, from Graphviz's SVG."""
    import xml.etree.ElementTree as ET

    ns = {"s": "http://www.w3.org/2000/svg"}
    root = ET.fromstring(svg)
    nodes = {}
    for group in root.iter("{http://www.w3.org/2000/svg}g"):
        if "node" in (group.get("class") or "").split():
            title = group.find("s:title", ns)
            assert title is not None
            nodes[str(title.text)] = " ".join(t.text or "" for t in group.findall("s:text", ns))
    return nodes


def test_svg_and_png_are_drawn_by_graphviz(repo, tmp_path):
    from testing.bridge import run_bridge

    svg = run_bridge(["graph", "--format", "svg", "--repo", str(repo.path)], {})
    assert svg.code == 0, svg.stderr
    assert set(_svg_nodes(svg.stdout)) == {"base", "snowflake"}
    out = str(tmp_path / "chain.png")
    png = run_bridge(["graph", "--format", "png", "--output", out, "--repo", str(repo.path)], {})
    assert png.code == 0, png.stderr
    assert (tmp_path / "chain.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_drawn_marks_say_revoked_and_expired(repo):
    from bridge.cli.graph import draw

    catalog = load_catalog(repo.path)
    svg = draw(render(catalog, "dot", {"base": "CVE-2026-7"}, ["snowflake"]), "svg").decode()
    nodes = _svg_nodes(svg)
    assert "REVOKED: CVE-2026-7" in nodes["base"] and "EXPIRED" in nodes["snowflake"]


def test_drawing_without_graphviz_names_the_fix(repo, tmp_path):
    import shutil

    from testing.bridge import run_bridge

    bare = tmp_path / "bin"  # git, and no dot
    bare.mkdir()
    (bare / "git").symlink_to(str(shutil.which("git")))
    proc = run_bridge(["graph", "--format", "svg", "--repo", str(repo.path)], {"PATH": str(bare)})
    assert proc.code == 1 and "Traceback" not in proc.stderr
    assert "needs Graphviz's `dot`" in proc.stderr and "apt-get install graphviz" in proc.stderr


def test_a_drawn_graph_with_status_says_and_colours_each_state_as_the_report_does(
    sandbox_env, repo, packer, tmp_path
):
    import xml.etree.ElementTree as ET

    from bridge.cli.graph import COLOURS
    from testing.bridge import run_bridge

    built = run_bridge(["build", "base", "--repo", str(repo.path)], sandbox_env)
    assert built.code == 0, built.stderr
    out = tmp_path / "chain.svg"
    proc = run_bridge(
        ["graph", "--status", "--format", "svg", "--output", str(out), "--repo", str(repo.path)],
        sandbox_env,
    )
    assert proc.code == 0, proc.stderr
    svg = out.read_text()
    nodes = _svg_nodes(svg)
    assert nodes["base"].endswith("found") and nodes["snowflake"].endswith("missing")
    strokes = {
        group.get("id"): group.find("{http://www.w3.org/2000/svg}ellipse").get("stroke")
        for group in ET.fromstring(svg).iter("{http://www.w3.org/2000/svg}g")
        if (group.get("class") or "").startswith("node ")
    }
    assert strokes == {"node-base": COLOURS["found"], "node-snowflake": COLOURS["missing"]}
