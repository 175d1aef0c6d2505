"""The planner (plan.py): every state and step as a table of plain-data cases, no I/O."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone
from types import MappingProxyType

import pytest

from bridge.catalog import Definition
from bridge.errors import QueryError
from bridge.model import (
    TAG_BUILD_ID,
    TAG_BUILT_AT,
    TAG_PARENT_AMI,
    TAG_REVOKE_REASON,
    TAG_REVOKED_AT,
    Image,
    ImageState,
    builds_of,
)
from bridge.pipeline.plan import (
    Decision,
    build_id,
    decide,
    needs_manifest,
    next_step,
    predicted_build_id,
    regions_for,
)

FP = "f" * 40
ROOT = Definition("base", "base/base.json", "json", "base", ())
CHILD = Definition("app", "app/app.json", "json", "app", (), parent="base")


def image(
    ami: str,
    region: str = "us-east-1",
    *,
    state: ImageState = "available",
    parent: str | None = None,
    created: str = "2026-01-01T00:00:00.000Z",
    definition: str | None = None,
) -> Image:
    tags = {"SHA": FP, **({TAG_PARENT_AMI: parent} if parent is not None else {})}
    if definition is not None:
        tags["ami-chain:definition"] = definition
    return Image(ami, region, state, created, "123456789012", MappingProxyType(tags), ())


EAST = ("us-east-1",)
BOTH = ("us-east-1", "eu-west-1")

# (case, definition, regions, images seen per region, parent AMI, seeded, state, AMIs used)
CASES = [
    ("root found", ROOT, EAST, {"us-east-1": [image("ami-1")]}, None, None, "found",
     {"us-east-1": "ami-1"}),
    ("root missing", ROOT, EAST, {}, None, None, "missing", {}),
    ("root pending", ROOT, EAST, {"us-east-1": [image("ami-1", state="pending")]}, None, None,
     "pending", {"us-east-1": "ami-1"}),
    ("newest of duplicates", ROOT, EAST, {"us-east-1": [image("ami-2"), image("ami-1")]}, None,
     None, "found", {"us-east-1": "ami-2"}),
    ("every region found", ROOT, BOTH,
     {"us-east-1": [image("ami-1")], "eu-west-1": [image("ami-9", "eu-west-1")]}, None, None,
     "found", {"us-east-1": "ami-1", "eu-west-1": "ami-9"}),
    ("one region lacks a copy", ROOT, BOTH, {"us-east-1": [image("ami-1")]}, None, None,
     "partial", {"us-east-1": "ami-1"}),
    ("only the second region has it", ROOT, BOTH, {"eu-west-1": [image("ami-9", "eu-west-1")]},
     None, None, "partial", {"eu-west-1": "ami-9"}),
    ("a child's copy built on the parent's copy elsewhere", CHILD, EAST,
     {"us-east-1": [image("ami-5", parent="ami-west")]}, "ami-west", None, "found",
     {"us-east-1": "ami-5"}),
    ("one region pending", ROOT, BOTH,
     {"us-east-1": [image("ami-1")], "eu-west-1": [image("ami-9", "eu-west-1", state="pending")]},
     None, None, "pending", {"us-east-1": "ami-1", "eu-west-1": "ami-9"}),
    ("child on its parent's AMI", CHILD, EAST, {"us-east-1": [image("ami-5", parent="ami-1")]},
     "ami-1", None, "found", {"us-east-1": "ami-5"}),
    ("child on another parent AMI", CHILD, EAST, {"us-east-1": [image("ami-5", parent="ami-0")]},
     "ami-1", None, "outdated", {}),
    ("child whose parent has no image yet", CHILD, EAST,
     {"us-east-1": [image("ami-5", parent="ami-0")]}, "", None, "outdated", {}),
    ("child picks the copy on its parent's AMI", CHILD, EAST,
     {"us-east-1": [image("ami-6", parent="ami-0"), image("ami-5", parent="ami-1")]}, "ami-1",
     None, "found", {"us-east-1": "ami-5"}),
    ("child missing", CHILD, EAST, {}, "ami-1", None, "missing", {}),
    ("seed manifest fills a missing root", ROOT, EAST, {},
     None, {"us-east-1": image("ami-7")}, "found", {"us-east-1": "ami-7"}),
    ("seed manifest not used while pending", ROOT, EAST, {}, None,
     {"us-east-1": image("ami-7", state="pending")}, "missing", {}),
    ("seed manifest lacking a region", ROOT, BOTH, {}, None, {"us-east-1": image("ami-7")},
     "missing", {}),
    ("seed manifest loses to the fingerprint", ROOT, EAST, {"us-east-1": [image("ami-1")]}, None,
     {"us-east-1": image("ami-7")}, "found", {"us-east-1": "ami-1"}),
    ("seed manifest never used for a child", CHILD, EAST, {}, "ami-1",
     {"us-east-1": image("ami-7")}, "missing", {}),
    ("another definition's image with the fingerprint", ROOT, EAST,
     {"us-east-1": [image("ami-8", definition="hardened"), image("ami-1")]}, None, None, "found",
     {"us-east-1": "ami-1"}),
    ("only another definition's image", ROOT, EAST,
     {"us-east-1": [image("ami-8", definition="hardened")]}, None, None, "missing", {}),
]  # fmt: skip


@pytest.mark.parametrize(
    ("definition", "regions", "seen", "parent_ami", "seeded", "state", "amis"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_decide(definition, regions, seen, parent_ami, seeded, state, amis):
    parent_amis = None if parent_ami is None else {parent_ami} - {""}
    decision = decide(definition, FP, regions, seen, parent_amis=parent_amis, seeded=seeded)
    assert decision.state == state
    assert decision.amis == amis
    assert decision.regions == regions
    assert decision.fingerprint == FP


def test_an_earlier_build_of_the_fingerprint_is_no_duplicate_but_two_images_of_one_build_are():
    def built(ami: str, build: str, created: str) -> Image:
        i = image(ami, created=created)
        return replace(i, tags=MappingProxyType({**i.tags, TAG_BUILD_ID: build}))

    forced = built("ami-2", "b2", "2026-01-02T00:00:00.000Z")
    earlier = built("ami-1", "b1", "2026-01-01T00:00:00.000Z")
    decision = decide(ROOT, FP, EAST, {"us-east-1": [forced, earlier]}, parent_amis=None)
    assert decision.primary == forced and dict(decision.duplicates) == {}
    twin = built("ami-3", "b2", "2026-01-02T00:00:00.000Z")
    decision = decide(ROOT, FP, EAST, {"us-east-1": [forced, twin, earlier]}, parent_amis=None)
    assert dict(decision.duplicates) == {"us-east-1": ("ami-3",)}


def test_decide_lists_duplicates_for_warnings():
    seen = {"us-east-1": [image("ami-3"), image("ami-2"), image("ami-1")]}
    decision = decide(ROOT, FP, EAST, seen, parent_amis=None)
    assert decision.primary is not None and decision.primary.ami_id == "ami-3"
    assert dict(decision.duplicates) == {"us-east-1": ("ami-2", "ami-1")}
    assert decision.source == "ec2"


def test_decide_says_where_a_seeded_image_came_from():
    decision = decide(ROOT, FP, EAST, {}, parent_amis=None, seeded={"us-east-1": image("ami-7")})
    assert decision.source == "seed-manifest"


def decision(state) -> Decision:
    return Decision("app", FP, state, EAST)


# (state, on_missing, forced, parent ready) -> step
STEPS = [
    ("found", "build", False, True, "use"),
    ("found", "fail", False, True, "use"),
    ("found", "report", False, True, "use"),
    ("found", "build", True, True, "build"),
    ("pending", "build", False, True, "wait"),
    ("pending", "report", False, True, "wait"),
    ("pending", "build", True, True, "build"),
    ("missing", "build", False, True, "build"),
    ("missing", "fail", False, True, "fail"),
    ("missing", "report", False, True, "report"),
    ("outdated", "build", False, True, "build"),
    ("outdated", "fail", False, True, "fail"),
    ("outdated", "report", False, True, "report"),
    ("missing", "build", False, False, "report"),
    ("outdated", "fail", False, False, "report"),
    ("missing", "build", True, False, "report"),
    ("partial", "build", False, True, "copy"),
    ("partial", "fail", False, True, "fail"),
    ("partial", "report", False, True, "report"),
    ("partial", "build", True, True, "build"),
    # An archived build is restored by `unarchive`, never built again, whatever on_missing says.
    ("archived", "build", False, True, "fail"),
    ("archived", "fail", False, True, "fail"),
    ("archived", "report", False, True, "report"),
    ("archived", "build", False, False, "fail"),
    # A revoked image is a miss: on_missing decides (on_revoked=fail: tests below).
    ("revoked", "build", False, True, "build"),
    ("revoked", "report", False, True, "report"),
    ("revoked", "build", False, False, "report"),
    ("expired", "build", False, True, "build"),
    ("expired", "fail", False, True, "fail"),
]


@pytest.mark.parametrize(("state", "on_missing", "forced", "parent_ready", "step"), STEPS)
def test_next_step(state, on_missing, forced, parent_ready, step):
    assert (
        next_step(decision(state), on_missing=on_missing, forced=forced, parent_ready=parent_ready)
        == step
    )


@pytest.mark.parametrize(
    ("own", "catalog", "region", "expected"),
    [
        ((), (), "us-east-1", ("us-east-1",)),
        ((), ("eu-west-1", "us-east-1"), "us-east-1", ("us-east-1", "eu-west-1")),
        (("eu-west-1",), ("us-east-1",), "us-east-1", ("eu-west-1",)),
        (("eu-west-1", "ap-south-1"), (), "us-east-1", ("eu-west-1", "ap-south-1")),
        (("eu-west-1", "ap-south-1"), (), "ap-south-1", ("ap-south-1", "eu-west-1")),
    ],
)
def test_regions_for(own, catalog, region, expected):
    d = Definition("x", "x/x.json", "json", "x", (), regions=own)
    assert regions_for(d, catalog_regions=catalog, region=region) == expected


def test_decisions_only_offer_images_to_use():
    outdated = decide(
        CHILD, FP, EAST, {"us-east-1": [image("ami-5", parent="ami-1")]}, parent_amis={"ami-2"}
    )
    assert outdated.state == "outdated"
    assert outdated.primary is None and outdated.amis == {}
    assert not outdated.usable


def test_a_partial_image_says_which_regions_to_copy_to_and_from_what():
    seen = {"eu-west-1": [image("ami-9", "eu-west-1")]}
    partial = decide(ROOT, FP, BOTH, seen, parent_amis=None)
    assert partial.state == "partial" and not partial.usable
    assert partial.region_states == {"us-east-1": "missing", "eu-west-1": "found"}
    assert partial.missing_regions == ("us-east-1",)
    assert partial.primary is None  # nothing to use in the build region
    copying = decide(
        ROOT, FP, BOTH, {**seen, "us-east-1": [image("ami-1", state="pending")]}, parent_amis=None
    )
    assert copying.state == "pending"
    assert copying.region_states == {"us-east-1": "pending", "eu-west-1": "found"}
    west = image("ami-9", "eu-west-1", state="pending")
    copied = decide(
        ROOT, FP, BOTH, {"us-east-1": [image("ami-1")], "eu-west-1": [west]}, parent_amis=None
    )
    assert copied.region_states == {"us-east-1": "found", "eu-west-1": "copying"}
    # A look uses this region's image while the copy goes on; a build run waits for it.
    assert next_step(copied, on_missing="report", forced=False, parent_ready=True) == "use"
    assert next_step(copied, on_missing="build", forced=False, parent_ready=True) == "wait"
    assert next_step(copying, on_missing="report", forced=False, parent_ready=True) == "wait"


def test_a_region_asked_for_must_be_one_of_the_definitions():
    d = Definition("x", "x/x.json", "json", "x", (), regions=("us-east-1", "eu-west-1"))
    assert regions_for(d, catalog_regions=(), region="eu-west-1", explicit=True) == (
        "eu-west-1",
        "us-east-1",
    )
    with pytest.raises(QueryError, match=r"not distributed to ap-south-1 \(its regions: "):
        regions_for(d, catalog_regions=(), region="ap-south-1", explicit=True)
    # The catalog's own first region is no request: the definition's regions stand.
    assert regions_for(d, catalog_regions=(), region="ap-south-1") == ("us-east-1", "eu-west-1")


def built_by_us(ami, *, manifest: bool, definition="base"):
    tags = {"SHA": FP, "ami-chain:definition": definition}
    if manifest:
        tags["ami-chain:manifest"] = "s3://b/base/f.json"
    return Image(ami, "us-east-1", "available", "2026", "1", MappingProxyType(tags), ())


@pytest.mark.parametrize(
    ("image", "needed"),
    [
        (built_by_us("ami-1", manifest=False), True),
        (built_by_us("ami-1", manifest=True), False),
        (built_by_us("ami-1", manifest=False, definition="other"), False),
        (image("ami-1"), False),  # not built by this tool (a seed image): nothing to restore from
    ],
)
def test_needs_manifest(image, needed):
    decision = decide(ROOT, FP, EAST, {"us-east-1": [image]}, parent_amis=None)
    assert needs_manifest(decision, "base") is needed


def test_a_missing_or_pending_image_needs_no_manifest():
    assert not needs_manifest(decide(ROOT, FP, EAST, {}, parent_amis=None), "base")
    pending = built_by_us("ami-1", manifest=False)
    pending = Image(pending.ami_id, pending.region, "pending", "", "1", pending.tags, ())
    assert not needs_manifest(
        decide(ROOT, FP, EAST, {"us-east-1": [pending]}, parent_amis=None), "base"
    )


def test_a_found_image_is_identified_by_its_build_id_tag_or_else_its_ami():
    tagged = image("ami-1")
    tagged = Image(
        "ami-1", "us-east-1", "available", tagged.creation_date, tagged.owner_id,
        MappingProxyType({**tagged.tags, TAG_BUILD_ID: "planned"}), (),
    )  # fmt: skip
    assert build_id(decide(ROOT, FP, EAST, {"us-east-1": [tagged]}, parent_amis=None), None) == (
        "planned"
    )
    untagged = decide(ROOT, FP, EAST, {"us-east-1": [image("ami-1")]}, parent_amis=None)
    assert build_id(untagged, None) == "ami-1"


def test_a_missing_image_gets_the_id_its_build_will_have():
    missing = decide(ROOT, FP, EAST, {}, parent_amis=None)
    assert build_id(missing, None) == predicted_build_id(missing, None)
    # The same inputs give the same ID in every process.
    assert predicted_build_id(missing, None) == predicted_build_id(
        decide(ROOT, FP, EAST, {}, parent_amis=None), None
    )


def test_the_predicted_build_id_changes_with_whatever_the_image_is_built_on():
    root = decide(ROOT, FP, EAST, {}, parent_amis=None)
    child = decide(CHILD, FP, EAST, {}, parent_amis=set())
    other_fp = decide(ROOT, "e" * 40, EAST, {}, parent_amis=None)
    ids = {
        predicted_build_id(root, None),
        predicted_build_id(other_fp, None),
        predicted_build_id(child, "parent-build-1"),
        predicted_build_id(child, "parent-build-2"),
    }
    assert len(ids) == 4


def test_a_rebuild_supersedes_the_images_before_it():
    """An outdated child (its parent rebuilt under the same fingerprint) or a forced rebuild gets
    a new ID, so a Terraform plan shows the build to come."""
    first = decide(CHILD, FP, EAST, {}, parent_amis={"ami-1"})
    outdated = decide(
        CHILD, FP, EAST, {"us-east-1": [image("ami-5", parent="ami-1")]}, parent_amis={"ami-2"}
    )
    assert outdated.state == "outdated" and outdated.prior == ("ami-5",)  # untagged: its AMI
    assert predicted_build_id(outdated, "p") != predicted_build_id(first, "p")
    found = decide(ROOT, FP, EAST, {"us-east-1": [image("ami-1")]}, parent_amis=None)
    assert predicted_build_id(found, None) != predicted_build_id(
        decide(ROOT, FP, EAST, {}, parent_amis=None), None
    )
    # Another definition's image with the fingerprint is not one this build supersedes.
    foreign = decide(
        ROOT, FP, EAST, {"us-east-1": [image("ami-7", definition="x")]}, parent_amis=None
    )
    assert foreign.prior == ()


def test_the_predicted_build_id_does_not_depend_on_the_region_resolved_first():
    """Two Terraform roots in different regions plan the same build: copies count once."""
    copy_east = Image(
        "ami-e1", "us-east-1", "available", "2026-01-01T00:00:00.000Z", "123456789012",
        MappingProxyType({"SHA": FP, TAG_BUILD_ID: "b1"}), (),
    )  # fmt: skip
    copy_west = Image(
        "ami-w1", "eu-west-1", "available", "2026-01-01T00:00:00.000Z", "123456789012",
        MappingProxyType({"SHA": FP, TAG_BUILD_ID: "b1"}), (),
    )  # fmt: skip
    seen = {"us-east-1": [copy_east], "eu-west-1": [copy_west]}
    east_first = decide(CHILD, FP, BOTH, seen, parent_amis={"ami-new"})
    west_first = decide(CHILD, FP, tuple(reversed(BOTH)), seen, parent_amis={"ami-new"})
    assert east_first.state == west_first.state == "outdated"
    assert east_first.prior == west_first.prior == ("b1",)
    assert predicted_build_id(east_first, "p") == predicted_build_id(west_first, "p")


def test_an_image_past_its_maximum_age_is_expired_and_a_younger_one_wins():
    from datetime import datetime, timezone

    now = datetime(2026, 3, 1, tzinfo=timezone.utc)
    old = image("ami-old", created="2026-01-01T00:00:00.000Z")
    young = image("ami-new", created="2026-02-20T00:00:00.000Z")
    both = decide(
        ROOT, FP, EAST, {"us-east-1": [young, old]}, parent_amis=None, max_age_days=30, now=now
    )
    assert both.state == "found" and both.amis == {"us-east-1": "ami-new"}
    assert both.expires_at == "2026-03-22T00:00:00Z"
    gone = decide(ROOT, FP, EAST, {"us-east-1": [old]}, parent_amis=None, max_age_days=30, now=now)
    assert gone.state == "expired" and gone.amis == {} and gone.prior == ("ami-old",)
    assert next_step(gone, on_missing="build", forced=False, parent_ready=True) == "build"
    assert next_step(gone, on_missing="fail", forced=False, parent_ready=True) == "fail"
    forever = decide(ROOT, FP, EAST, {"us-east-1": [old]}, parent_amis=None, now=now)
    assert forever.state == "found" and forever.expires_at == ""


def test_a_copy_is_as_old_as_its_build():
    from datetime import datetime, timezone

    def built(ami, region, created):
        i = image(ami, region, created=created)
        return Image(
            ami,
            region,
            "available",
            created,
            i.owner_id,
            MappingProxyType({**i.tags, TAG_BUILD_ID: "b1"}),
            (),
        )

    seen = {
        "us-east-1": [built("ami-1", "us-east-1", "2026-01-01T00:00:00.000Z")],
        "eu-west-1": [built("ami-9", "eu-west-1", "2026-02-25T00:00:00.000Z")],  # copied later
    }
    now = datetime(2026, 3, 1, tzinfo=timezone.utc)
    decision = decide(ROOT, FP, BOTH, seen, parent_amis=None, max_age_days=30, now=now)
    assert decision.state == "expired"


def revoked(ami, at, reason="bad kernel", *, created="2026-01-01T00:00:00.000Z", parent=None):
    i = image(ami, created=created, parent=parent)
    tags = {**i.tags, TAG_REVOKED_AT: at, TAG_REVOKE_REASON: reason, TAG_BUILD_ID: ami + "-b"}
    return replace(i, tags=MappingProxyType(tags))


NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


def test_a_revoked_image_is_not_used_and_the_state_says_why():
    gone = revoked("ami-1", "2026-03-01T11:00:00Z")
    decision = decide(ROOT, FP, EAST, {"us-east-1": [gone]}, parent_amis=None, now=NOW)
    assert decision.state == "revoked" and decision.amis == {} and not decision.usable
    assert decision.revoke_reason == "bad kernel"
    assert decision.prior == ("ami-1-b",)  # a rebuild gets a new build ID
    assert next_step(decision, on_missing="build", forced=False, parent_ready=True) == "build"
    assert next_step(decision, on_missing="fail", forced=False, parent_ready=True) == "fail"
    assert next_step(decision, on_missing="report", forced=False, parent_ready=True) == "report"
    assert (
        next_step(decision, on_missing="build", forced=False, parent_ready=True, on_revoked="fail")
        == "fail"
    )
    for on_missing in ("build", "report"):
        step = next_step(
            decision, on_missing=on_missing, forced=False, parent_ready=True, on_revoked="fail"
        )
        assert step == "fail"
    assert next_step(decision, on_missing="build", forced=True, parent_ready=True) == "build"


def test_a_revocation_at_this_very_moment_counts():
    gone = revoked("ami-1", "2026-03-01T12:00:00Z")
    decision = decide(ROOT, FP, EAST, {"us-east-1": [gone]}, parent_amis=None, now=NOW)
    assert decision.state == "revoked"


def test_a_revocation_scheduled_for_later_leaves_the_image_usable_until_then():
    later = revoked("ami-1", "2026-03-01T12:00:03Z")
    decision = decide(ROOT, FP, EAST, {"us-east-1": [later]}, parent_amis=None, now=NOW)
    assert decision.state == "found" and decision.amis == {"us-east-1": "ami-1"}
    assert decision.revokes_at == "2026-03-01T12:00:03Z"
    assert decision.revoke_reason == ""
    after = decide(
        ROOT, FP, EAST, {"us-east-1": [later]}, parent_amis=None, now=NOW + timedelta(seconds=3)
    )
    assert after.state == "revoked" and after.revokes_at == ""


def test_an_older_unrevoked_image_wins_over_a_revoked_newer_one():
    new = revoked("ami-2", "2026-03-01T00:00:00Z", created="2026-02-01T00:00:00.000Z")
    old = image("ami-1")
    decision = decide(ROOT, FP, EAST, {"us-east-1": [new, old]}, parent_amis=None, now=NOW)
    assert decision.state == "found" and decision.amis == {"us-east-1": "ami-1"}
    assert decision.revokes_at == ""


def test_revoked_comes_before_expired_and_names_the_newest_revocation():
    old = image("ami-1", created="2025-01-01T00:00:00.000Z")
    first = revoked("ami-2", "2026-02-01T00:00:00Z", "first", created="2026-01-01T00:00:00.000Z")
    second = revoked("ami-3", "2026-02-02T00:00:00Z", "second", created="2026-01-02T00:00:00.000Z")
    decision = decide(
        ROOT,
        FP,
        EAST,
        {"us-east-1": [second, first, old]},
        parent_amis=None,
        max_age_days=30,
        now=NOW,
    )
    assert decision.state == "revoked" and decision.revoke_reason == "second"


def test_a_revoked_child_is_revoked_whatever_its_parent_and_an_unrevoked_one_outdated():
    child = revoked("ami-5", "2026-02-01T00:00:00Z", "base ami-1 revoked", parent="ami-1")
    on_current = decide(CHILD, FP, EAST, {"us-east-1": [child]}, parent_amis={"ami-1"}, now=NOW)
    assert on_current.state == "revoked" and on_current.revoke_reason == "base ami-1 revoked"
    # Its parent was revoked too (no image) or rebuilt: still revoked, with the reason.
    for parent in (set(), {"ami-9"}):
        again = decide(CHILD, FP, EAST, {"us-east-1": [child]}, parent_amis=parent, now=NOW)
        assert again.state == "revoked" and again.revoke_reason == "base ami-1 revoked"
    plain = image("ami-6", parent="ami-1")
    outdated = decide(CHILD, FP, EAST, {"us-east-1": [plain]}, parent_amis={"ami-9"}, now=NOW)
    assert outdated.state == "outdated"


def test_an_unreadable_revocation_time_counts_as_revoked():
    gone = revoked("ami-1", "whenever")
    decision = decide(ROOT, FP, EAST, {"us-east-1": [gone]}, parent_amis=None, now=NOW)
    assert decision.state == "revoked"


def test_a_revocation_written_by_hand_without_a_zone_counts_as_utc():
    past = revoked("ami-1", "2026-03-01T11:59:59")
    assert decide(ROOT, FP, EAST, {"us-east-1": [past]}, parent_amis=None, now=NOW).state == (
        "revoked"
    )
    later = revoked("ami-1", "2026-03-01T12:00:01")
    decision = decide(ROOT, FP, EAST, {"us-east-1": [later]}, parent_amis=None, now=NOW)
    assert decision.state == "found" and decision.revokes_at == "2026-03-01T12:00:01Z"


def test_a_partial_image_is_pointed_at_a_copy_never_at_a_rebuild():
    from pathlib import Path

    from bridge.pipeline.result import not_found
    from bridge.settings import Settings

    seen = {"eu-west-1": [image("ami-9", "eu-west-1")]}
    partial = decide(ROOT, FP, BOTH, seen, parent_amis=None)
    settings = Settings(repo_root=Path("/repo"), region="us-east-1", state_dir=Path("/state"))
    text = not_found(settings, ROOT, partial, max_age_days=None, built_before=True)
    assert "copies it" in text and "no rebuild" in text
    assert "-replace=" not in text


def test_images_of_one_second_are_ordered_by_when_their_build_started():
    """EC2's CreationDate is in whole seconds: within one, the built-at tag orders images and
    builds (one without it, a seed pipeline's, is the older), whatever their IDs say."""
    second, later = "2026-12-05T10:00:00.000Z", "2026-12-05T10:00:01.000Z"

    def built(ami: str, created: str, build_id: str, at: str | None) -> Image:
        tags = {TAG_BUILD_ID: build_id, **({TAG_BUILT_AT: at} if at else {})}
        return Image(ami, "us-east-1", "available", created, "1", MappingProxyType(tags), ())

    seeded = built("ami-f3", second, "f" * 40, None)
    first = built("ami-f2", second, "e" * 40, "2026-12-05T10:00:00.100000Z")
    forced = built("ami-f1", second, "0" * 40, "2026-12-05T10:00:00.900000Z")
    copied = built("ami-00", later, "1" * 40, "2026-12-05T09:59:59.000000Z")
    newest_first = sorted([first, seeded, copied, forced], key=lambda i: i.recency, reverse=True)
    assert newest_first == [copied, forced, first, seeded]
    builds = builds_of([seeded, first, forced], tag_key="SHA")
    assert max(builds, key=lambda b: b.recency).build_id == "0" * 40
