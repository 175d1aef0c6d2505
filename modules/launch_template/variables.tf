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
  description = "Description of each launch template version. Null means \"Launches <image>\"."
  type        = string
  default     = null
}

variable "require_imdsv2" {
  description = "Require IMDSv2 session tokens for the instance metadata service."
  type        = bool
  default     = true
}

variable "metadata_hop_limit" {
  description = "PUT response hop limit for instance metadata requests. 1 keeps the metadata service to the instance itself; 2 lets containers on it reach the service."
  type        = number
  default     = 1

  validation {
    condition     = var.metadata_hop_limit >= 1 && var.metadata_hop_limit <= 64 && floor(var.metadata_hop_limit) == var.metadata_hop_limit
    error_message = "The metadata_hop_limit must be a whole number from 1 to 64."
  }
}

variable "metadata_options" {
  description = "Overrides of the metadata_options block, by attribute: http_endpoint, http_tokens, http_put_response_hop_limit, http_protocol_ipv6, instance_metadata_tags (values as strings). They win over require_imdsv2 and metadata_hop_limit."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for k in keys(var.metadata_options) : contains(["http_endpoint", "http_tokens", "http_put_response_hop_limit", "http_protocol_ipv6", "instance_metadata_tags"], k)])
    error_message = "The metadata_options keys must be among http_endpoint, http_tokens, http_put_response_hop_limit, http_protocol_ipv6 and instance_metadata_tags."
  }
}

variable "vpc_security_group_ids" {
  description = "Security groups of the instances (on the primary network interface when associate_public_ip_address is set). Null: the VPC's default group."
  type        = list(string)
  default     = null

  validation {
    condition     = var.vpc_security_group_ids == null ? true : alltrue([for g in coalesce(var.vpc_security_group_ids, []) : can(regex("^sg-[0-9a-f]{8,17}$", g))])
    error_message = "Each of vpc_security_group_ids must be a security group ID (sg-...)."
  }
}

variable "user_data" {
  description = "User data as plain text (a script or cloud-init document); the module base64-encodes it."
  type        = string
  default     = null
}

variable "iam_instance_profile" {
  description = "IAM instance profile of the instances: its name, or its ARN (a value starting with arn:)."
  type        = string
  default     = null
}

variable "key_name" {
  description = "EC2 key pair for SSH. Null: none."
  type        = string
  default     = null
}

variable "associate_public_ip_address" {
  description = "Whether the primary network interface gets a public IP address. Null (default): no network_interfaces block, so no public address is asked for and the subnet decides."
  type        = bool
  default     = null
}

variable "root_device_name" {
  description = "Device name of the image's root volume, which the root_volume_* settings apply to (/dev/sda1 for Ubuntu, /dev/xvda for Amazon Linux)."
  type        = string
  default     = "/dev/sda1"

  validation {
    condition     = can(regex("^/dev/[a-z0-9]+$", var.root_device_name))
    error_message = "The root_device_name must be a device path such as /dev/sda1 or /dev/xvda."
  }
}

variable "root_volume_size" {
  description = "Size of the root volume in GiB. Null: the image's snapshot size."
  type        = number
  default     = null

  validation {
    condition     = var.root_volume_size == null ? true : var.root_volume_size >= 1 && var.root_volume_size <= 16384
    error_message = "The root_volume_size must be from 1 to 16384 GiB."
  }
}

variable "root_volume_type" {
  description = "EBS volume type of the root volume."
  type        = string
  default     = "gp3"

  validation {
    condition     = contains(["standard", "gp2", "gp3", "io1", "io2", "sc1", "st1"], var.root_volume_type)
    error_message = "The root_volume_type must be one of standard, gp2, gp3, io1, io2, sc1, st1."
  }
}

variable "root_volume_encrypted" {
  description = "Encrypt the root volume (on by default)."
  type        = bool
  default     = true
}

variable "root_volume_kms_key_id" {
  description = "KMS key (ARN) of the root volume's encryption. Null: the account's EBS default key."
  type        = string
  default     = null

  validation {
    condition     = var.root_volume_kms_key_id == null ? true : can(regex("^arn:aws[a-z-]*:kms:", var.root_volume_kms_key_id))
    error_message = "The root_volume_kms_key_id must be a KMS key ARN (arn:aws:kms:...)."
  }
}

variable "update_default_version" {
  description = "Make each new version the default version."
  type        = bool
  default     = true
}

variable "fingerprint" {
  description = "Fingerprint of the image (e.g. module.ami_chain.fingerprint), recorded as a tag (fingerprint_tag_key) on the template and what it launches, and output."
  type        = string
  default     = null

  validation {
    condition     = var.fingerprint == null ? true : can(regex("^[0-9a-f]{40}$", var.fingerprint))
    error_message = "The fingerprint must be 40 lowercase hexadecimal characters."
  }
}

variable "fingerprint_tag_key" {
  description = "Tag key that carries the fingerprint."
  type        = string
  default     = "Fingerprint"

  validation {
    condition     = can(regex("^[A-Za-z0-9 _.:/=+@-]{1,127}$", var.fingerprint_tag_key))
    error_message = "The fingerprint_tag_key must be a valid tag key (at most 127 characters)."
  }
}

variable "tag_resource_types" {
  description = "Resource types launched instances tag with `tags` (tag_specifications)."
  type        = list(string)
  default     = ["instance", "volume"]

  validation {
    condition     = alltrue([for t in var.tag_resource_types : contains(["instance", "volume", "network-interface", "spot-instances-request", "elastic-gpu"], t)])
    error_message = "The tag_resource_types must be among instance, volume, network-interface, spot-instances-request, elastic-gpu."
  }
}

variable "tags" {
  description = "Tags for the launch template and, through tag_specifications, what it launches."
  type        = map(string)
  default     = {}
}
