"""`ami-bridge manifest`: the build manifest of a definition's image at the commit, from S3."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping

from bridge.aws import manifests
from bridge.cli.workspace import context, options
from bridge.errors import EXIT_OK, ManifestError, QueryError
from bridge.pipeline.survey import Surveyor


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    ctx = context(options(args, env), env)
    name = args.definition
    bucket, prefix = ctx.settings.manifest_bucket, ctx.settings.manifest_prefix
    if not bucket:
        raise QueryError(
            "No manifest bucket is configured. Pass --manifest-bucket or set "
            "`manifest.bucket` in the catalog."
        )
    fp = Surveyor(ctx).fingerprints([name])[name]
    found = manifests.fetch(ctx.clients.s3(ctx.settings.region), bucket, prefix, name, fp)
    if found is None:
        raise ManifestError(
            f"No manifest at {manifests.manifest_uri(bucket, prefix, name, fp)}: {name!r} "
            "has not been built at this commit (or was built without a manifest bucket). "
            f"Build it with `ami-bridge build {name}`."
        )
    json.dump(found.to_dict(), sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
    return EXIT_OK
