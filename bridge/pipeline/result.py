"""What a resolve answers for one definition (ResolvedAmi), made from the planner's decision,
and the message for an image that is not there. No I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from bridge import model
from bridge.aws import manifests
from bridge.catalog import Definition
from bridge.pipeline import plan
from bridge.settings import Settings

# What a resolve reports: a planner state, or `built` when the image was built during it.
ResultState = Literal[
    "found",
    "built",
    "missing",
    "outdated",
    "expired",
    "revoked",
    "archived",
    "pending",
    "partial",
]


@dataclass(frozen=True)
class ResolvedAmi:
    """The outcome for one definition."""

    definition: str
    fingerprint: str
    region: str
    ami_id: str
    amis: Mapping[str, str]
    parent_definition: str | None
    parent_ami_id: str
    state: ResultState
    manifest_uri: str
    # The commit the image was built from (its tag), and the commit fingerprinted now.
    image_commit: str
    commit: str
    creation_date: str
    # The image's build ID, or the one a build now would give it (plan.build_id).
    build_id: str
    # Region -> found / pending / missing, for every region the image must exist in.
    region_states: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    # When the image expires (ISO 8601 UTC; "" when it never does, or there is none).
    expires_at: str = ""
    # Revoked: why (the revocation's reason); a usable image's scheduled revocation (ISO 8601).
    revoke_reason: str = ""
    revokes_at: str = ""
    # The origin AMI of the image's build (model.TAG_ORIGIN; "" when it has none).
    origin: str = ""
    # The tests the image passed (model.TAG_TESTS; none when none ran) and where
    # its signed provenance is (model.TAG_PROVENANCE; "" when unsigned): as its tags record them.
    tests: tuple[str, ...] = ()
    provenance: str = ""

    @property
    def found(self) -> bool:
        """An image is there to use (in `region`; a partial one may lack others)."""
        return self.state in ("found", "built") or (
            self.state in ("partial", "pending") and bool(self.ami_id)
        )

    @property
    def built(self) -> bool:
        """The image was built during this resolve (here, or by a build it waited for)."""
        return self.state == "built"

    @property
    def revoked(self) -> bool:
        """No usable image: every one with this fingerprint is revoked."""
        return self.state == "revoked"


def outcome(
    settings: Settings,
    decision: plan.Decision,
    d: Definition,
    parent: ResolvedAmi | None,
    commit: str,
    *,
    built: bool = False,
    manifest_uri: str | None = None,
) -> ResolvedAmi:
    """The answer for `d` from the planner's `decision` (`built`: made by this resolve)."""
    # The image in the region asked, never another region's (a parent asked for where only its
    # child is built, a root built in its home region).
    primary = decision.here
    region = decision.region
    state: ResultState = "built" if built else decision.state
    bucket, prefix = settings.manifest_bucket, settings.manifest_prefix
    if manifest_uri is None:
        manifest_uri = (
            manifests.manifest_uri(bucket, prefix, d.name, decision.fingerprint)
            if bucket and state in ("found", "built", "partial")
            else ""
        )
    return ResolvedAmi(
        definition=d.name,
        fingerprint=decision.fingerprint,
        region=region,
        ami_id=primary.ami_id if primary else "",
        amis=MappingProxyType(dict(sorted(decision.amis.items()))),
        parent_definition=d.parent,
        parent_ami_id=parent.amis.get(decision.regions[0], parent.ami_id) if parent else "",
        state=state,
        manifest_uri=manifest_uri,
        # "" when unknown (a seed pipeline's image): never the commit looked at now, which
        # would change with every commit while the image stays the same.
        image_commit=(primary.tag(model.TAG_COMMIT) or "") if primary else "",
        commit=commit,
        creation_date=primary.creation_date if primary else "",
        build_id=plan.build_id(decision, parent.build_id if parent else None),
        region_states=MappingProxyType(
            {r: "found" if built else s for r, s in decision.region_states.items()}
        ),
        expires_at=decision.expires_at,
        revoke_reason=decision.revoke_reason,
        revokes_at=decision.revokes_at,
        origin=next(
            (o for i in decision.images.values() if (o := i.tag(model.TAG_ORIGIN) or "")), ""
        )
        if decision.amis
        else "",
        tests=tuple(t for t in (primary.tag(model.TAG_TESTS) or "").split(",") if t)
        if primary
        else (),
        provenance=(primary.tag(model.TAG_PROVENANCE) or "") if primary else "",
    )


def not_found(
    settings: Settings,
    d: Definition,
    decision: plan.Decision,
    *,
    max_age_days: float | None,
    built_before: bool = False,
) -> str:
    """Why `d` has no usable image, and how to get one."""
    owners = ",".join(settings.owners)
    if decision.state == "partial":
        have = ", ".join(f"{r} ({a})" for r, a in sorted(decision.amis.items()))
        why = (
            f"the image is partial: it has copies in {have} but none in "
            f"{', '.join(decision.missing_regions)}; a build run copies it there (no rebuild)"
        )
    elif decision.state == "revoked":
        why = (
            f"its images are revoked ({decision.revoke_reason or 'no reason recorded'}); "
            f"`ami-bridge restore {d.name}` withdraws a revocation made in error"
        )
    elif decision.state == "archived":
        why = (
            "its build is kept for rollback with its snapshots in EBS's archive tier, so it "
            f"cannot be launched: `ami-bridge unarchive {d.name}` restores them (AWS takes "
            "hours; run it again to finish) and then it resolves again"
        )
    elif decision.state == "expired":
        why = (
            f"its images are older than the definition's max_age_days "
            f"({max_age_days or 0:g}), so they are expired"
        )
    elif decision.state == "outdated":
        why = (
            "images with that fingerprint exist but were built on another parent AMI, so "
            "they are outdated"
        )
    else:
        why = "no image carries that fingerprint" + (
            " (it was built, its manifest says, and has been deregistered since)"
            if built_before
            else " (it has not been built yet: a new commit, or changed inputs)"
        )
        if any(o != "self" for o in settings.owners) and not settings.manifest_bucket:
            why += (
                " (another account's images are found through its manifests: EC2 never "
                "shows their tags to other accounts; set the builder's manifest bucket)"
            )
    if decision.state == "archived":
        return (
            f"No usable image for definition {d.name!r} (fingerprint {decision.fingerprint}) in "
            f"{', '.join(decision.regions)}: {why}. To build a new image instead, run "
            f"`ami-bridge build {d.name} --force --repo {settings.repo_root}`."
        )
    if decision.state == "partial":
        terraform = (
            'in the ami_chain and ami_catalog modules with build_phase = "apply", a plain '
            "`terraform apply` copies it; -replace would rebuild what only needs copies"
        )
    elif built_before:
        terraform = (
            'in the ami_chain and ami_catalog modules with build_phase = "apply", an image '
            "deregistered since its build is built again by "
            f"`terraform apply -replace='<module>.null_resource.build[\"{d.name}\"]'`"
        )
    else:
        terraform = (
            'in the ami_chain and ami_catalog modules with build_phase = "apply", a plain '
            "`terraform apply` builds it (a -refresh-only apply never builds)"
        )
    return (
        f"No usable image for definition {d.name!r} (fingerprint {decision.fingerprint}) in "
        f"{', '.join(decision.regions)}, owners {owners}, tag {settings.tag_key}: {why}. "
        f"Build it with `ami-bridge build {d.name} --repo {settings.repo_root}` or "
        f"resolve with on_missing=build ({terraform})."
    )
