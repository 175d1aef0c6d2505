# A launch template for an AMI, with IMDSv2 required.
terraform {
  required_version = ">= 1.0"
}

variable "image_id" {
  description = "The AMI to launch."
  type        = string
}

variable "region" {
  description = "AWS region."
  type        = string
  default     = "us-east-1"
}

provider "aws" {
  region = var.region
}

module "launch_template" {
  source = "../.."

  name_prefix = "example-"
  image_id    = var.image_id
  tags        = { Environment = "example" }
}

output "id" {
  description = "Launch template ID."
  value       = module.launch_template.id
}

output "latest_version" {
  description = "Newest version."
  value       = module.launch_template.latest_version
}

output "image_id" {
  description = "AMI of the newest version."
  value       = module.launch_template.image_id
}
