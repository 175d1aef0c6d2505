variable "name_prefix" {
  description = "Prefix of the group's name; Terraform appends a unique suffix."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9()./_-]{1,229}$", var.name_prefix))
    error_message = "The name_prefix may hold letters, digits and ()./_- and be at most 229 characters."
  }
}

variable "launch_template_id" {
  description = "The launch template the group runs, e.g. module.launch_template.id."
  type        = string

  validation {
    condition     = can(regex("^lt-[0-9a-f]{8,17}$", var.launch_template_id))
    error_message = "The launch_template_id must be a launch template ID (lt-...)."
  }
}

variable "launch_template_version" {
  description = "The launch template version the group runs, as a number (e.g. module.launch_template.latest_version), so a new version is a change the plan shows and starts an instance refresh."
  type        = number

  validation {
    condition     = var.launch_template_version >= 1 && floor(var.launch_template_version) == var.launch_template_version
    error_message = "The launch_template_version must be a version number (1 or more); $Latest and $Default hide new versions from the plan."
  }
}

variable "min_size" {
  description = "Fewest instances."
  type        = number
  default     = 1

  validation {
    condition     = var.min_size >= 0
    error_message = "The min_size must be 0 or more."
  }
}

variable "max_size" {
  description = "Most instances (at least min_size; room above desired_capacity lets a rolling refresh keep capacity)."
  type        = number
  default     = 2

  validation {
    condition     = var.max_size >= 0
    error_message = "The max_size must be 0 or more."
  }
}

variable "desired_capacity" {
  description = "Instances to run. Null: min_size at creation, then whatever scaling sets (Terraform does not reset it)."
  type        = number
  default     = null
}

variable "availability_zones" {
  description = "Availability zones of the group when it runs in the default VPC (ignored when subnet_ids is set)."
  type        = list(string)
  default     = null
}

variable "subnet_ids" {
  description = "Subnets of the group (vpc_zone_identifier). Null: availability_zones."
  type        = list(string)
  default     = null

  validation {
    condition     = var.subnet_ids == null ? true : alltrue([for s in coalesce(var.subnet_ids, []) : can(regex("^subnet-[0-9a-f]{8,17}$", s))])
    error_message = "Each of subnet_ids must be a subnet ID (subnet-...)."
  }
}

variable "health_check_type" {
  description = "EC2 or ELB. Null: EC2."
  type        = string
  default     = null

  validation {
    condition     = var.health_check_type == null ? true : contains(["EC2", "ELB"], coalesce(var.health_check_type, "EC2"))
    error_message = "The health_check_type must be EC2 or ELB."
  }
}

variable "health_check_grace_period" {
  description = "Seconds after launch before health checks count. Null: 300."
  type        = number
  default     = null
}

variable "instance_refresh" {
  description = "Replace the instances in a rolling instance refresh when the launch template (its version) changes."
  type        = bool
  default     = true
}

variable "min_healthy_percentage" {
  description = "Percentage of the group that stays in service during a refresh."
  type        = number
  default     = 90

  validation {
    condition     = var.min_healthy_percentage >= 0 && var.min_healthy_percentage <= 100
    error_message = "The min_healthy_percentage must be from 0 to 100."
  }
}

variable "instance_warmup" {
  description = "Seconds a new instance needs before it counts as in service during a refresh. Null: the health check grace period."
  type        = number
  default     = null

  validation {
    condition     = var.instance_warmup == null ? true : var.instance_warmup >= 0
    error_message = "The instance_warmup must be 0 or more seconds."
  }
}

variable "skip_matching" {
  description = "During a refresh, keep instances that already run the desired launch template version."
  type        = bool
  default     = true
}

variable "refresh_triggers" {
  description = "Further group attributes whose change starts a refresh (the launch template always does): tag, desired_capacity, availability_zones, vpc_zone_identifier. Empty by default, so nothing but a new image or template version replaces instances."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for t in var.refresh_triggers : contains(["tag", "desired_capacity", "availability_zones", "vpc_zone_identifier"], t)])
    error_message = "The refresh_triggers must be among tag, desired_capacity, availability_zones, vpc_zone_identifier."
  }
}

variable "propagate_tags_at_launch" {
  description = "Copy the group's tags to the instances it launches."
  type        = bool
  default     = true
}

variable "tags" {
  description = "Tags of the group (a Name tag from name_prefix is added)."
  type        = map(string)
  default     = {}
}
