"""The sandbox: a local AWS (moto in server mode) for demos, tests and benchmarks.

It is a real HTTP endpoint that boto3, Packer and Terraform talk to. These things differ from a
stock moto server:

* Images made by CreateImage or CopyImage get root device type `ebs`, as EBS-backed images do in
  AWS. Stock moto says `standard`, and Packer's amazon-ebs builder then refuses them as a source
  AMI, so a child could never be built on a sandbox-built parent.
* CopyImage honours `CopyImageTags`, `Encrypted` and `KmsKeyId` (stock moto ignores all three;
  without a key, the copy is under the account's AWS-managed `alias/aws/ebs` key, reported by its
  ARN), and DescribeImages reports `Encrypted` and `KmsKeyId` in each EBS block device mapping.
* The keys behind KMS's reserved aliases (`alias/aws/ebs`) are AWS-managed: DescribeKey says
  `KeyManager: AWS` (stock moto says `CUSTOMER`). Verify answers a signature that does not
  match with `KMSInvalidSignatureException`, as KMS does (stock moto: `SignatureValid` false).
* Accounts: the access key `AKIA<account ID>SBOX` acts as that account (any other key, as
  123456789012). An image shared with an account (a UserId launch permission) is visible to it
  as in AWS: listed when `Owners` names its owner or is absent, found by ID, with the viewer's
  own tags only (an owner's tags never reach other accounts). A public image (a launch
  permission for the group `all`) is visible to every account the same way, so an upstream
  publisher (say Canonical's 099720109477) can release a new image. Sharing with organizations
  and OUs is recorded but not resolved into accounts.
* EnableImageDeprecation and DisableImageDeprecation exist (stock moto has neither), and
  DescribeImages reports an image's `DeprecationTime` (`2026-01-01T00:00:00.000Z`) while it has
  one. As in EC2, `DeprecateAt` is rounded to the nearest minute, a time in the past is
  refused (`InvalidParameterValue`), and only the image's owner may set or clear it (another
  account gets `AuthFailure`, "Not authorized for image:<id>"); the owner still sees a
  deprecated image in every listing (EC2 hides deprecated images only from other accounts'
  listings, which the sandbox does not).
* DescribeImageReferences (which moto lacks) answers as EC2 does, for the resource types moto
  has: instances (its `state-name` option; default all states), launch templates (the newest
  `version-depth` versions, default 10), and SSM parameters of DataType `aws:ec2:image` (their
  current value); Image Builder recipes, which moto does not model, are never references.
* DescribeImageAttribute answers `lastLaunchedTime` (stock moto answers nothing): the time the
  last instance was launched from the image by any account, for the image's owner only (another
  account gets `AuthFailure`). EC2 updates it within 24 hours of a launch; the sandbox at once.
* DisableImage and EnableImage follow EC2's rules (stock moto only flips the state): only the
  owner may call them (`AuthFailure` otherwise), disabling removes every launch permission and
  enabling restores none, and DescribeImages leaves disabled images out unless
  `IncludeDisabled` is true.
* Deregistration protection (stock moto has none): EnableImageDeregistrationProtection (with
  `WithCooldown`) and DisableImageDeregistrationProtection for the owner only, DescribeImages'
  `DeregistrationProtection`, and DeregisterImage refusing a protected image (or one in its
  24-hour cooldown) with `OperationNotPermitted`: EC2's documentation names no error code for
  that refusal, so the code is the sandbox's.
* RunInstances refuses an image whose snapshot is in EBS's archive tier (`IncorrectState`, a
  code of the sandbox's: EC2 documents the refusal, not its code). Archiving
  (ModifySnapshotTier) and restoring (RestoreSnapshotTier) complete at once, as in stock moto;
  in AWS each takes hours, reported as `archival-in-progress` / `...-restore-in-progress`.
* EC2's Recycle Bin (moto has none): the `rbin` service's retention rules, and DeregisterImage /
  DeleteSnapshot keeping what a rule covers until RestoreImageFromRecycleBin /
  RestoreSnapshotFromRecycleBin or the end of its retention period (the details, and what differs
  from AWS, are in `recycle_bin.py`).
* An instance of an image tagged `sandbox:boot` = `impaired` (by its owner) fails EC2's
  reachability check: DescribeInstanceStatus reports its `InstanceStatus` `impaired` (detail
  `reachability` `failed`), as EC2 does for an instance whose operating system does not come
  up. Stock moto reports every running instance `ok`, so an image that cannot boot could not be
  told apart. The tag is the sandbox's stand-in for a broken image.
* Writes are served one at a time. moto checks S3's conditional writes (`If-None-Match: *`,
  `If-Match`) and then writes, in separate steps; in a threaded server two racing requests could
  both pass the check, where S3 lets only one win. Build leases rely on that guarantee.
* Its public image catalog is a small file (sandbox_images.json) with Ubuntu base images, which
  keeps start-up fast and the example templates' `source_ami` stable. Their creation dates are
  their release dates (stock moto stamps its catalog with the time an account is first used, so
  an image published before that would look older than the catalog's).
* A launch template's (or RunInstances') mapping for the image's root device that names neither
  a size nor a snapshot gets the image's root snapshot, as in EC2 (stock moto refuses it with
  `MissingParameter`), so a template can set only the root volume's type or encryption.
* Auto Scaling's StartInstanceRefresh and DescribeInstanceRefreshes exist (stock moto has
  neither), with EC2 Auto Scaling's request and response shapes. A refresh needs a known group
  and is recorded with its strategy and preferences. It completes at once (`Successful`,
  `PercentageComplete` 100, no instances left to update): the group's instances are replaced in
  one step (with `SkipMatching`, only those not on the group's launch template version's image)
  instead of in batches over time, warm-up and minimum healthy percentage are not applied, and a
  second refresh is never refused as `InstanceRefreshInProgress`.
  DescribeInstanceRefreshes lists a group's refreshes newest first and ignores paging.
"""

from bridge.sandbox.accounts import (
    ACCESS_KEY,
    ACCOUNT,
    BASE_IMAGE,
    OTHER_ACCOUNT,
    SECRET_KEY,
    access_key,
)
from bridge.sandbox.server import Sandbox, running, serve, start

__all__ = [
    "ACCESS_KEY",
    "ACCOUNT",
    "BASE_IMAGE",
    "OTHER_ACCOUNT",
    "SECRET_KEY",
    "Sandbox",
    "access_key",
    "running",
    "serve",
    "start",
]
