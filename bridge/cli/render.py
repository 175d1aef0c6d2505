"""What the commands print: the status table and its JSON, revoke and restore tables, channel
reports and histories. Nothing here looks anything up."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TextIO

from bridge.model import Build, parse_time

if TYPE_CHECKING:
    from bridge.aws.parameters import Promotion, Version
    from bridge.pipeline.result import ResolvedAmi


def report(
    results: Mapping[str, ResolvedAmi],
    out: TextIO,
    *,
    as_json: bool,
    channels: Mapping[str, str] | None = None,
    errors: Mapping[str, str] | None = None,
) -> None:
    """Each definition's image (`status`, `resolve`, `build`): a table, or JSON with the same
    values as the external protocol's result; `errors` are definitions that could not be
    looked at."""
    from bridge.cli.protocol import result

    if as_json:
        values: dict[str, dict[str, str]] = {n: result(r) for n, r in results.items()}
        values.update({n: {"definition": n, "error": e} for n, e in (errors or {}).items()})
        json.dump(values, out, indent=2, sort_keys=True)
        out.write("\n")
        return
    rows: list[tuple[str, ...]] = [
        ("DEFINITION", "STATE", "AMI", "FINGERPRINT", "PARENT", "AGE", "REGIONS")
    ]
    now = datetime.now(timezone.utc)
    for r in results.values():
        parent = f"{r.parent_definition} ({r.parent_ami_id or '-'})" if r.parent_definition else "-"
        # Each region, and its state when the image is not there yet.
        regions = " ".join(
            region if state == "found" else f"{region}:{state}"
            for region, state in r.region_states.items()
        )
        age = _age(r.creation_date, now) if r.ami_id else "-"
        rows.append(
            (r.definition, r.state, r.ami_id or "-", r.fingerprint[:12], parent, age, regions)
        )
    for name in errors or {}:
        rows.append((name, "error", "-", "-", "-", "-", "-"))
    notes = [
        "; ".join(
            n
            for n in (
                _revocation_note(r),
                f"expires {r.expires_at}" if r.expires_at and r.ami_id else "",
                (channels or {}).get(r.definition),
            )
            if n
        )
        for r in results.values()
    ]
    notes += [one_paragraph(e) for e in (errors or {}).values()]
    if any(notes):
        rows = [
            (*rows[0], "NOTE"),
            *((*row, n) for row, n in zip(rows[1:], notes, strict=True)),
        ]
    table(rows, out)


def _age(creation_date: str, now: datetime) -> str:
    """How old an image is, roughly: 45s, 12m, 5h, 3d."""
    created = parse_time(creation_date)
    if created is None:
        return "?"
    seconds = max(0, int((now - created).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _revocation_note(r: ResolvedAmi) -> str:
    if r.revoked:
        return f"REVOKED: {r.revoke_reason or 'no reason recorded'}"
    if r.revokes_at:
        return f"revoked at {r.revokes_at}"
    return ""


def table(rows: Sequence[Sequence[str]], out: TextIO) -> None:
    """Rows as left-aligned columns (the first row is the header)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")


def gc_table(records: Sequence[Mapping[str, Any]], out: TextIO) -> None:
    """gc's records (gc.rows) as a table: one line per build, its first image and every region."""
    rows = [("IMAGE", "DEFINITION", "FINGERPRINT", "BUILD", "AGE", "REGIONS", "VERDICT")]
    for r in records:
        images: Mapping[str, str] = r["images"]
        rows.append(
            (
                next(iter(images.values()), "-"),
                r["definition"],
                r["fingerprint"][:12],
                r["build_id"],
                r["age"],
                " ".join(images),
                f"{r['action']}: {'; '.join([*r['reasons'], *_recovery(r)])}",
            )
        )
    table(rows, out)


def _recovery(record: Mapping[str, Any]) -> list[str]:
    """Whether the Recycle Bin keeps a build gc deletes, once it is deleted or to be."""
    said = record.get("recovery")
    return [said] if said and record["action"] in ("delete", "deleted") else []


def change_row(build: Build, *cells: str) -> tuple[str, ...]:
    """A build's row in the revoke and restore tables."""
    amis = " ".join(f"{region}:{ami}" for region, ami in build.amis.items())
    return (build.definition, build.build_id[:12], amis, *cells)


def channel_report(
    parameter: str,
    channel: str,
    build: Build,
    done: Promotion,
    out: TextIO,
    *,
    as_json: bool,
) -> None:
    """Where a promotion or rollback pointed a channel: the build, and each region's version
    (the one it held already, where nothing changed)."""
    versions = done.versions
    if as_json:
        json.dump(
            {
                "definition": build.definition,
                "channel": channel,
                "parameter": parameter,
                "build_id": build.build_id,
                "fingerprint": build.fingerprint,
                "regions": {
                    r: {
                        "ami_id": i.ami_id,
                        "version": versions[r],
                        "changed": r not in done.unchanged,
                    }
                    for r, i in sorted(build.images.items())
                },
            },
            out,
            indent=2,
            sort_keys=True,
        )
        out.write("\n")
        return
    out.write(
        f"{parameter} -> build {build.build_id[:12]} (fingerprint {build.fingerprint[:12]})\n"
    )
    for region, image in sorted(build.images.items()):
        held = "  (held already: nothing changed)" if region in done.unchanged else ""
        out.write(f"  {region}  {image.ami_id}  version {versions[region]}{held}\n")


def channel_history(
    versions: Sequence[Version], region: str, out: TextIO, *, as_json: bool
) -> None:
    """Every version of a channel in `region`, oldest first; the current one marked."""
    if as_json:
        json.dump(
            [
                {
                    "version": v.version,
                    "modified": v.modified,
                    "ami_id": v.ami_id,
                    "build_id": v.build_id,
                    "fingerprint": v.fingerprint,
                    "region": region,
                }
                for v in versions
            ],
            out,
            indent=2,
        )
        out.write("\n")
        return
    rows = [("VERSION", "MODIFIED", "AMI", "BUILD", "FINGERPRINT")]
    rows += [
        (
            f"{v.version}{' *' if v is versions[-1] else ''}",
            v.modified,
            v.ami_id,
            v.build_id[:12] or "-",
            v.fingerprint[:12] or "-",
        )
        for v in versions
    ]
    table(rows, out)


def one_paragraph(text: str) -> str:
    """Control characters from input (a path with a newline) are shown escaped, not acted on."""
    return re.sub(r"[\x00-\x1f\x7f]", lambda m: repr(m.group())[1:-1], text)
