"""One build's record: the images it made and everything they were made from.

The builder fills in one `BuildRecord` per build; the image's tags (publish.image_tags), its
manifest (manifests.Manifest.of) and its signed provenance statement (provenance.statement) are
each written from it, so that a field has one name and one value wherever it is recorded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bridge import model


@dataclass(frozen=True)
class Parent:
    """The image a build was built on, in the region it was built in."""

    definition: str
    fingerprint: str
    ami: str
    # Known to a build (not kept in a manifest): the parent's build ID, its build's origin AMI
    # (model.TAG_ORIGIN) and the URI of its own provenance statement.
    build_id: str = ""
    origin: str = ""
    provenance: str = ""


@dataclass(frozen=True)
class BuildRecord:
    """What one build made (its AMI in each region) and from what."""

    catalog: str  # the catalog's ID (ownership.py); "" records none
    definition: str
    fingerprint: str
    build_id: str  # plan.predicted_build_id, computed before the build
    commit: str  # the commit fingerprinted
    region: str  # where Packer built it
    amis: Mapping[str, str]  # region -> AMI ID: the build's, then its copies
    parent: Parent | None
    source_amis: tuple[str, ...] = ()  # the upstream images a root was built on (sources.py)
    packer_version: str = "unknown"
    build_url: str = ""  # the CI run
    built_at: str = ""  # when the build started, to the microsecond (model.TAG_BUILT_AT)
    # The tests the image passed before it was published, in order (gates.Outcome.to_dict).
    tests: tuple[Mapping[str, Any], ...] = ()

    @property
    def origin(self) -> str:
        """The AMI Packer made, in the build region (model.TAG_ORIGIN)."""
        return self.amis.get(self.region, "")

    @property
    def started(self) -> str:
        """`built_at` to the second, the bridge's form of a time (model.timestamp)."""
        at = model.parse_time(self.built_at)
        return "" if at is None else model.timestamp(at)

    @property
    def passed(self) -> tuple[str, ...]:
        """The names of the tests it passed (model.TAG_TESTS)."""
        return tuple(str(t["name"]) for t in self.tests if t.get("passed"))
