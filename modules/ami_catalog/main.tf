# Several definitions of one catalog in one bridge call: the same build phases as ami_chain,
# with one `null_resource` per definition, so the plan still names each build.
data "aws_region" "current" {}

locals {
  repo        = abspath(var.repo_dir)
  region      = var.region != null ? var.region : data.aws_region.current.id
  definitions = toset(var.definitions)

  # The bridge's options; null inputs are left out, so its defaults and the catalog's apply.
  options = {
    repo            = local.repo
    catalog         = var.catalog
    region          = local.region
    tag_key         = var.tag_key
    owners          = var.owners == null ? null : join(",", var.owners)
    manifest_bucket = var.manifest_bucket
    manifest_prefix = var.manifest_prefix
    allow_dirty     = var.allow_dirty == null ? null : tostring(var.allow_dirty)
    on_revoked      = var.on_revoked
    # Checked by every call, so the answer Terraform uses is verified wherever it came from.
    require_provenance = var.require_provenance == null ? null : tostring(var.require_provenance)
    provenance_key     = var.provenance_key
  }
  query = merge(
    { for key, value in local.options : key => value if value != null },
    { definitions = join(",", sort(var.definitions)) },
  )

  plan_on_missing = {
    apply = "report"
    plan  = var.on_missing
    never = var.on_missing == "report" ? "report" : "fail"
  }[var.build_phase]

  # definition -> its result (the bridge JSON-encodes each one into the flat result map).
  planned = { for name in var.definitions : name => jsondecode(data.external.plan.result[name]) }
  # Every definition was fingerprinted at the same commit.
  commit = local.planned[var.definitions[0]].commit

  build_flags = flatten([
    for flag, value in {
      "--repo"            = local.repo
      "--catalog"         = var.catalog
      "--region"          = local.region
      "--tag-key"         = var.tag_key
      "--owners"          = var.owners == null ? null : join(",", var.owners)
      "--manifest-bucket" = var.manifest_bucket
      "--manifest-prefix" = var.manifest_prefix
      "--on-revoked"      = var.on_revoked
    } : value == null ? [] : [flag, value]
  ])

  resolved = var.build_phase == "apply" ? {
    for name in var.definitions : name => jsondecode(data.external.resolved[0].result[name])
  } : local.planned
}

data "external" "plan" {
  program = concat(var.bridge_command, ["external", "--module"])
  query = merge(
    local.query,
    var.commit == null ? {} : { commit = var.commit },
    { on_missing = local.plan_on_missing },
  )
}

# build_phase = "apply": one resource per definition, keyed on its build ID (see ami_chain), so
# the plan names each build; Terraform runs them in parallel, and builds of a shared parent
# happen once (the bridge's lock and lease). Keyed on the regions the image must exist in too:
# a region added to the catalog is copied to at the next apply (no build: the build ID stays).
resource "null_resource" "build" {
  for_each = var.build_phase == "apply" ? local.definitions : toset([])

  triggers = {
    definition  = each.key
    fingerprint = local.planned[each.key].fingerprint
    build_id    = local.planned[each.key].build_id
    regions     = join(",", sort(keys(jsondecode(local.planned[each.key].regions_json))))
  }

  provisioner "local-exec" {
    interpreter = concat(
      var.bridge_command,
      ["build"],
      local.build_flags,
      var.allow_dirty == true ? ["--allow-dirty"] : [],
      [
        "--commit", local.commit,
        "--expect-fingerprint", local.planned[each.key].fingerprint,
        "--local-exec",
      ],
    )
    command = "ami-bridge build ${each.key}"
  }
}

# After the builds (at plan time when there is nothing to build); never builds.
data "external" "resolved" {
  count = var.build_phase == "apply" ? 1 : 0

  program = concat(var.bridge_command, ["external", "--module"])
  query = merge(local.query, {
    commit     = local.commit
    on_missing = "fail"
  })

  depends_on = [null_resource.build]
}
