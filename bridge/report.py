"""`ami-bridge report --html DIR`: the catalog at a glance, one self-contained HTML file.

It reads the survey `status` reads (one pass) and writes `index.html`: the chain drawn by Graphviz
(inline SVG, each node classed by its state), a legend, and a table with every definition's state
(in words and colour), its image per region, age, expiry, revocation and a link to its manifest,
with a filter by name and by state. No network: the CSS, the SVG and the filter's script are
inline, and nothing is fetched. Keyboard and screen readers: native form controls, a table with
a caption and row headers, the state always written out, and the graph's edges as text.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path

from bridge.catalog import Catalog
from bridge.graph import draw, render
from bridge.result import ResolvedAmi
from bridge.retention import how_old

# State -> its colour (the text says it too).
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
}
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
tr[hidden] { display: none; }
:focus-visible { outline: 3px solid #0969da; outline-offset: 2px; }
"""

SCRIPT = """
(function () {
  var name = document.getElementById("filter-name");
  var state = document.getElementById("filter-state");
  var count = document.getElementById("shown");
  function apply() {
    var text = name.value.trim().toLowerCase(), wanted = state.value, shown = 0;
    document.querySelectorAll("#definitions tbody tr").forEach(function (row) {
      var keep = (!text || row.dataset.name.indexOf(text) !== -1) &&
        (!wanted || row.dataset.state === wanted);
      row.hidden = !keep;
      if (keep) { shown += 1; }
    });
    count.textContent = shown + " shown";
  }
  name.addEventListener("input", apply);
  state.addEventListener("change", apply);
  apply();
})();
"""


def _node_colours() -> str:
    """Each state's colour on its graph nodes (Graphviz classes them `state-<state>`)."""
    return "".join(
        f"g.node.state-{state} ellipse {{ stroke: {colour}; stroke-width: 2px; }}\n"
        for state, colour in COLOURS.items()
    )


def manifest_link(uri: str) -> str:
    """An s3:// manifest URI as a link people can follow (the S3 console's object page)."""
    if not uri.startswith("s3://") or "/" not in uri[5:]:
        return ""
    bucket, key = uri[5:].split("/", 1)
    return f"https://s3.console.aws.amazon.com/s3/object/{bucket}?prefix={key}"


def _svg(catalog: Catalog, results: Mapping[str, ResolvedAmi]) -> str:
    """The chain drawn by Graphviz, each node classed by its state (and coloured by it)."""
    revoked = {n: r.revoke_reason for n, r in results.items() if r.revoked}
    expired = [n for n, r in results.items() if r.state == "expired"]
    states = {n: r.state for n, r in results.items()}
    dot = render(catalog, "dot", revoked, expired, states=states)
    svg = draw(dot, "svg").decode()
    return svg[svg.index("<svg") :]


def page(
    catalog: Catalog,
    results: Mapping[str, ResolvedAmi],
    *,
    region: str,
    now: datetime,
    channels: Mapping[str, Mapping[str, tuple[str, bool]]] | None = None,
) -> str:
    """The report's HTML."""
    e = html.escape
    commit = next(iter(results.values())).commit if results else ""
    legend = "".join(
        f'<li><span class="badge" style="background:{COLOURS[s]}">{s}</span> {e(m)}</li>'
        for s, m in MEANING.items()
    )
    options = "".join(f'<option value="{s}">{s}</option>' for s in MEANING)
    rows = []
    for d in catalog.all():
        r = results.get(d.name)
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
        link = manifest_link(r.manifest_uri)
        manifest = f'<a href="{e(link)}" title="{e(r.manifest_uri)}">manifest</a>' if link else "-"
        notes = []
        if r.revoke_reason:
            notes.append(f"revoked: {e(r.revoke_reason)}")
        if r.revokes_at:
            notes.append(f"revocation scheduled {e(r.revokes_at)}")
        age = how_old(r.creation_date, now) if r.creation_date else "-"
        held = (channels or {}).get(d.name, {})
        chans = (
            "<br>".join(
                f"{e(c)}: <code>{e(ami)}</code>{' <strong>REVOKED</strong>' if bad else ''}"
                for c, (ami, bad) in held.items()
            )
            or "-"
        )
        shared = ", ".join(catalog.share_for(d)) or "this account only"
        rows.append(
            f'<tr data-name="{e(d.name)}" data-state="{e(r.state)}" class="state-{e(r.state)}">'
            f'<th scope="row">{e(d.name)}</th>'
            f'<td><span class="badge" style="background:{COLOURS.get(r.state, "#6e7781")}">'
            f"{e(r.state)}</span> {'; '.join(notes)}</td>"
            f"<td>{e(d.parent or '-')}</td><td>{amis}</td><td>{e(age)}</td>"
            f"<td>{e(r.expires_at or 'never')}</td><td>{chans}</td><td>{e(shared)}</td>"
            f"<td><code>{e(r.fingerprint[:12])}</code></td><td>{manifest}</td></tr>"
        )
    edges = [f"{d.parent} → {d.name}" for d in catalog.all() if d.parent]
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Image catalog: {e(catalog.path)}</title>
<style>{STYLE}{_node_colours()}</style>
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
<figure>{_svg(catalog, results)}
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
<caption>{len(rows)} definitions: state, parent, image per region, age, expiry, channels,
sharing, fingerprint and manifest</caption>
<thead><tr><th scope="col">Definition</th><th scope="col">State</th><th scope="col">Parent</th>
<th scope="col">Images</th><th scope="col">Age</th><th scope="col">Expires</th>
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
) -> Path:
    """Write DIR/index.html: its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "index.html"
    now = datetime.now(timezone.utc)
    path.write_text(page(catalog, results, region=region, now=now, channels=channels))
    return path
