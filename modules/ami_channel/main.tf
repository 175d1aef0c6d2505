# What a promotion channel holds, read from its SSM parameter through `ami-bridge external`:
# no Packer repository, no git, no catalog.
data "aws_region" "current" {}

locals {
  region = var.region != null ? var.region : data.aws_region.current.id
}

data "external" "channel" {
  program = concat(var.bridge_command, ["external", "--module"])
  query = {
    definition     = var.definition
    channel        = var.channel
    channel_prefix = var.channel_prefix
    region         = local.region
  }
}
