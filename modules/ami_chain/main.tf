# The region of the AWS provider this module is given: images and the resources that use them
# agree unless `region` says otherwise.
data "aws_region" "current" {}

locals {
  repo   = abspath(var.repo_dir)
  region = var.region != null ? var.region : data.aws_region.current.id

  # The bridge's options. Every query value is a string; null inputs are left out, so the
  # bridge's own defaults (and the catalog's) apply.
  options = {
    repo            = local.repo
    catalog         = var.catalog
    region          = local.region
    tag_key         = var.tag_key
    owners          = var.owners == null ? null : join(",", var.owners)
    manifest_bucket = var.manifest_bucket
    manifest_prefix = var.manifest_prefix
    allow_dirty     = var.allow_dirty == null ? null : tostring(var.allow_dirty)
  }
  query = merge(
    { for key, value in local.options : key => value if value != null },
    { definition = var.definition },
  )

  # What a miss does at plan time: nothing but report it (apply: the null_resource builds it),
  # build it (plan), or fail (never).
  plan_on_missing = {
    apply = "report"
    plan  = var.on_missing
    never = var.on_missing == "report" ? "report" : "fail"
  }[var.build_phase]

  # The plan-time read. `commit` is what it fingerprinted: the apply builds and reads exactly
  # that commit (a saved plan applied after new commits still builds what was reviewed).
  planned = data.external.plan.result

  # `ami-bridge build` flags for the apply-time build, unset ones left out.
  build_flags = flatten([
    for flag, value in {
      "--repo"            = local.repo
      "--catalog"         = var.catalog
      "--region"          = local.region
      "--tag-key"         = var.tag_key
      "--owners"          = var.owners == null ? null : join(",", var.owners)
      "--manifest-bucket" = var.manifest_bucket
      "--manifest-prefix" = var.manifest_prefix
    } : value == null ? [] : [flag, value]
  ])
  pinned_flags = [
    "--commit", local.planned.commit,
    "--expect-fingerprint", local.planned.fingerprint,
  ]

  resolved = var.build_phase == "apply" ? data.external.resolved[0].result : local.planned
}

data "external" "plan" {
  program = concat(var.bridge_command, ["external", "--module"])
  query = merge(
    local.query,
    var.commit == null ? {} : { commit = var.commit },
    { on_missing = local.plan_on_missing },
  )
}

# build_phase = "apply": one resource per build. Its triggers are the image's build ID, which the
# bridge knows before the build (fingerprint, parent image, images it supersedes) and tags the
# image with, so the plan shows every build to come as a replacement here, and once built the
# next plan is empty. local-exec gets an argv (interpreter + command), never a shell string; the
# command is the text Terraform shows if the build fails.
resource "null_resource" "build" {
  count = var.build_phase == "apply" ? 1 : 0

  triggers = {
    definition  = var.definition
    fingerprint = local.planned.fingerprint
    build_id    = local.planned.build_id
  }

  provisioner "local-exec" {
    interpreter = concat(
      var.bridge_command,
      ["build"],
      local.build_flags,
      var.allow_dirty == true ? ["--allow-dirty"] : [],
      local.pinned_flags,
      ["--local-exec"],
    )
    command = "ami-bridge build ${var.definition}"
  }
}

# The image after the build: read during apply when the build runs, at plan time otherwise
# (then it is the image the plan-time read found). It never builds: a missing image here means
# the build above did not make it.
data "external" "resolved" {
  count = var.build_phase == "apply" ? 1 : 0

  program = concat(var.bridge_command, ["external", "--module"])
  query = merge(local.query, {
    commit             = local.planned.commit
    expect_fingerprint = local.planned.fingerprint
    on_missing         = "fail"
  })

  depends_on = [null_resource.build]
}
