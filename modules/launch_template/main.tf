locals {
  # A channel's parameter is resolved by EC2 at each launch, so instances follow the channel.
  image_id    = var.image_ssm_parameter != null ? "resolve:ssm:${var.image_ssm_parameter}" : var.image_id
  description = var.description != null ? var.description : "Launches ${local.image_id}"

  # IMDSv2 required and one hop unless asked otherwise; metadata_options overrides win.
  metadata_options = merge(
    {
      http_endpoint               = "enabled"
      http_tokens                 = var.require_imdsv2 ? "required" : "optional"
      http_put_response_hop_limit = tostring(var.metadata_hop_limit)
      instance_metadata_tags      = "disabled"
    },
    var.metadata_options,
  )

  # The fingerprint of the image travels with the template and what it launches.
  tags          = var.fingerprint != null ? merge(var.tags, { (var.fingerprint_tag_key) = var.fingerprint }) : var.tags
  launched_tags = merge(local.tags, { ImageId = local.image_id })

  # An instance profile is named by its ARN or by its name.
  profile_is_arn = var.iam_instance_profile != null ? substr(var.iam_instance_profile, 0, 4) == "arn:" : false

  # A public address is asked for on the primary network interface, which then carries the
  # security groups too (EC2 refuses both on the template and on an interface).
  public_ip_asked = var.associate_public_ip_address != null
}

resource "aws_launch_template" "this" {
  name_prefix            = var.name_prefix
  description            = local.description
  image_id               = local.image_id
  instance_type          = var.instance_type
  key_name               = var.key_name
  user_data              = var.user_data != null ? base64encode(var.user_data) : null
  vpc_security_group_ids = local.public_ip_asked ? null : var.vpc_security_group_ids
  update_default_version = var.update_default_version
  tags                   = local.tags

  block_device_mappings {
    device_name = var.root_device_name

    ebs {
      volume_size           = var.root_volume_size
      volume_type           = var.root_volume_type
      encrypted             = tostring(var.root_volume_encrypted)
      kms_key_id            = var.root_volume_encrypted ? var.root_volume_kms_key_id : null
      delete_on_termination = "true"
    }
  }

  dynamic "iam_instance_profile" {
    for_each = var.iam_instance_profile != null ? [var.iam_instance_profile] : []

    content {
      arn  = local.profile_is_arn ? iam_instance_profile.value : null
      name = local.profile_is_arn ? null : iam_instance_profile.value
    }
  }

  dynamic "network_interfaces" {
    for_each = local.public_ip_asked ? [var.associate_public_ip_address] : []

    content {
      device_index                = 0
      associate_public_ip_address = tostring(network_interfaces.value)
      delete_on_termination       = "true"
      security_groups             = var.vpc_security_group_ids
    }
  }

  metadata_options {
    http_endpoint               = local.metadata_options["http_endpoint"]
    http_tokens                 = local.metadata_options["http_tokens"]
    http_put_response_hop_limit = tonumber(local.metadata_options["http_put_response_hop_limit"])
    http_protocol_ipv6          = lookup(local.metadata_options, "http_protocol_ipv6", null)
    instance_metadata_tags      = local.metadata_options["instance_metadata_tags"]
  }

  dynamic "tag_specifications" {
    for_each = toset(var.tag_resource_types)

    content {
      resource_type = tag_specifications.value
      tags          = local.launched_tags
    }
  }

  # A new AMI makes a new version; the template itself is only replaced when its name changes,
  # and then the new one exists before the old one goes.
  lifecycle {
    create_before_destroy = true
  }
}
