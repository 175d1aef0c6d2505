"""`ami-bridge inputs DEF`: everything a definition's fingerprint is made of, and why each input
is there, from git alone (what a person reads to trust a fingerprint)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from typing import Any

from bridge.catalog import Definition
from bridge.cli import render
from bridge.cli.workspace import open_catalog, options
from bridge.errors import EXIT_OK, BridgeError
from bridge.fingerprint import Fingerprint, fingerprint_all
from bridge.masking import mask, secrets_of
from bridge.record import Observed
from bridge.sources import SourcePick

# Shown for a tracked upstream image: only a resolve (with EC2) chooses it.
_UNCHOSEN = "-"


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Uncommitted content counts with --allow-dirty, as in `check`; a tracked upstream filter
    is shown as evaluated, and the image it chooses is left to a resolve."""
    repo, catalog = open_catalog(options(args, env), env)
    d = catalog.get(args.definition)
    snapshot = fingerprint_all(
        repo,
        catalog.closure([d.name]),
        commit=args.commit,
        allow_dirty=args.allow_dirty,
        catalog_path=catalog.path,
        environment=env,
        pick_sources=lambda _, filters: [SourcePick(f, _UNCHOSEN, "", "") for f in filters],
    )
    fp = snapshot.fingerprints[d.name]
    # A tracked upstream image anywhere up the chain is in this fingerprint too (through the
    # parent's), and only a resolve chooses it.
    chain = [snapshot.fingerprints[a.name] for a in catalog.closure([d.name])]
    upstream_known = not any(f.sources for f in chain)
    explained = explain(
        d,
        fp,
        commit=snapshot.commit,
        upstream_known=upstream_known,
        environment=env,
    )
    observed, why = (
        _last_observed(args, env, d.name, fp.value)
        if upstream_known
        else (None, "the fingerprint depends on the upstream image a resolve chooses")
    )
    explained["observed"] = mark_reads(explained["inputs"], observed, why)
    if args.json:
        json.dump(explained, sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
        return EXIT_OK
    out = sys.stdout
    out.write(f"definition  {d.name}\n")
    out.write(f"template    {d.template} ({d.template_format})\n")
    out.write(f"commit      {snapshot.commit}\n")
    out.write(f"fingerprint {explained['fingerprint']}\n")
    if d.parent:
        out.write(f"parent      {d.parent} (fingerprint {explained['parent_fingerprint']})\n")
    out.write("\n")
    rows = [("INPUT", "KIND", "OBJECT", "READ", "WHY")]
    rows += [
        (i["path"], i["kind"], i["object"][:12], i["read"], i["why"]) for i in explained["inputs"]
    ]
    render.table(rows, out)
    seen = explained["observed"]
    out.write(f"\nREAD: {seen['summary']}\n")
    for i in explained["inputs"]:
        for path in i.get("read_within", ()):
            out.write(f"  read through the directory {i['path']}: {path}\n")
    for s in explained["upstream"]:
        filters = " ".join(f"{k}={v}" for k, v in s["filters"])
        out.write(
            f"\nupstream {s['origin']}: owners {','.join(s['owners'])} {filters} "
            f"most_recent={str(s['most_recent']).lower()} (the image is chosen at resolve time)"
        )
    if explained["upstream"]:
        out.write("\n")
    if explained["template_variables"]:
        out.write("\n")
        render.table(
            [("VARIABLE", "VALUE", "FROM", "USED")]
            + [
                (v["name"], v["value"], v["origin"], "yes" if v["used"] else "no")
                for v in explained["template_variables"]
            ],
            out,
        )
    if explained["environment"]:
        out.write("\n")
        render.table(
            [("ENVIRONMENT", "VALUE (in the identity)")]
            + [(k, json.dumps(v)) for k, v in explained["environment"].items()],
            out,
        )
    return EXIT_OK


def explain(
    d: Definition,
    fp: Fingerprint,
    *,
    commit: str,
    upstream_known: bool,
    environment: Mapping[str, str],
) -> dict[str, Any]:
    """What `d`'s fingerprint at `commit` is made of, as plain data. Without `upstream_known`
    (a tracked upstream image in the chain), the fingerprints are left to a resolve. Secret
    values (masking.py) are masked."""
    unknown = "(depends on the upstream image a resolve chooses)"
    secrets = secrets_of(environment)
    return {
        "definition": d.name,
        "commit": commit,
        "fingerprint": fp.value if upstream_known else unknown,
        "parent_fingerprint": (fp.parent or "") if upstream_known or not fp.parent else unknown,
        "inputs": [
            {"path": e.path, "kind": e.kind, "object": e.sha, "why": _why(d, e.path)}
            for e in fp.inputs
        ],
        "upstream": [
            {
                "origin": s.filter.origin,
                "owners": list(s.filter.owners),
                "filters": [list(f) for f in s.filter.filters],
                "most_recent": s.filter.most_recent,
            }
            for s in fp.sources
        ],
        "variables": dict(sorted(d.variables.items())),
        # Each template variable's value as Packer takes it, and the layer it comes from.
        "template_variables": [
            {"name": v.name, "value": mask(v.value, secrets), "origin": v.origin, "used": v.used}
            for v in fp.values
        ],
        # The environment variables in the identity (the catalog's `env`), as resolved now.
        "environment": {name: mask(environment.get(name, ""), secrets) for name in d.env},
    }


def _last_observed(
    args: argparse.Namespace, env: Mapping[str, str], definition: str, fingerprint: str
) -> tuple[Observed | None, str]:
    """What the last build of this fingerprint was seen to read (its manifest's `observed`),
    or None and why it is not known."""
    from bridge.aws import manifests
    from bridge.cli.workspace import context

    try:
        ctx = context(options(args, env), env)
        bucket = ctx.settings.manifest_bucket
        if not bucket:
            return None, "the catalog keeps no manifests (`manifest.bucket`)"
        found = manifests.fetch(
            ctx.clients.s3(ctx.settings.region),
            bucket,
            ctx.settings.manifest_prefix,
            definition,
            fingerprint,
        )
    except BridgeError as exc:
        return None, f"its manifest could not be read ({str(exc).split('. ')[0]})"
    if found is None:
        return None, "no build of this fingerprint has a manifest yet"
    if found.observed is None:
        return None, "its build was made before builds were observed"
    if not found.observed.traced:
        return None, f"its build was not observed ({found.observed.why_not})"
    return found.observed, ""


def mark_reads(inputs: list[dict[str, Any]], observed: Observed | None, why: str) -> dict[str, Any]:
    """Mark each input (explain's) as read or never read by the last build: `read` is yes, no
    or unknown, and a directory input lists the files read within it (`read_within`), which the
    identity covers only through the whole directory. A summary says how many were never read
    (where rebuilds are wasted)."""
    if observed is None:
        for i in inputs:
            i["read"] = "unknown"
        return {"known": False, "summary": f"unknown: {why}"}
    read = {r.path for r in observed.reads}
    never = 0
    for i in inputs:
        if i["kind"] == "blob":
            i["read"] = "yes" if i["path"] in read else "no"
        else:
            head = i["path"].rstrip("/") + "/"
            within = sorted(p for p in read if p.startswith(head) or i["path"] in {"", "."})
            i["read"] = "yes" if within else "no"
            i["read_within"] = within
        never += i["read"] == "no"
    return {
        "known": True,
        "summary": f"{len(inputs) - never} of {len(inputs)} inputs were read by the last build"
        + (f"; {never} never read (a change to one rebuilds for nothing)" if never else ""),
        "outside": list(observed.outside),
    }


def _why(d: Definition, path: str) -> str:
    if path == d.directory:
        return "the definition's directory (its template's directory)"
    if path in d.inputs:
        return "listed in the catalog's `inputs`"
    if path in d.var_files:
        return "listed in the catalog's `var_files` (passed as -var-file)"
    if path == d.template:
        return "the template"
    if path.endswith((".pkr.hcl", ".pkr.json", ".auto.pkrvars.hcl", ".auto.pkrvars.json")):
        return "a file of the template's directory that Packer loads"
    return "read by the template (a builder, provisioner or post-processor names it)"
