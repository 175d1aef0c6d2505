"""The resolve loop (resolve.py), in process against the sandbox: for each planner state, the step
it takes (use, build, fail, report, copy, wait) and what that leaves in EC2.

The Resolver is made as the CLI makes it (settings.parse_options, workspace.context,
workspace.resolver); Packer is real. Where a state needs images a build would have left, they
are made in the sandbox and tagged and published by the bridge's own publish step.
"""

from __future__ import annotations

import http.client
import threading
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from bridge import model
from bridge.cli import workspace
from bridge.errors import NotFoundError
from bridge.lifecycle.revoke import Revoker
from bridge.pipeline import publish
from bridge.pipeline.resolve import Resolver
from bridge.record import BuildRecord, Parent
from bridge.settings import RunPolicy, cache_dir, cli_flag, parse_options
from testing.git import GitRepo
from testing.sandbox import (
    aws_client,
    builds_per_definition,
    deregister,
    make_image,
    own_images,
    tags_of,
)

EAST, WEST = "us-east-1", "eu-west-1"
# A maximum age every image has outlived by the time a resolve looks at it (86 microseconds;
# EC2 creation dates are whole seconds, so the image is older than that from the first look).
OUTLIVED_DAYS = 1e-9


def resolver(env: Mapping[str, str], repo: GitRepo) -> Resolver:
    """A Resolver of `repo`'s catalog, made the way `ami-bridge resolve --repo` makes it."""
    options = parse_options({"repo": str(repo.path)}, spell=cli_flag, cache_dir=cache_dir(env))
    return workspace.resolver(workspace.context(options, env), env, echo=None)


def place(env: Mapping[str, str], repo: GitRepo, name: str, region: str = EAST) -> str:
    """An image of `name` as a build at HEAD leaves it in `region`, without Packer: an image
    made in the sandbox, tagged and published by the bridge's publish step with the build ID
    and parent the planner gives a build now."""
    found = resolver(env, repo)
    ctx = found.ctx
    planned = found.status([name])
    result = planned[name]
    parent = planned[result.parent_definition] if result.parent_definition else None
    ami = make_image(aws_client("ec2", region), f"{name}-{result.fingerprint[:12]}-0")
    publish.publish(
        ctx.clients,
        ctx.catalog.get(name),
        BuildRecord(
            catalog=ctx.settings.catalog_id,
            definition=name,
            fingerprint=result.fingerprint,
            build_id=result.build_id,
            commit=result.commit,
            region=region,
            amis={region: ami},
            parent=None
            if parent is None
            else Parent(
                parent.definition, parent.fingerprint, parent.ami_id, build_id=parent.build_id
            ),
            packer_version="1.6.6",
        ),
        tag_key=ctx.settings.tag_key,
        owners=ctx.settings.owners,
        bucket=ctx.settings.manifest_bucket,
        prefix=ctx.settings.manifest_prefix,
    )
    return ami


def catalog_change(repo: GitRepo, name: str, **settings: Any) -> None:
    data = repo.catalog()
    data["definitions"][name].update(settings)
    repo.set_catalog(data)
    repo.commit(f"{name}: {settings}")


def image_ids(region: str = EAST) -> set[str]:
    return {i["ImageId"] for i in own_images(region)}


def tags(ami: str, region: str = EAST) -> dict[str, str]:
    (image,) = aws_client("ec2", region).describe_images(ImageIds=[ami])["Images"]
    return tags_of(image)


# -- found: use -------------------------------------------------------------------------------


def test_found_images_are_used_and_nothing_is_built(sandbox_env, repo):
    base = place(sandbox_env, repo, "base")
    snowflake = place(sandbox_env, repo, "snowflake")

    results = resolver(sandbox_env, repo).resolve(["snowflake"], RunPolicy("build"))

    assert results["base"].state == "found" and not results["base"].built
    assert results["base"].ami_id == base and dict(results["base"].amis) == {EAST: base}
    result = results["snowflake"]
    assert result.state == "found" and not result.built
    assert result.ami_id == snowflake and dict(result.amis) == {EAST: snowflake}
    assert result.parent_ami_id == base
    assert result.fingerprint == tags(snowflake)["SHA"]
    assert image_ids() == {base, snowflake}


# -- missing: build, fail, report -------------------------------------------------------------


def test_a_missing_image_is_built_with_the_planned_build_id(sandbox_env, repo, packer):
    planned = resolver(sandbox_env, repo).status(["base"])["base"]
    assert planned.state == "missing" and image_ids() == set()

    result = resolver(sandbox_env, repo).resolve(["base"], RunPolicy("build"))["base"]

    assert result.state == "built" and result.built
    assert image_ids() == {result.ami_id} and dict(result.amis) == {EAST: result.ami_id}
    made = tags(result.ami_id)
    assert made["SHA"] == result.fingerprint == planned.fingerprint
    assert made[model.TAG_DEFINITION] == "base"
    assert made[model.TAG_BUILD_ID] == result.build_id == planned.build_id
    assert dict(result.region_states) == {EAST: "found"}


def test_a_missing_image_with_on_missing_fail_is_not_found_and_nothing_is_built(sandbox_env, repo):
    fingerprint = resolver(sandbox_env, repo).surveyor.fingerprints(["base"])["base"]

    with pytest.raises(NotFoundError) as caught:
        resolver(sandbox_env, repo).resolve(["base"], RunPolicy("fail"))

    assert fingerprint in str(caught.value)
    assert "no image carries that fingerprint" in str(caught.value)
    assert image_ids() == set()


def test_a_missing_image_with_on_missing_report_is_reported_missing(sandbox_env, repo):
    fingerprints = resolver(sandbox_env, repo).surveyor.fingerprints(["snowflake"])

    results = resolver(sandbox_env, repo).resolve(["snowflake"], RunPolicy("report"))

    for name in ("base", "snowflake"):
        result = results[name]
        assert result.state == "missing" and not result.found and not result.built
        assert result.ami_id == "" and dict(result.amis) == {}
        assert result.fingerprint == fingerprints[name]
        assert len(result.build_id) == 40  # the ID a build would get
        assert dict(result.region_states) == {EAST: "missing"}
    assert image_ids() == set()


# -- outdated: the parent was rebuilt, so the child is ---------------------------------------


def test_a_child_on_a_rebuilt_parent_is_outdated_and_rebuilt_on_the_new_parent(
    sandbox_env, repo, packer
):
    first_base = place(sandbox_env, repo, "base")
    first_snowflake = place(sandbox_env, repo, "snowflake")
    # The base is rebuilt under its fingerprint and its old image deregistered.
    deregister(EAST, first_base)
    base = place(sandbox_env, repo, "base")

    reported = resolver(sandbox_env, repo).resolve(["snowflake"], RunPolicy("report"))
    assert reported["base"].state == "found" and reported["base"].ami_id == base
    assert reported["snowflake"].state == "outdated" and reported["snowflake"].ami_id == ""
    with pytest.raises(NotFoundError, match="outdated"):
        resolver(sandbox_env, repo).resolve(["snowflake"], RunPolicy("fail"))
    assert image_ids() == {base, first_snowflake}

    results = resolver(sandbox_env, repo).resolve(["snowflake"], RunPolicy("build"))

    assert results["base"].state == "found" and results["base"].ami_id == base
    result = results["snowflake"]
    assert result.state == "built" and result.ami_id not in (first_snowflake, "")
    assert result.parent_ami_id == base
    assert result.fingerprint == reported["snowflake"].fingerprint
    assert tags(result.ami_id)[model.TAG_PARENT_AMI] == base
    assert image_ids() == {base, first_snowflake, result.ami_id}


# -- expired: older than max_age_days, rebuilt under the same fingerprint ---------------------


def test_an_expired_image_is_rebuilt_under_its_fingerprint(sandbox_env, repo, packer):
    catalog_change(repo, "base", max_age_days=OUTLIVED_DAYS)
    old = place(sandbox_env, repo, "base")

    reported = resolver(sandbox_env, repo).resolve(["base"], RunPolicy("report"))["base"]
    assert reported.state == "expired" and reported.ami_id == ""
    with pytest.raises(NotFoundError, match="max_age_days"):
        resolver(sandbox_env, repo).resolve(["base"], RunPolicy("fail"))
    assert image_ids() == {old}

    result = resolver(sandbox_env, repo).resolve(["base"], RunPolicy("build"))["base"]

    assert result.state == "built" and result.ami_id not in (old, "")
    assert result.fingerprint == tags(old)["SHA"]
    # A build that supersedes the expired one: a new build ID, which the planner predicted.
    assert result.build_id == reported.build_id != tags(old)[model.TAG_BUILD_ID]
    assert image_ids() == {old, result.ami_id}


# -- revoked: built again (on_revoked=build) or not found (on_revoked=fail) -------------------


def revoke_base(env: Mapping[str, str], repo: GitRepo) -> str:
    ami = place(env, repo, "base")
    Revoker(resolver(env, repo).ctx).revoke("base", reason="CVE-2026-1 in openssl", at=None)
    assert model.TAG_REVOKED_AT in tags(ami)
    return ami


def test_a_revoked_image_is_built_again_with_on_revoked_build(sandbox_env, repo, packer):
    revoked = revoke_base(sandbox_env, repo)

    results = resolver(sandbox_env, repo).resolve(["base"], RunPolicy("build", "build"))
    result = results["base"]

    assert result.state == "built" and result.ami_id not in (revoked, "")
    assert result.fingerprint == tags(revoked)["SHA"]
    assert result.build_id != tags(revoked)[model.TAG_BUILD_ID]
    assert model.TAG_REVOKED_AT not in tags(result.ami_id)
    assert model.TAG_REVOKED_AT in tags(revoked)  # the revoked image stays revoked
    assert image_ids() == {revoked, result.ami_id}


def test_a_revoked_image_with_on_revoked_fail_is_not_found_even_with_on_missing_build(
    sandbox_env, repo
):
    revoked = revoke_base(sandbox_env, repo)

    reported = resolver(sandbox_env, repo).resolve(["base"], RunPolicy("report"))["base"]
    assert reported.state == "revoked" and reported.revoked and reported.ami_id == ""
    assert reported.revoke_reason == "CVE-2026-1 in openssl"
    with pytest.raises(NotFoundError, match="revoked") as caught:
        resolver(sandbox_env, repo).resolve(["base"], RunPolicy("build", "fail"))

    assert "CVE-2026-1 in openssl" in str(caught.value)
    assert image_ids() == {revoked}


# -- partial: in one of two regions, copied to the other, not rebuilt -------------------------


def test_an_image_in_one_of_two_regions_is_copied_not_rebuilt(sandbox_env, repo):
    catalog_change(repo, "base", regions=[EAST, WEST])
    east = place(sandbox_env, repo, "base", EAST)

    reported = resolver(sandbox_env, repo).resolve(["base"], RunPolicy("report"))["base"]
    assert reported.state == "partial" and dict(reported.amis) == {EAST: east}
    assert dict(reported.region_states) == {EAST: "found", WEST: "missing"}
    assert image_ids(WEST) == set()

    result = resolver(sandbox_env, repo).resolve(["base"], RunPolicy("build"))["base"]

    assert result.state == "found" and not result.built
    (west,) = image_ids(WEST)
    assert dict(result.amis) == {EAST: east, WEST: west} and result.ami_id == east
    assert dict(result.region_states) == {EAST: "found", WEST: "found"}
    assert image_ids(EAST) == {east}  # nothing built
    copied = tags(west, WEST)
    assert copied["SHA"] == result.fingerprint
    assert copied[model.TAG_BUILD_ID] == tags(east)[model.TAG_BUILD_ID] == result.build_id
    assert builds_per_definition() == Counter({"base": 1})


# -- pending: waited for, then used -----------------------------------------------------------


class PendingImage:
    """A proxy in front of the sandbox whose DescribeImages answers show one image as pending
    until it is asked for by ID (as EC2's image_available waiter asks): the sandbox's images are
    available at once, where EC2's stay pending while their snapshots are made."""

    def __init__(self, upstream: str, ami: str) -> None:
        self.ami = ami
        self.pending_answers = 0  # answers that showed the image pending
        self.polled = threading.Event()  # someone asked for the image by ID
        target = urlsplit(upstream)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                conn.request(self.command, self.path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
                if response.status == 200:
                    data = proxy.answer(body, data)
                conn.close()
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def answer(self, request: bytes, response: bytes) -> bytes:
        """The response, with the image pending if this is a DescribeImages before any by ID."""
        try:
            form = parse_qs(request.decode(), strict_parsing=True)
        except (UnicodeDecodeError, ValueError):
            return response  # S3's requests carry no form
        if form.get("Action") != ["DescribeImages"]:
            return response
        if any(k.startswith("ImageId.") and self.ami in v for k, v in form.items()):
            self.polled.set()
        if self.polled.is_set():
            return response
        root = ET.fromstring(response)
        namespace = root.tag[1:].split("}")[0]
        shown = False
        for item in root.iter(f"{{{namespace}}}item"):
            if item.findtext(f"{{{namespace}}}imageId") == self.ami:
                for state in item.iter(f"{{{namespace}}}imageState"):
                    state.text = "pending"
                    shown = True
        self.pending_answers += shown
        return ET.tostring(
            root, encoding="utf-8", xml_declaration=True, default_namespace=namespace
        )

    def __enter__(self) -> PendingImage:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def pending_base(
    sandbox_env, repo, monkeypatch
) -> Iterator[tuple[dict[str, str], str, PendingImage]]:
    """A base image still pending (behind a PendingImage proxy), and the environment that sees it
    so (this process's boto3 included)."""
    ami = place(sandbox_env, repo, "base")
    with PendingImage(sandbox_env["AWS_ENDPOINT_URL"], ami) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
        yield {**sandbox_env, "AWS_ENDPOINT_URL": proxy.endpoint}, ami, proxy


def test_a_pending_image_is_waited_for_and_used(pending_base, repo):
    env, ami, proxy = pending_base
    assert resolver(env, repo).status(["base"])["base"].state == "pending"
    looked = proxy.pending_answers

    result = resolver(env, repo).resolve(["base"], RunPolicy("build"))["base"]

    # Seen pending by this resolve, then waited on.
    assert proxy.pending_answers > looked and proxy.polled.is_set()
    assert result.state == "found" and not result.built
    assert result.ami_id == ami and dict(result.amis) == {EAST: ami}
    assert dict(result.region_states) == {EAST: "found"}
    assert image_ids() == {ami}


def test_a_build_run_that_leaves_a_region_without_its_image_fails(sandbox_env, repo, monkeypatch):
    """The post-condition: were the copy step to do nothing, the run fails naming the region,
    never exits 0 with an image missing where the definition needs one."""
    from bridge.errors import BuildError
    from bridge.pipeline import distribute

    data = repo.catalog()
    data["regions"] = [EAST, "eu-west-1"]
    repo.set_catalog(data)
    repo.commit("two regions")
    place(sandbox_env, repo, "base")
    monkeypatch.setattr(distribute, "distribute", lambda ctx, d, images, regions: images)
    with pytest.raises(BuildError, match=r"no image of the build in eu-west-1 \(no image\)"):
        resolver(sandbox_env, repo).resolve(["base"], RunPolicy("build"))
