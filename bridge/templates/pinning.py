"""Pinning: the template in an exported tree rewritten to build on exactly the upstream images
a root's fingerprint names (sources.py chooses them), whatever Packer would look up itself.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from bridge.errors import BuildError
from bridge.sources import SourceFilter, SourcePick
from bridge.templates import hcl


def pin(root: Path, picks: Sequence[SourcePick]) -> dict[str, str]:
    """Make the template in the exported tree `root` build on exactly the picked images; the
    Packer variables this takes (`ami_base` for the catalog's source).

    A JSON builder gets `source_ami` in place of its filter (and of a `source_ami` that was
    empty); an HCL2 source block gets `source_ami` in place of its `source_ami_filter` block
    (and of its own `source_ami`); references to a `data "amazon-ami"` block's ID, in any file
    of the template, become the AMI ID, and the block goes when nothing else uses it. HCL2 is
    rewritten where its parser places each block and reference (templates/hcl.py). Each rewrite is
    read back and checked, so a template the bridge cannot pin is refused rather than built on
    another image.
    """
    variables: dict[str, str] = {}
    for pick in picks:
        f = pick.filter
        if f.kind == "catalog":
            variables["ami_base"] = pick.ami_id
        elif f.kind == "json-builder":
            _pin_json(root / f.file, f.index, pick.ami_id)
        else:
            _pin_hcl2(root / f.file, pick)
    return variables


def _pin_json(path: Path, index: int, ami: str) -> None:
    template = json.loads(path.read_bytes())
    builder = template["builders"][index]
    builder.pop("source_ami_filter", None)
    builder["source_ami"] = ami
    path.write_text(json.dumps(template, indent=2) + "\n", encoding="utf-8")


def _pin_hcl2(path: Path, pick: SourcePick) -> None:
    f = pick.filter
    _, kind, name = f.origin.split(".", 2)
    # A data source may be used in any file of a template directory (a file template's
    # neighbours are not read by Packer, so rewriting them changes nothing).
    files = sorted(path.parent.glob("*.pkr.hcl")) if f.kind == "hcl2-data" else [path]
    pinned: dict[Path, str] | None = None
    try:
        docs = {p: hcl.parse(str(p), p.read_text(encoding="utf-8")) for p in files}
        if f.kind == "hcl2-data":
            pinned = _pin_data(docs, path, kind, name, pick.ami_id)
        else:
            pinned = _pin_source(docs[path], kind, name, pick.ami_id)
        ok = pinned is not None and _pinned_hcl2(
            [hcl.parse(str(p), text) for p, text in pinned.items()], f, pick.ami_id
        )
    except hcl.HclSyntaxError:
        ok = False
    if not ok or pinned is None:
        raise BuildError(
            f"Cannot make {path.name} build on the chosen source image {pick.ami_id} "
            f"({f.origin}): the bridge could not rewrite its filter. Choose the image with "
            "the catalog's `source` (passed as `ami_base`), or set `track_source: false`."
        )
    for file, text in pinned.items():
        file.write_text(text, encoding="utf-8")


def _pin_source(doc: hcl.Document, kind: str, name: str, ami: str) -> dict[Path, str] | None:
    """The source block's `source_ami_filter` block replaced by `source_ami = "<ami>"`, and its
    own `source_ami` (a variable that was empty, say) removed."""
    block = _block(doc, "source", kind, name)
    if block is None:
        return None
    body = hcl.block_body(block)
    filters = list(hcl.blocks(body, "source_ami_filter"))
    if len(filters) != 1:
        return None
    edits = [(*hcl.span(filters[0]), f"source_ami = {hcl.quoted(ami)}")]
    source_ami = hcl.attributes(body).get("source_ami")
    if source_ami is not None:
        edits.append((*_lines(doc.text, *hcl.span(source_ami)), ""))
    return {Path(doc.path): _edit(doc.text, edits)}


def _pin_data(
    docs: Mapping[Path, hcl.Document], home: Path, kind: str, name: str, ami: str
) -> dict[Path, str] | None:
    """Every `data.<kind>.<name>.id` replaced by the AMI ID; the data block itself (in `home`)
    removed when nothing else refers to it, so Packer does not look the image up again (and a
    Packer without data sources can build the template)."""
    pinned = {}
    for path, doc in docs.items():
        ids = _references(doc, ["data", kind, name, "id"])
        pinned[path] = hcl.parse(
            doc.path, _edit(doc.text, [(*hcl.span(n), hcl.quoted(ami)) for n in ids])
        )
    block = _block(pinned[home], "data", kind, name)
    if block is None:
        return None
    texts = {path: doc.text for path, doc in pinned.items()}
    if not any(_references(doc, ["data", kind, name]) for doc in pinned.values()):
        texts[home] = _edit(texts[home], [(*_lines(texts[home], *hcl.span(block)), "")])
    return texts


def _references(doc: hcl.Document, names: list[str]) -> list[hcl.Node]:
    """The references in `doc` to `names` (`data.amazon-ami.x.id`), or through it
    (`data.amazon-ami.x` is in `data.amazon-ami.x.name`)."""
    return [
        node
        for node in hcl.walk(doc.tree)
        if node.data == "get_attr_expr_term" and hcl.traversal(node) == names
    ]


def _pinned_hcl2(docs: Sequence[hcl.Document], f: SourceFilter, ami: str) -> bool:
    """Whether `docs` build on `ami` where `f` chose before."""
    _, kind, name = f.origin.split(".", 2)
    if f.kind == "hcl2-data":
        return not any(_references(doc, ["data", kind, name, "id"]) for doc in docs)
    (doc,) = docs
    block = _block(doc, "source", kind, name)
    if block is None:
        return False
    body = hcl.block_body(block)
    source_ami = hcl.attributes(body).get("source_ami")
    return (
        not any(hcl.blocks(body, "source_ami_filter"))
        and source_ami is not None
        and doc.source(hcl.value_of(source_ami)).strip() == hcl.quoted(ami)
    )


def _block(doc: hcl.Document, kind: str, *labels: str) -> hcl.Node | None:
    found = [b for b in hcl.blocks(doc.body, kind) if hcl.block_labels(b) == list(labels)]
    return found[0] if len(found) == 1 else None


def _lines(text: str, start: int, end: int) -> tuple[int, int]:
    """The span widened to whole lines when nothing else is on them (what to cut)."""
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", end)
    line_end = len(text) if line_end < 0 else line_end + 1
    if text[line_start:start].strip() or text[end:line_end].strip():
        return start, end
    return line_start, line_end


def _edit(text: str, edits: Sequence[tuple[int, int, str]]) -> str:
    """`text` with each (start, end) span replaced; the spans do not overlap."""
    for start, end, replacement in sorted(edits, reverse=True):
        text = text[:start] + replacement + text[end:]
    return text
