"""Every answer is for the region asked (plan.py, result.py): the image there or a clear miss,
never another region's state, and a build's copies link its regions through its build ID.
"""

from __future__ import annotations

import io
import json
import os
import random
import sys
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, note, seed, settings
from hypothesis import strategies as st

from bridge.catalog import load_catalog
from bridge.cli import main
from bridge.pipeline.publish import image_tags
from bridge.record import BuildRecord, Parent
from testing.bridge import external, run_bridge
from testing.fingerprint import fingerprints
from testing.git import make_repo
from testing.sandbox import BUCKET, aws_client, make_image, own_images, tags_of
from testing.sandbox import deregister as sandbox_deregister

EAST, WEST = "us-east-1", "eu-west-1"


def two_regions(repo) -> None:
    data = repo.catalog()
    data["regions"] = [EAST, WEST]
    repo.set_catalog(data)
    repo.commit("two regions")


def build_all(repo, env) -> dict[str, dict[str, str]]:
    proc = run_bridge(["build", "--all", "--repo", str(repo.path), "--json"], env)
    assert proc.code == 0, proc.stderr
    return {name: json.loads(r["amis_json"]) for name, r in json.loads(proc.stdout).items()}


def deregister(region: str, ami: str) -> None:
    sandbox_deregister(region, ami)


def test_a_tracked_root_missing_in_the_region_asked_is_not_an_empty_ami(
    sandbox_env, tmp_path, packer
):
    """The root is built in its home region (where its upstream image was chosen): a copy
    missing in the region asked is a miss there, whatever the home region has."""
    repo = make_repo(tmp_path / "tracked", track_source=True)
    two_regions(repo)
    # Built in its home region (us-east-1) when asked for in eu-west-1: the answer is the copy.
    asked = external(sandbox_env, {"definition": "base", "repo": str(repo.path), "region": WEST})
    assert asked.code == 0, asked.stderr
    built = json.loads(asked.stdout)
    assert built["built"] == "true" and built["region"] == WEST
    assert built["ami_id"] == json.loads(built["amis_json"])[WEST]
    amis = build_all(repo, sandbox_env)
    deregister(WEST, amis["base"][WEST])
    query = {"definition": "base", "repo": str(repo.path), "region": WEST}
    failed = external(sandbox_env, {**query, "on_missing": "fail"})
    assert failed.code == 3, failed.stdout
    assert "partial" in failed.stderr and WEST in failed.stderr
    assert failed.stdout == ""
    reported = external(sandbox_env, {**query, "on_missing": "report"})
    assert reported.code == 0, reported.stderr
    result = json.loads(reported.stdout)
    assert (result["found"], result["ami_id"], result["region"]) == ("false", "", WEST)
    # The home region's answer is unchanged.
    home = external(sandbox_env, {**query, "region": EAST, "on_missing": "fail"})
    assert home.code == 0 and json.loads(home.stdout)["ami_id"] == amis["base"][EAST]


def test_a_child_is_current_while_any_copy_of_its_parents_build_exists(sandbox_env, repo, packer):
    two_regions(repo)
    amis = build_all(repo, sandbox_env)
    deregister(EAST, amis["base"][EAST])  # the parent's home-region image; its copy remains
    status = run_bridge(["status", "--json", "--repo", str(repo.path)], sandbox_env)
    states = json.loads(status.stdout)
    assert states["base"]["state"] == "partial"
    assert states["snowflake"]["state"] == "found"
    assert json.loads(states["snowflake"]["regions_json"]) == {EAST: "found", WEST: "found"}
    again = build_all(repo, sandbox_env)
    # The parent's copy is copied back; the child is the same images, built on nothing else.
    assert again["snowflake"] == amis["snowflake"]
    assert again["base"][WEST] == amis["base"][WEST] and again["base"][EAST] != amis["base"][EAST]
    made = [tags_of(i) for r in (EAST, WEST) for i in own_images(r)]
    assert sum(t.get("ami-chain:definition") == "snowflake" for t in made) == 2


# ---- the property: over random region sets, deregistrations and on_missing values ------------
# `external` never exits 0 with an empty ami_id unless on_missing is report, its AMI is in the
# region asked, and no build happens while any copy of the needed build exists (the images are
# made as the bridge tags them, without Packer; Packer is a stand-in that records and fails).

POOL = ("us-east-1", "eu-west-1", "us-west-2")
CASES = 30
SEED = int(os.environ.get("AMI_BRIDGE_REGIONS_SEED") or random.SystemRandom().randrange(2**32))


@dataclass(frozen=True)
class Case:
    regions: tuple[str, ...]  # the catalog's; the first is where both builds were made
    gone: frozenset[tuple[str, str]]  # (definition, region) deregistered
    definition: str
    region: str  # asked
    on_missing: str


@st.composite
def cases(draw: st.DrawFn) -> Case:
    regions = tuple(draw(st.permutations(POOL))[: draw(st.integers(1, len(POOL)))])
    images = [(d, r) for d in ("base", "snowflake") for r in regions]
    gone = frozenset(draw(st.lists(st.sampled_from(images), unique=True)))
    return Case(
        regions,
        gone,
        draw(st.sampled_from(["base", "snowflake"])),
        draw(st.sampled_from(regions)),
        draw(st.sampled_from(["fail", "report", "build"])),
    )


def make_build(
    d, fingerprint: str, regions, *, build_id: str, parent: tuple[str, str, str] | None = None
) -> dict[str, str]:
    """A build of `d` tagged as the bridge tags it, in regions[0], copied to the others with
    its tags (as distribute.py copies); `parent`: (AMI there, fingerprint, build ID), which is
    also its build's origin (it was built there)."""
    home = aws_client("ec2", regions[0])
    ami = make_image(home, f"{d.name}-{build_id}")
    record = BuildRecord(
        catalog="",
        definition=d.name,
        fingerprint=fingerprint,
        build_id=build_id,
        commit="0" * 40,
        region=regions[0],
        amis={regions[0]: ami},
        parent=None
        if parent is None
        else Parent("base", parent[1], parent[0], build_id=parent[2], origin=parent[0]),
        packer_version="1.6.6",
    )
    tags = image_tags(d, record, tag_key="SHA")
    home.create_tags(Resources=[ami], Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
    amis = {regions[0]: ami}
    for region in regions[1:]:
        amis[region] = aws_client("ec2", region).copy_image(
            SourceImageId=ami, SourceRegion=regions[0], Name=f"{d.name}-{build_id}",
            CopyImageTags=True,
        )["ImageId"]  # fmt: skip
    return amis


@pytest.fixture
def world(repo, sandbox_server, sandbox_env, monkeypatch, tmp_path_factory):
    """The repository, its fingerprints, a Packer stand-in that records and fails."""
    bin_dir = tmp_path_factory.mktemp("packer-standin")
    record = bin_dir / "PACKER-RAN"
    standin = bin_dir / "packer"
    standin.write_text(f"#!/bin/sh\necho \"$@\" >> '{record}'\nexit 1\n")
    standin.chmod(0o755)
    monkeypatch.setenv("AMI_BRIDGE_PACKER", str(standin))
    fps, _ = fingerprints(repo)
    return repo, fps, record, sandbox_server


def check_case(case: Case, world, monkeypatch, capsys, tmp_path_factory) -> None:
    repo, fps, record, server = world
    server.reset()
    aws_client("s3").create_bucket(Bucket=BUCKET)
    monkeypatch.setenv("AMI_BRIDGE_STATE_DIR", str(tmp_path_factory.mktemp("state")))
    record.unlink(missing_ok=True)
    data = repo.catalog()
    if data.get("regions") != list(case.regions):
        data["regions"] = list(case.regions)
        repo.set_catalog(data)
        repo.commit(f"regions {case.regions}")
    catalog = load_catalog(repo.path)
    base = make_build(catalog.get("base"), fps["base"], case.regions, build_id="b" * 40)
    child = make_build(
        catalog.get("snowflake"), fps["snowflake"], case.regions, build_id="c" * 40,
        parent=(base[case.regions[0]], fps["base"], "b" * 40),
    )  # fmt: skip
    made = {"base": base, "snowflake": child}
    for name, region in case.gone:
        aws_client("ec2", region).deregister_image(ImageId=made[name][region])
    survivors = {n: {r for r in case.regions if (n, r) not in case.gone} for n in made}
    query = {
        "definition": case.definition,
        "region": case.region,
        "on_missing": case.on_missing,
        "repo": str(repo.path),
    }
    sys.stdin = io.TextIOWrapper(io.BytesIO(json.dumps(query).encode()))
    try:
        code = main(["external"])
    finally:
        sys.stdin = sys.__stdin__
    out, err = capsys.readouterr()
    note(f"{case}: exit {code}, {out or err}")
    built = record.read_text() if record.exists() else ""
    for name, template in (("base", "base/base.json"), ("snowflake", "snowflake/snowflake.json")):
        if template in built:
            assert not survivors[name], f"{name} was built while copies exist in {survivors[name]}"
    if code != 0:
        # The error is the last thing said (a warning may come before it: a manifest written
        # back from an image's tags on the way), and never a traceback.
        last = err.rstrip().splitlines()[-1] if err.strip() else ""
        assert code in (1, 3) and out == "" and last.startswith("ami-bridge: error: "), err
        assert "Traceback" not in err, err
        assert code == 1 or case.on_missing != "report" or survivors[case.definition], err
        return
    result = json.loads(out)
    if case.on_missing != "report":
        assert result["ami_id"], "exit 0 with an empty ami_id"
    if result["ami_id"]:
        assert result["region"] == case.region
        (image,) = aws_client("ec2", case.region).describe_images(ImageIds=[result["ami_id"]])[
            "Images"
        ]
        assert tags_of(image)["SHA"] == fps[case.definition]
        assert image["State"] == "available"


_SETTINGS = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    "database": None,
}


@pytest.mark.sweep
@seed(SEED)
@settings(max_examples=CASES, **_SETTINGS)  # type: ignore[arg-type]
@given(case=cases())
def test_every_answer_is_for_the_region_asked(case, world, monkeypatch, capsys, tmp_path_factory):
    note(f"regions seed {SEED} (replay: AMI_BRIDGE_REGIONS_SEED={SEED})")
    check_case(case, world, monkeypatch, capsys, tmp_path_factory)
