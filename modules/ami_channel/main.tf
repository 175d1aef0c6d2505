# What a promotion channel holds, read from its SSM parameter through `ami-bridge external`:
# no Packer repository, no git, no catalog.
data "aws_region" "current" {}

locals {
  region = var.region != null ? var.region : data.aws_region.current.id
}

data "external" "channel" {
  program = concat(var.bridge_command, ["external", "--module"])
  # Null inputs are left out.
  query = { for key, value in {
    definition     = var.definition
    channel        = var.channel
    catalog_id     = var.catalog_id
    channel_prefix = var.channel_prefix
    region         = local.region
    # The image the channel holds must verify (the builder's statement), or the plan fails.
    require_provenance = var.require_provenance == null ? null : tostring(var.require_provenance)
    provenance_key     = var.provenance_key
    manifest_bucket    = var.manifest_bucket
    manifest_prefix    = var.manifest_prefix
  } : key => value if value != null }
}
