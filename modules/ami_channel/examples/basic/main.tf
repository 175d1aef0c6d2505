# Resolves a definition through its promotion channel, with no Packer repository.
terraform {
  required_version = ">= 1.0"
}

variable "region" {
  description = "AWS region of the channel."
  type        = string
  default     = "us-east-1"
}

variable "bridge_command" {
  description = "argv that runs ami-bridge."
  type        = list(string)
  default     = ["ami-bridge"]
}

provider "aws" {
  region = var.region
}

module "ami_channel" {
  source = "../.."

  catalog_id     = "example" # the catalog's `id`: its channels are /ami-chain/example/...
  definition     = "snowflake"
  channel        = "prod"
  bridge_command = var.bridge_command
}

output "ami_id" {
  value = module.ami_channel.ami_id
}

output "channel_version" {
  value = module.ami_channel.channel_version
}

output "parameter_name" {
  value = module.ami_channel.parameter_name
}

output "build_id" {
  value = module.ami_channel.build_id
}

# A launch template that follows the channel at each launch (resolve:ssm:), not at plan time.
module "launch_template" {
  source = "../../../launch_template"

  name_prefix         = "web-"
  image_ssm_parameter = module.ami_channel.parameter_name
}

output "launch_template_id" {
  value = module.launch_template.id
}

output "launch_template_image" {
  value = module.launch_template.image_id
}
