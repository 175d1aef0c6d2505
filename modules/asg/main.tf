locals {
  tags = merge(var.tags, { Name = trimsuffix(var.name_prefix, "-") })
}

resource "aws_autoscaling_group" "this" {
  name_prefix               = var.name_prefix
  min_size                  = var.min_size
  max_size                  = var.max_size
  desired_capacity          = var.desired_capacity
  availability_zones        = var.subnet_ids == null ? var.availability_zones : null
  vpc_zone_identifier       = var.subnet_ids
  health_check_type         = var.health_check_type
  health_check_grace_period = var.health_check_grace_period

  # An explicit version number, not $Latest: a new launch template version is a change the
  # plan shows, and the change starts the instance refresh below.
  launch_template {
    id      = var.launch_template_id
    version = tostring(var.launch_template_version)
  }

  dynamic "instance_refresh" {
    for_each = var.instance_refresh ? [true] : []

    content {
      strategy = "Rolling"
      # The launch template always starts a refresh; triggers name further attributes.
      triggers = var.refresh_triggers

      preferences {
        min_healthy_percentage = var.min_healthy_percentage
        instance_warmup        = var.instance_warmup != null ? tostring(var.instance_warmup) : null
        skip_matching          = var.skip_matching
      }
    }
  }

  dynamic "tag" {
    for_each = local.tags

    content {
      key                 = tag.key
      value               = tag.value
      propagate_at_launch = var.propagate_tags_at_launch
    }
  }
}
