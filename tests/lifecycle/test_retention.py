"""The retention decision (retention.py), case by case: no AWS, no clock."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone
from types import MappingProxyType

import pytest

from bridge import model
from bridge.errors import QueryError
from bridge.lifecycle import retention
from bridge.model import Image

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc)
OLD = "2026-10-01T00:00:00.000Z"


def image(
    ami,
    definition="base",
    build=None,
    *,
    region="us-east-1",
    created=OLD,
    parent=None,
    state="available",
    fp="f" * 40,
):
    tags = {model.TAG_DEFINITION: definition, "SHA": fp, model.TAG_BUILD_ID: build or ami}
    if parent:
        tags[model.TAG_PARENT_AMI] = parent
    return Image(
        ami, region, state, created, "123456789012", MappingProxyType(tags), (f"snap-{ami}",)
    )


def decide(images, *, current=(), uses=None, **policy):
    builds = retention.builds_of(images, tag_key="SHA")
    verdicts = retention.decide(
        builds,
        current={a: "current" for a in current},
        uses=uses or {},
        policy=retention.Policy(**{"keep": 0, "min_age_hours": 0, **policy}),
        now=NOW,
    )
    return {v.build.build_id: (v.action, v.reasons) for v in verdicts}


def actions(images, **kwargs):
    return {b: a for b, (a, _) in decide(images, **kwargs).items()}


def test_builds_group_regional_copies_and_skip_images_without_the_bridges_tags():
    untagged = Image("ami-x", "us-east-1", "available", OLD, "1", MappingProxyType({}), ())
    no_fp = Image(
        "ami-y",
        "us-east-1",
        "available",
        OLD,
        "1",
        MappingProxyType({model.TAG_DEFINITION: "base"}),
        (),
    )
    builds = retention.builds_of(
        [
            image("ami-1", build="b1"),
            image("ami-2", build="b1", region="eu-west-1"),
            untagged,
            no_fp,
        ],
        tag_key="SHA",
    )
    assert [(b.build_id, b.amis) for b in builds] == [
        ("b1", {"us-east-1": "ami-1", "eu-west-1": "ami-2"})
    ]


def test_unprotected_builds_are_deleted_with_every_regional_copy():
    verdicts = decide([image("ami-1", build="b1"), image("ami-2", build="b1", region="eu-west-1")])
    assert verdicts["b1"][0] == "delete"
    assert "used by nothing" in verdicts["b1"][1][0]


def test_a_current_image_keeps_its_build_in_every_region():
    got = decide(
        [
            image("ami-1", build="b1"),
            image("ami-2", build="b1", region="eu-west-1"),
            image("ami-3"),
        ],
        current=["ami-2"],
    )
    assert got["b1"] == ("keep", ("current",))
    assert got["ami-3"][0] == "delete"


def test_any_use_keeps_the_build():
    uses = {"ami-2": ("launch template web (lt-1) version 1",)}
    got = decide(
        [image("ami-1", build="b1"), image("ami-2", build="b1", region="eu-west-1")], uses=uses
    )
    assert got["b1"] == ("keep", ("launch template web (lt-1) version 1 (ami-2 in eu-west-1)",))


def test_the_parent_of_a_kept_build_is_kept_transitively_in_every_region():
    images = [
        image("ami-r", "root", "r1"),
        image("ami-r2", "root", "r1", region="eu-west-1"),
        image("ami-b", "base", "b1", region="eu-west-1", parent="ami-r2"),
        image("ami-s", "snowflake", "s1", region="eu-west-1", parent="ami-b"),
        image("ami-o", "base", "b2", parent="ami-r"),  # a sibling nothing keeps
    ]
    got = decide(images, uses={"ami-s": ("instance i-1 (stopped)",)})
    assert got["s1"][0] == got["b1"][0] == got["r1"][0] == "keep"
    assert got["b1"][1] == ("the parent of the kept snowflake build s1",)
    assert got["r1"][1] == ("the parent of the kept base build b1",)
    assert got["b2"][0] == "delete"


def test_the_parent_of_a_deleted_build_is_not_kept_for_it():
    images = [image("ami-r", "root", "r1"), image("ami-b", "base", "b1", parent="ami-r")]
    assert actions(images) == {"r1": "delete", "b1": "delete"}


def test_young_builds_are_kept():
    young = (NOW - timedelta(hours=3)).isoformat().replace("+00:00", "Z")
    images = [image("ami-1", build="b1", created=young), image("ami-2")]
    got = decide(images, min_age_hours=24)
    assert got["b1"] == ("keep", ("younger than 24h (--min-age-hours)",))
    assert got["ami-2"][0] == "delete"


def test_a_copy_is_as_old_as_its_build():
    young = (NOW - timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    images = [
        image("ami-1", build="b1"),
        image("ami-2", build="b1", region="eu-west-1", created=young),
    ]
    assert actions(images, min_age_hours=24) == {"b1": "delete"}


def test_the_newest_n_builds_of_each_definition_are_kept():
    images = [
        image(f"ami-{n}", "base", f"b{n}", created=f"2026-10-0{n}T00:00:00.000Z")
        for n in range(1, 5)
    ] + [image("ami-s", "snowflake", "s1")]
    got = actions(images, keep=2)
    assert got == {"b4": "keep", "b3": "keep", "b2": "delete", "b1": "delete", "s1": "keep"}


def test_older_than_deletes_only_what_is_older():
    images = [
        image("ami-1", build="b1", created="2026-11-20T00:00:00.000Z"),
        image("ami-2", build="b2", created="2026-10-01T00:00:00.000Z"),
    ]
    got = decide(images, older_than_days=30)
    assert got["b1"] == ("keep", ("younger than 30 days (--older-than)",))
    assert got["b2"][0] == "delete"


def test_only_the_selected_definitions_are_deleted():
    images = [image("ami-1", "base", "b1"), image("ami-2", "snowflake", "s1")]
    assert actions(images, definitions=frozenset({"snowflake"})) == {"b1": "keep", "s1": "delete"}


def test_an_image_still_being_made_is_kept():
    images = [
        image("ami-1", build="b1"),
        image("ami-2", build="b1", region="eu-west-1", state="pending"),
    ]
    assert decide(images)["b1"] == ("keep", ("still being made",))


def test_an_unreadable_creation_date_counts_as_new():
    assert actions([image("ami-1", build="b1", created="?")], min_age_hours=1) == {"b1": "keep"}


@pytest.mark.parametrize(
    ("kwargs", "flag"),
    [
        ({"keep": "-1"}, "--keep"),
        ({"keep": "two"}, "--keep"),
        ({"older_than": "-3"}, "--older-than"),
        ({"older_than": "nan"}, "--older-than"),
        ({"min_age_hours": "x"}, "--min-age-hours"),
        ({"keep_channel_versions": "-2"}, "--keep-channel-versions"),
    ],
)
def test_bad_options_are_refused_naming_the_option(kwargs, flag):
    with pytest.raises(QueryError, match=flag):
        retention.policy(**kwargs)


def test_the_defaults():
    assert retention.policy() == retention.Policy(
        keep=2, older_than_days=None, min_age_hours=24.0, keep_channel_versions=5
    )


def test_only_a_build_kept_for_rollback_alone_is_archived_once_old_enough():
    """archive_after_days: of the newest --keep builds, one kept for nothing else, older than
    the setting, is archived; the current, a used one, a parent of a kept build, a younger one
    and one archived already are not."""
    young = "2026-11-27T00:00:00.000Z"
    images = [
        image("ami-cur", "base", "cur", created="2026-10-05T00:00:00.000Z"),
        image("ami-roll", "base", "roll", created="2026-10-04T00:00:00.000Z"),
        image("ami-used", "base", "used", created="2026-10-03T00:00:00.000Z"),
        image("ami-kid", "app", "kid", created=young, parent="ami-par"),
        image("ami-par", "base", "par", created="2026-10-02T00:00:00.000Z"),
        image("ami-new", "app", "new", created="2026-11-28T00:00:00.000Z"),
    ]
    kept = decide(
        images,
        current=["ami-cur", "ami-new"],
        uses={"ami-used": ("an instance",)},
        keep=4,
        archive_after_days=30,
    )
    assert {b: a for b, (a, _) in kept.items()} == {
        "cur": "keep",
        "roll": "archive",
        "used": "keep",
        "kid": "keep",  # kept for rollback alone, but younger than 30 days
        "par": "keep",  # the parent of a kept build
        "new": "keep",
    }
    assert "kept only for rollback" in kept["roll"][1][-1]
    assert actions(images, current=["ami-cur"], keep=4)["roll"] == "keep"  # setting unset
    mark = {model.TAG_ARCHIVED: "archived 2026-11-01T00:00:00Z"}
    tagged = [
        replace(i, tags=MappingProxyType({**i.tags, **mark})) if i.ami_id == "ami-roll" else i
        for i in images
    ]
    again = decide(tagged, current=["ami-cur"], keep=4, archive_after_days=30)["roll"]
    assert again[0] == "keep" and "snapshots archived 2026-11-01T00:00:00Z" in again[1]
