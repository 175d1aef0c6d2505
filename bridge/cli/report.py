"""`ami-bridge report --html DIR`: the catalog at a glance, one self-contained HTML file.

It reads the survey `status` reads (one pass) and writes `index.html`: the chain drawn by Graphviz
(inline SVG, each node classed by its state), a legend, and a table with every definition's state
(in words and colour), its image per region, age, expiry, revocation, the tests it passed, its
signed provenance, its channels with their history, and a link to its manifest. The table is the
catalog's tree (each child under its parent): a parent's button collapses its subtree (in the
table and the graph), and a filter by name and by state narrows both, so a thousand definitions
stay readable. No network: the CSS, the SVG and the script are inline, and nothing is fetched.
Keyboard and screen readers: native buttons and form controls, a table with a caption and row
headers, the state always written out, and the graph's edges as text.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path

from bridge.aws.parameters import Version
from bridge.catalog import Catalog, Definition
from bridge.cli.graph import COLOURS, draw, render
from bridge.lifecycle.retention import how_old
from bridge.pipeline.result import ResolvedAmi

MEANING = {
    "found": "an image for the commit, in every region",
    "built": "built by this run",
    "pending": "being made",
    "partial": "in some regions, copied to the others by the next build",
    "missing": "none for the commit: the next build makes it",
    "outdated": "built on another parent image: rebuilt",
    "expired": "older than max_age_days: rebuilt",
    "archived": "snapshots archived: ami-bridge unarchive",
    "revoked": "withdrawn: never used",
    "error": "cannot be looked at: the error says why and how to fix it",
}

STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #1f2328; }
h1 { margin: 0 0 .25rem; } header p { margin: 0; color: #57606a; }
.legend { display: flex; flex-wrap: wrap; gap: .5rem 1.25rem; list-style: none; padding: 0; }
.badge { display: inline-block; padding: 0 .5rem; border-radius: 1rem; color: #fff;
  font-weight: 600; }
figure { margin: 0; overflow: auto; border: 1px solid #d0d7de; border-radius: 6px; }
figcaption { padding: .5rem; color: #57606a; }
form { display: flex; gap: 1rem; align-items: end; margin: .75rem 0; }
label { display: flex; flex-direction: column; font-weight: 600; }
input, select { font: inherit; padding: .25rem; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; border-bottom: 1px solid #d0d7de; padding: .35rem .5rem;
  vertical-align: top; }
caption { text-align: left; font-weight: 600; padding: .5rem 0; }
code { font-size: 12px; }
tr[hidden], g.folded { display: none; }
g.node.dim, g.edge.dim { opacity: .15; }
th .toggle { font: inherit; margin-right: .25rem; min-width: 1.75rem; cursor: pointer; }
th .leaf { display: inline-block; min-width: 2rem; }
details summary { cursor: pointer; color: #0969da; }
details ol { margin: .25rem 0; padding-left: 1.25rem; }
:focus-visible { outline: 3px solid #0969da; outline-offset: 2px; }
"""

SCRIPT = """
(function () {
  var name = document.getElementById("filter-name");
  var state = document.getElementById("filter-state");
  var count = document.getElementById("shown");
  var rows = Array.prototype.slice.call(document.querySelectorAll("#definitions tbody tr"));
  var byName = {};
  rows.forEach(function (row) { byName[row.dataset.name] = row; });
  function folded(row) {  // under a collapsed ancestor
    for (var up = byName[row.dataset.parent]; up; up = byName[up.dataset.parent]) {
      var button = up.querySelector("button.toggle");
      if (button && button.getAttribute("aria-expanded") === "false") { return true; }
    }
    return false;
  }
  function apply() {
    var text = name.value.trim().toLowerCase(), wanted = state.value, shown = 0;
    var narrowed = Boolean(text || wanted);
    rows.forEach(function (row) {
      var match = (!text || row.dataset.name.indexOf(text) !== -1) &&
        (!wanted || row.dataset.state === wanted);
      var under = folded(row);
      row.hidden = !match || under;
      if (!row.hidden) { shown += 1; }
      var node = document.getElementById("node-" + row.dataset.name);
      var edge = document.getElementById("edge-" + row.dataset.name);
      [node, edge].forEach(function (g) {
        if (!g) { return; }
        g.classList.toggle("folded", under);
        g.classList.toggle("dim", narrowed && !match);
      });
    });
    count.textContent = shown + " of " + rows.length + " shown";
  }
  document.querySelectorAll("button.toggle").forEach(function (button) {
    button.addEventListener("click", function () {
      var open = button.getAttribute("aria-expanded") === "true";
      button.setAttribute("aria-expanded", open ? "false" : "true");
      button.textContent = open ? "\u25b8" : "\u25be";
      apply();
    });
  });
  name.addEventListener("input", apply);
  state.addEventListener("change", apply);
  apply();
})();
"""


def console_link(uri: str) -> str:
    """An s3:// URI (a manifest, a provenance statement) as a link people can follow: the S3
    console's object page."""
    if not uri.startswith("s3://") or "/" not in uri[5:]:
        return ""
    bucket, key = uri[5:].split("/", 1)
    return f"https://s3.console.aws.amazon.com/s3/object/{bucket}?prefix={key}"


def _svg(catalog: Catalog, results: Mapping[str, ResolvedAmi], errors: Mapping[str, str]) -> str:
    """The chain drawn by Graphviz, each node classed by its state (and coloured by it)."""
    revoked = {n: r.revoke_reason for n, r in results.items() if r.revoked}
    expired = [n for n, r in results.items() if r.state == "expired"]
    states = {n: r.state for n, r in results.items()} | {n: "error" for n in errors}
    dot = render(catalog, "dot", revoked, expired, states=states)
    svg = draw(dot, "svg").decode()
    return svg[svg.index("<svg") :]


# Channel -> its versions in the report's region, oldest first (parameters.versions).
History = Mapping[str, Sequence[Version]]
# How many of a channel's versions the report lists (the newest).
HISTORY_SHOWN = 10


def tree(catalog: Catalog) -> list[tuple[Definition, int, int]]:
    """Every definition in the catalog's tree order (each child after its parent, depth first):
    (definition, its depth, how many definitions are below it)."""
    children: dict[str | None, list[Definition]] = {}
    for d in catalog.all():
        children.setdefault(d.parent, []).append(d)
    order: list[tuple[Definition, int, int]] = []

    def walk(d: Definition, depth: int) -> int:
        at = len(order)
        order.append((d, depth, 0))
        below = sum(1 + walk(c, depth + 1) for c in sorted(children.get(d.name, []), key=_name))
        order[at] = (d, depth, below)
        return below

    for root in sorted(children.get(None, []), key=_name):
        walk(root, 0)
    return order


def _name(d: Definition) -> str:
    return d.name


def _channels(
    held: Mapping[str, tuple[str, bool]], history: Mapping[str, Sequence[Version]]
) -> str:
    """A definition's channels: what each holds now, and its history (newest first)."""
    e = html.escape
    cells = []
    for channel, (ami, bad) in held.items():
        text = f"{e(channel)}: <code>{e(ami)}</code>{' <strong>REVOKED</strong>' if bad else ''}"
        versions = list(history.get(channel, ()))
        if versions:
            items = "".join(
                f"<li>v{v.version} {e(v.modified[:16].replace('T', ' '))}: "
                f"<code>{e(v.ami_id)}</code> {e(f'build {v.build_id}' if v.build_id else '')}"
                "</li>"
                for v in reversed(versions[-HISTORY_SHOWN:])
            )
            more = len(versions) - HISTORY_SHOWN
            if more > 0:
                items += f"<li>{more} older (ami-bridge channel history)</li>"
            text += (
                f"<details><summary>history: {len(versions)} "
                f"version{'s' if len(versions) != 1 else ''}</summary>"
                f'<ol reversed start="{versions[-1].version}">{items}</ol></details>'
            )
        cells.append(text)
    return "<br>".join(cells) or "-"


def _trust(d: Definition, r: ResolvedAmi) -> tuple[str, str]:
    """The tests the image passed, and its signed provenance (a link), as its tags record them."""
    e = html.escape
    if not r.ami_id:
        return "-", "-"
    tests = ", ".join(e(t) for t in r.tests) or ("none recorded" if d.tests else "none defined")
    link = console_link(r.provenance)
    signed = f'<a href="{e(link)}" title="{e(r.provenance)}">signed</a>' if link else "unsigned"
    return tests, signed


def _head(d: Definition, depth: int, below: int) -> str:
    """A row's header: the definition's name, indented by its depth, after the button that
    collapses its subtree (when it has one)."""
    e = html.escape
    toggle = (
        f'<button type="button" class="toggle" aria-expanded="true" '
        f'aria-label="subtree of {e(d.name)}: {below} definition{"s" if below != 1 else ""}"'
        ">\u25be</button>"
        if below
        else '<span class="leaf"></span>'
    )
    return (
        f'<th scope="row" style="padding-left:{0.5 + 1.25 * depth:g}rem">{toggle}{e(d.name)}</th>'
    )


def page(
    catalog: Catalog,
    results: Mapping[str, ResolvedAmi],
    *,
    region: str,
    now: datetime,
    channels: Mapping[str, Mapping[str, tuple[str, bool]]] | None = None,
    history: Mapping[str, History] | None = None,
    errors: Mapping[str, str] | None = None,
) -> str:
    """The report's HTML (`errors`: the definitions that could not be looked at, and why)."""
    e = html.escape
    commit = next(iter(results.values())).commit if results else ""
    legend = "".join(
        f'<li><span class="badge" style="background:{COLOURS[s]}">{s}</span> {e(m)}</li>'
        for s, m in MEANING.items()
    )
    options = "".join(f'<option value="{s}">{s}</option>' for s in MEANING)
    rows = []
    for d, depth, below in tree(catalog):
        r = results.get(d.name)
        head = _head(d, depth, below)
        if r is None and d.name in (errors or {}):
            rows.append(
                f'<tr data-name="{e(d.name)}" data-parent="{e(d.parent or "")}" '
                f'data-state="error" class="state-error">{head}'
                f'<td><span class="badge" style="background:{COLOURS["error"]}">error</span> '
                f"{e((errors or {})[d.name])}</td><td>{e(d.parent or '-')}</td>"
                + "<td>-</td>" * 9
                + "</tr>"
            )
            continue
        if r is None:
            continue
        amis = (
            "<br>".join(
                f"{e(reg)}: <code>{e(r.amis.get(reg, ''))}</code> "
                f"{'' if st == 'found' else f'({e(st)})'}"
                for reg, st in r.region_states.items()
            )
            or "-"
        )
        link = console_link(r.manifest_uri)
        manifest = f'<a href="{e(link)}" title="{e(r.manifest_uri)}">manifest</a>' if link else "-"
        notes = []
        if r.revoke_reason:
            notes.append(f"revoked: {e(r.revoke_reason)}")
        if r.revokes_at:
            notes.append(f"revocation scheduled {e(r.revokes_at)}")
        age = how_old(r.creation_date, now) if r.creation_date else "-"
        chans = _channels((channels or {}).get(d.name, {}), (history or {}).get(d.name, {}))
        tests, signed = _trust(d, r)
        shared = ", ".join(catalog.share_for(d)) or "this account only"
        rows.append(
            f'<tr data-name="{e(d.name)}" data-parent="{e(d.parent or "")}" '
            f'data-state="{e(r.state)}" class="state-{e(r.state)}">'
            f"{head}"
            f'<td><span class="badge" style="background:{COLOURS.get(r.state, "#6e7781")}">'
            f"{e(r.state)}</span> {'; '.join(notes)}</td>"
            f"<td>{e(d.parent or '-')}</td><td>{amis}</td><td>{e(age)}</td>"
            f"<td>{e(r.expires_at or 'never')}</td><td>{tests}</td><td>{signed}</td>"
            f"<td>{chans}</td><td>{e(shared)}</td>"
            f"<td><code>{e(r.fingerprint[:12])}</code></td><td>{manifest}</td></tr>"
        )
    edges = [f"{d.parent} → {d.name}" for d in catalog.all() if d.parent]
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Image catalog: {e(catalog.path)}</title>
<style>{STYLE}</style>
</head>
<body>
<header>
<h1>Image catalog</h1>
<p>{e(catalog.path)} at commit <code>{e(commit[:12])}</code>, region {e(region)};
written {e(now.strftime("%Y-%m-%d %H:%M UTC"))} by ami-bridge report.</p>
</header>
<main>
<section aria-labelledby="legend-title">
<h2 id="legend-title">States</h2>
<ul class="legend">{legend}</ul>
</section>
<section aria-labelledby="chain-title">
<h2 id="chain-title">Chain</h2>
<figure>{_svg(catalog, results, errors or {})}
<figcaption>Built on: {e("; ".join(edges) or "no parents")}.</figcaption>
</figure>
</section>
<section aria-labelledby="table-title">
<h2 id="table-title">Definitions</h2>
<form role="search" onsubmit="return false">
<label for="filter-name">Name contains <input id="filter-name" type="search"
  autocomplete="off"></label>
<label for="filter-state">State <select id="filter-state"><option value="">every state</option>
{options}</select></label>
<output id="shown" aria-live="polite"></output>
</form>
<table id="definitions">
<caption>{len(rows)} definitions, each under its parent (a parent's button collapses its
subtree): state, parent, image per region, age, expiry, tests passed, provenance, channels,
sharing, fingerprint and manifest</caption>
<thead><tr><th scope="col">Definition</th><th scope="col">State</th><th scope="col">Parent</th>
<th scope="col">Images</th><th scope="col">Age</th><th scope="col">Expires</th>
<th scope="col">Tests passed</th><th scope="col">Provenance</th>
<th scope="col">Channels ({e(region)})</th><th scope="col">Shared with</th>
<th scope="col">Fingerprint</th><th scope="col">Manifest</th></tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody>
</table>
</section>
</main>
<script>{SCRIPT}</script>
</body>
</html>
"""


def write(
    directory: Path,
    catalog: Catalog,
    results: Mapping[str, ResolvedAmi],
    *,
    region: str,
    channels: Mapping[str, Mapping[str, tuple[str, bool]]] | None = None,
    history: Mapping[str, History] | None = None,
    errors: Mapping[str, str] | None = None,
) -> Path:
    """Write DIR/index.html: its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "index.html"
    now = datetime.now(timezone.utc)
    path.write_text(
        page(
            catalog,
            results,
            region=region,
            now=now,
            channels=channels,
            history=history,
            errors=errors,
        )
    )
    return path
