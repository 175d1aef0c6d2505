"""The build step: Packer variables for a definition, one `packer build`, its artifacts.

A catalog variable reaches Packer as its variable types take a `-var` value: a string as it is,
a number or boolean as its literal, a list or map as an HCL expression (JSON templates take
strings only, which catalog.py checks).

Nothing here tags or publishes (publish.py does, after the build is known to be ours), so a
failed or interrupted build leaves nothing that names the fingerprint.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from bridge import observe
from bridge.catalog import ENDPOINT_VARIABLE, Definition
from bridge.entries import VariableValue, canonical_value
from bridge.errors import BuildError
from bridge.observe import Access, Tracer
from bridge.packer import PackerRunner
from bridge.pipeline import seed
from bridge.sources import SourcePick
from bridge.templates import pin

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Artifacts:
    """What one Packer build made."""

    amis: Mapping[str, str]  # region -> AMI ID, for every region of the definition
    log_path: Path
    # What Packer and its processes read, opened and ran (observe.py); None when not traced.
    accesses: tuple[Access, ...] | None = None


def packer_variables(
    d: Definition,
    fingerprint: str,
    *,
    declared: Collection[str],
    parent_ami: str | None,
    region: str,
    ec2_endpoint: str | None,
    ami_name: str | None = None,
) -> dict[str, str]:
    """The `-var` values of a build: the catalog's variables, plus the seed pipeline's variables
    (`ami_sha`, `ami_name`, `region`, and `ami_base` for a child) and `ec2_endpoint` where the
    template declares them. A variable the bridge has no value for keeps the template's default
    (catalog.py refuses catalog values for the bridge's own variables). `ami_name` defaults to
    image_name()."""
    variables = {name: packer_value(value) for name, value in d.variables.items()}
    provided = {
        "ami_sha": fingerprint,
        "ami_name": ami_name or image_name(d, fingerprint),
        "region": region,
    }
    if parent_ami:
        provided["ami_base"] = parent_ami
    if ec2_endpoint:
        provided[ENDPOINT_VARIABLE] = ec2_endpoint
    variables.update((k, v) for k, v in provided.items() if k in declared)
    return variables


def image_name(d: Definition, fingerprint: str, build_id: str | None = None) -> str:
    """The `ami_name` variable: `<definition>-<fingerprint[:12]>`, as the seed pipeline named
    images; for a second build of the same fingerprint (a forced rebuild, a rebuild after expiry
    or revocation) followed by its build ID's first 8 digits, since EC2 refuses a name an image
    of the account has in the region already."""
    name = f"{d.name}-{fingerprint[:12]}"
    return f"{name}-{build_id[:8]}" if build_id else name


def packer_value(value: VariableValue) -> str:
    """A catalog variable's value as `-var name=<value>` takes it. Packer reads a string, number
    or untyped variable's value as literal text, and any other type's as an HCL expression."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return canonical_value(value)
    if isinstance(value, list):
        return "[" + ", ".join(_hcl(v) for v in value) + "]"
    return "{" + ", ".join(f"{_hcl_string(k)} = {_hcl(v)}" for k, v in sorted(value.items())) + "}"


def _hcl(value: VariableValue) -> str:
    return _hcl_string(value) if isinstance(value, str) else packer_value(value)


def _hcl_string(text: str) -> str:
    """A quoted HCL string literal: escapes for quotes, backslashes and control characters, and
    `$${`/`%%{` so no template sequence is interpreted."""
    escaped = "".join(
        _ESCAPES.get(c) or (f"\\u{ord(c):04x}" if ord(c) < 0x20 or ord(c) == 0x7F else c)
        for c in text
    )
    return '"' + escaped.replace("${", "$${").replace("%{", "%%{") + '"'


_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def build_image(
    runner: PackerRunner,
    root: Path,
    d: Definition,
    fingerprint: str,
    *,
    regions: Sequence[str],
    parent: tuple[str, str] | None,
    ec2_endpoint: str | None,
    log_dir: Path,
    sources: Sequence[SourcePick] = (),
    builds: Sequence[str] = (),
    declared: Collection[str],
    manifest_dir: Path | None,
    ami_name: str | None = None,
    tracer: Tracer | None = None,
) -> Artifacts:
    """Run Packer for `d` from `root`; the AMIs it reports for `regions` (the first, where it
    builds, at least; a template may copy to others itself with `ami_regions`).

    `parent` is (definition, AMI) of the image to build on; `sources`, the upstream images a
    root's fingerprint names, which the template in `root` is pinned to; `builds`, the builds
    Packer runs for `d` (templates/reads.py: one, or the build is refused); `declared`, the
    variables its template declares (fingerprint.py reads them from the tree `root` was
    exported from).
    Artifacts come from Packer's machine-readable output, or from a seed-style manifest file in
    `manifest_dir` (default `root`).
    """
    if len(builds) > 1:
        raise BuildError(
            f"The template {d.template} of definition {d.name!r} has {len(builds)} builds "
            f"({', '.join(builds)}), and a definition makes one image. Choose its build with "
            "`only` in the catalog (one definition per build), as `packer build -only` does."
        )
    pinned = pin(root, sources)
    if "ami_base" in pinned and "ami_base" not in declared:
        raise BuildError(
            f"Definition {d.name!r} chooses its upstream image with the catalog's `source`, "
            "which is passed to Packer as the `ami_base` variable, but its template declares no "
            "`ami_base`. Declare it and use it as the source AMI, or choose the image in the "
            "template with `source_ami_filter`."
        )
    if parent is not None and "ami_base" not in declared:
        # fingerprint.py refuses this already; a caller that did not fingerprint is checked.
        raise BuildError(
            f"Definition {d.name!r} is built on {parent[0]} ({parent[1]}), but its template "
            f"{d.template} declares no variable `ami_base` to pass it through, so Packer would "
            "build on another image. Declare `ami_base` and use it as the source AMI."
        )
    variables = packer_variables(
        d,
        fingerprint,
        declared=declared,
        parent_ami=parent[1] if parent else pinned.get("ami_base"),
        region=regions[0],
        ec2_endpoint=ec2_endpoint,
        ami_name=ami_name,
    )
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    log_path = log_dir / f"{d.name}-{fingerprint[:12]}-{stamp}.log"
    log.info("building %s (%s) with Packer; log: %s", d.name, fingerprint[:12], log_path)
    # Whole seconds: some filesystems keep coarse modification times.
    started = math.floor(time.time())
    with tempfile.TemporaryDirectory(prefix=f"{d.name}-trace-", dir=_made(log_dir)) as traces:
        result = runner.build(
            d.template,
            variables,
            root,
            log_path,
            label=d.name,
            only=d.only,
            var_files=d.var_files,
            listed=d.env,
            traced=None if tracer is None else (tracer, Path(traces)),
        )
        accesses = None if tracer is None else tuple(observe.accesses(Path(traces)))
    amis = result.amis or seed.build_artifacts(manifest_dir or root, d.name, written_since=started)
    if regions[0] not in amis:
        raise BuildError(
            f"Packer built {d.name!r} but reported no AMI in {regions[0]}, where it was asked to "
            f"build (it reported {amis or 'none'}). Make the template build in its `region` "
            f"variable. Log: {log_path}."
        )
    untracked = {r: a for r, a in sorted(amis.items()) if r not in regions}
    if untracked:
        # Copies the template makes itself (`ami_regions`): no bridge command would see them.
        log.warning(
            "%s: Packer also copied the image to %s (the template's own ami_regions), regions "
            "the catalog does not list for it: those copies get no tags, so the bridge never "
            "finds, shares, revokes or collects them. Remove ami_regions from the template and "
            "list the regions in the definition's `regions` (the bridge copies and tracks them).",
            d.name,
            ", ".join(f"{r} ({a})" for r, a in untracked.items()),
        )
    return Artifacts({r: amis[r] for r in regions if r in amis}, log_path, accesses)


def _made(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    return directory
