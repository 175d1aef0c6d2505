locals {
  # A channel's parameter is resolved by EC2 at each launch, so instances follow the channel.
  image_id    = var.image_ssm_parameter != null ? "resolve:ssm:${var.image_ssm_parameter}" : var.image_id
  description = var.description != "" ? var.description : "Launches ${local.image_id}"
}

resource "aws_launch_template" "this" {
  name_prefix            = var.name_prefix
  description            = local.description
  image_id               = local.image_id
  instance_type          = var.instance_type
  update_default_version = true
  tags                   = var.tags

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = var.require_imdsv2 ? "required" : "optional"
    http_put_response_hop_limit = var.metadata_hop_limit
    instance_metadata_tags      = "disabled"
  }

  dynamic "tag_specifications" {
    for_each = toset(var.tag_resource_types)

    content {
      resource_type = tag_specifications.value
      tags          = merge(var.tags, { ImageId = local.image_id })
    }
  }

  # A new AMI makes a new version; the template itself is only replaced when its name changes,
  # and then the new one exists before the old one goes.
  lifecycle {
    create_before_destroy = true
  }
}
