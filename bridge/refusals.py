"""What fingerprinting refuses before it names an image (fingerprint.py calls these): values
that would count in the identity without reaching the image (an undeclared variable, a child that
cannot take its parent), a template with several builds and no `only`, an environment read the
catalog's `env` does not list, and a catalog entry that is not the one committed.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Mapping, Sequence

from bridge.catalog import BRIDGE_VARIABLES, Definition
from bridge.entries import entry_of
from bridge.errors import FingerprintError
from bridge.git import (
    LINK_MODE,
    TreeIndex,
)
from bridge.repopaths import normalize
from bridge.templates import (
    EnvironmentReads,
    environment_reads,
)


def refuse_undeclared(d: Definition, declared: set[str]) -> None:
    """Refuse a definition whose values would not reach its image while they count in its
    fingerprint: a child's template must declare `ami_base` (else Packer builds it on the
    template's own source image, tagged as the parent's child); every catalog variable must be
    declared (a JSON template ignores a `-var` it does not declare; HCL2 refuses one only when
    Packer runs)."""
    if d.parent is not None and "ami_base" not in declared:
        raise FingerprintError(
            f"Definition {d.name!r} is built on its parent {d.parent!r}, but its template "
            f"{d.template} declares no variable `ami_base`, through which the bridge passes "
            "the parent's AMI, so Packer would build it on another image. Declare "
            '`variable "ami_base" { type = string }` (JSON: "ami_base" in `variables`) and '
            "use it as the source AMI."
        )
    unknown = sorted(set(d.variables) - declared)
    if not unknown:
        return
    import difflib

    named = ", ".join(f"`{n}`" for n in unknown)
    hints = [
        f"`{n}` (did you mean `{close[0]}`?)"
        for n in unknown
        if (close := difflib.get_close_matches(n, sorted(declared), n=1, cutoff=0.6))
    ]
    raise FingerprintError(
        f"Definition {d.name!r} sets {named} in the catalog's `variables`, but its template "
        f"{d.template} declares no such variable, so the value would not reach the image (a "
        "JSON template ignores a -var it does not declare; HCL2 refuses it) while it counts "
        "in the image's fingerprint. Correct the name in the catalog"
        + (f", {'; '.join(hints)}" if hints else "")
        + ', or declare the variable in the template (`variable "NAME" {}`; JSON: in '
        "`variables`) and use it."
    )


def check_one_build(d: Definition, builds: Sequence[str]) -> None:
    """A definition makes one image: a template with several builds needs `only` (refused here,
    so check, status, plans and matrices say it before a build would)."""
    if d.only is None and len(builds) > 1:
        raise FingerprintError(
            f"The template {d.template} of definition {d.name!r} has {len(builds)} builds "
            f"({', '.join(builds)}), and a definition makes one image. Choose its build with "
            "`only` in the catalog (one definition per build), as `packer build -only` does."
        )


def check_environment(
    root: TreeIndex, d: Definition, commit: str, environment: Mapping[str, str]
) -> EnvironmentReads:
    """A build may read from the environment only what the catalog's `env` lists (whose values
    are in the fingerprint), and the builder's credentials (templates/environment.py: what it
    reads)."""
    found = environment_reads(root, d, commit, environment)
    if "*" in found.reads:
        raise FingerprintError(
            f"The template {d.template} of definition {d.name!r} reads an environment variable "
            f"whose name it computes ({found.reads['*'].where}), so the bridge cannot tell which "
            'value builds the image. Name it literally (env("X"), {{env `X`}}) and list it in '
            "the catalog's `env`."
        )
    unlisted = found.unlisted(d)
    if not unlisted:
        return found
    named = "; ".join(f"{n} ({found.reads[n].where})" for n in unlisted)
    variables = sorted({v for n in unlisted if (v := found.reads[n].variable) is not None})
    settable = [v for v in variables if v not in BRIDGE_VARIABLES]
    plural = len(unlisted) > 1
    raise FingerprintError(
        f"The template {d.template} of definition {d.name!r} reads the environment "
        f"variable{'s' if plural else ''} {named}, which the fingerprint does not know: "
        "whichever environment builds first would define the image for everyone. List "
        f"{'them' if plural else 'it'} in the catalog's `env` (the values at resolve time "
        "become part of the identity)"
        + (
            f", or set {', '.join(f'`{v}`' for v in settable)} in the catalog's `variables` "
            "(a value there wins over the default and the environment, so Packer reads neither)"
            if settable
            else ""
        )
        + "."
    )


def _followed(root: TreeIndex, path: str) -> str:
    """`path`, or where it points when it is a symlink that stays in the repository (a catalog
    kept elsewhere and linked to, say); followed as git stores it, a link at a time."""
    for _ in range(40):  # as the kernel's limit on nested links
        found = root.lookup(path)
        if found is None or found[0] != LINK_MODE:
            return path
        target = (root.read(path) or b"").decode("utf-8", errors="replace")
        joined = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
        if target.startswith("/") or joined == ".." or joined.startswith("../"):
            return path  # out of the repository: read as it is, and refused as not a catalog
        path = joined
    return path


def check_entries(
    root: TreeIndex,
    catalog_path: str,
    definitions: Sequence[Definition],
    commit: str,
    allow_dirty: bool,
) -> None:
    """The catalog entries in use are the ones committed at `commit` (or `allow_dirty` says the
    working tree's count). Otherwise the fingerprint would name one entry and the build use
    another: a variable edited but not committed, or today's catalog applied to an old commit."""
    raw = root.read(_followed(root, normalize(catalog_path)))
    try:
        data = json.loads(raw or b"null")
        committed = data["definitions"]
    except (ValueError, TypeError, KeyError):
        committed = None
    if not isinstance(committed, dict):
        differing = [d.name for d in definitions]
    else:
        differing = [
            d.name
            for d in definitions
            if d.name not in committed or entry_of(data, d.name) != d.entry
        ]
    if not differing or allow_dirty:
        return
    where = "is not committed" if raw is None else "is not a catalog"
    found = (
        f"the catalog {catalog_path} {where} at {commit[:12]}"
        if not isinstance(committed, dict)
        else f"the catalog entries of {', '.join(differing)} differ from the ones committed at "
        f"{commit[:12]}"
    )
    raise FingerprintError(
        f"Cannot fingerprint {', '.join(differing)}: {found}. An image is named by the catalog "
        "entry committed with its files: commit the catalog (or stash its changes), resolve at "
        "the commit whose catalog you have, or pass --allow-dirty (allow_dirty=true in a "
        "query) to use the working tree's."
    )
