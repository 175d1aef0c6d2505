locals {
  repo = abspath(var.repo_dir)

  # Every query value is a string; "" means "unset" to the bridge.
  query = {
    definition      = var.definition
    repo            = local.repo
    catalog         = var.catalog
    region          = var.region
    tag_key         = var.tag_key
    owners          = join(",", var.owners)
    manifest_bucket = var.manifest_bucket
    manifest_prefix = var.manifest_prefix
  }

  # At plan time: build (plan), only report (apply: the null_resource builds), or fail (never).
  plan_on_missing = {
    plan  = var.on_missing
    apply = "report"
    never = var.on_missing == "report" ? "report" : "fail"
  }[var.build_phase]

  # `ami-bridge build` flags for the apply-phase build, empty ones left out.
  build_flags = flatten([
    for flag, value in {
      "--repo"            = local.repo
      "--catalog"         = var.catalog
      "--region"          = var.region
      "--tag-key"         = var.tag_key
      "--owners"          = join(",", var.owners)
      "--manifest-bucket" = var.manifest_bucket
      "--manifest-prefix" = var.manifest_prefix
    } : value == "" ? [] : [flag, value]
  ])

  planned = data.external.plan.result
  # A second read is needed only when the apply-phase build has something to do.
  reread   = var.build_phase == "apply" && local.planned.found != "true"
  resolved = local.reread ? data.external.resolved[0].result : local.planned
}

data "external" "plan" {
  program = concat(var.bridge_command, ["external"])
  query   = merge(local.query, { on_missing = local.plan_on_missing })
}

# build_phase = "apply": one resource per fingerprint, so the plan shows which images will be
# (re)built, and the build runs during apply. local-exec gets an argv (interpreter + command),
# never a shell string.
resource "null_resource" "build" {
  count = var.build_phase == "apply" ? 1 : 0

  triggers = {
    definition  = var.definition
    fingerprint = local.planned.fingerprint
  }

  provisioner "local-exec" {
    interpreter = concat(var.bridge_command, ["build"], local.build_flags)
    command     = var.definition
  }
}

# Read after the build, during apply. When the image already exists, the plan-time read is the
# answer and this one is not made, so an unchanged plan runs the bridge once per module.
data "external" "resolved" {
  count = local.reread ? 1 : 0

  program = concat(var.bridge_command, ["external"])
  query   = merge(local.query, { on_missing = "build" })

  depends_on = [null_resource.build]
}
