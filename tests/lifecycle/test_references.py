"""What uses an image (references.py), seen through `ami-bridge gc` on the sandbox."""

from __future__ import annotations

import json

from testing.bridge import run_bridge
from testing.sandbox import aws_client, fake_build


def ec2(region):
    return aws_client("ec2", region)


def test_a_launch_template_resolving_its_image_through_ssm_keeps_that_versions_image(
    sandbox_env, repo
):
    first, second = fake_build("base", "old-first"), fake_build("base", "old-second")
    ssm = aws_client("ssm")
    for build in (first, second):
        ssm.put_parameter(Name="/app/base", Value=build["us-east-1"], Type="String", Overwrite=True)
    ec2("us-east-1").create_launch_template(
        LaunchTemplateName="pinned", LaunchTemplateData={"ImageId": "resolve:ssm:/app/base:1"}
    )
    proc = run_bridge(
        ["gc", "--repo", str(repo.path), "--keep", "0", "--min-age-hours", "0", "--json"],
        sandbox_env,
    )
    assert proc.code == 0, proc.stderr
    verdicts = {b["build_id"]: b for b in json.loads(proc.stdout)["builds"]}
    assert verdicts["old-first"]["action"] == "keep"
    assert "launch template pinned" in verdicts["old-first"]["reasons"][0]
    assert "through /app/base:1" in verdicts["old-first"]["reasons"][0]
    assert verdicts["old-second"]["action"] == "delete"
