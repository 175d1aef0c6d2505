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
class ObservedRead:
    """A repository file a traced build read, with its git blob, and whether the identity
    covered it (a build that read one it did not is refused, so a record's are all covered).
    With the blobs, a later build could tell that what it read is unchanged (ccache's direct
    mode) without another format."""

    path: str
    blob: str
    covered: bool = True

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "blob": self.blob}


@dataclass(frozen=True)
class Observed:
    """What a build was seen to read (observe.py, pipeline/referee.py)."""

    traced: bool
    reads: tuple[ObservedRead, ...] = ()
    # Files outside the repository the build's own processes read (warned about).
    outside: tuple[str, ...] = ()
    # Why it was not traced ("" when it was).
    why_not: str = ""

    def to_dict(self) -> dict[str, Any]:
        if not self.traced:
            return {"traced": False, "why_not": self.why_not}
        return {
            "traced": True,
            "reads": [r.to_dict() for r in self.reads],
            "outside": list(self.outside),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Observed:
        return cls(
            traced=bool(data["traced"]),
            reads=tuple(ObservedRead(r["path"], r["blob"]) for r in data.get("reads", ())),
            outside=tuple(data.get("outside", ())),
            why_not=str(data.get("why_not", "")),
        )


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
    # What the build was seen to read; None where nothing says (a record from an image's tags).
    observed: Observed | None = None

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
