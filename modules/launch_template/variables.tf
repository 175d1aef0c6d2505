variable "name_prefix" {
  description = "Prefix of the launch template's name; Terraform appends a unique suffix."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9()./_-]{1,99}$", var.name_prefix))
    error_message = "The name_prefix may hold letters, digits and ()./_- and be at most 99 characters."
  }
}

variable "image_id" {
  description = "The AMI instances launch from, e.g. module.ami_chain.ami_id (null when image_ssm_parameter is set)."
  type        = string
  default     = null

  validation {
    condition     = var.image_id == null || can(regex("^ami-[0-9a-f]{8,17}$", var.image_id))
    error_message = "The image_id must be an AMI ID (ami-...)."
  }
}

variable "image_ssm_parameter" {
  description = "An SSM parameter holding the AMI (a promotion channel, e.g. module.ami_channel.parameter_name): EC2 resolves it at each launch (resolve:ssm:), so instances follow the channel. Replaces image_id."
  type        = string
  default     = null

  validation {
    condition     = var.image_ssm_parameter == null ? true : length(regexall("^/[A-Za-z0-9_./-]+(:[0-9]+)?$", var.image_ssm_parameter)) > 0
    error_message = "The image_ssm_parameter must be an SSM parameter path such as /ami-chain/snowflake/prod (optionally :VERSION)."
  }
}

variable "instance_type" {
  description = "EC2 instance type."
  type        = string
  default     = "t3.micro"
}

variable "description" {
  description = "Description of each launch template version."
  type        = string
  default     = ""
}

variable "require_imdsv2" {
  description = "Require IMDSv2 session tokens for the instance metadata service."
  type        = bool
  default     = true
}

variable "metadata_hop_limit" {
  description = "PUT response hop limit for instance metadata requests (2 lets containers reach it)."
  type        = number
  default     = 2
}

variable "tag_resource_types" {
  description = "Resource types launched instances tag with `tags` (tag_specifications)."
  type        = list(string)
  default     = ["instance", "volume"]
}

variable "tags" {
  description = "Tags for the launch template and, through tag_specifications, what it launches."
  type        = map(string)
  default     = {}
}
