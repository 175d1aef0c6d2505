# An Auto Scaling group on a launch template's newest version, refreshed when the image changes.
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
  source = "../../../launch_template"

  name_prefix = "example-"
  image_id    = var.image_id
  tags        = { Environment = "example" }
}

module "asg" {
  source = "../.."

  name_prefix             = "example-"
  launch_template_id      = module.launch_template.id
  launch_template_version = module.launch_template.latest_version
  availability_zones      = ["${var.region}a"]
  min_size                = 1
  max_size                = 2
  min_healthy_percentage  = 50
  instance_warmup         = 60
  tags                    = { Environment = "example" }
}

output "name" {
  description = "The group's name."
  value       = module.asg.name
}

output "launch_template_id" {
  description = "Launch template ID."
  value       = module.launch_template.id
}

output "launch_template_version" {
  description = "The version the group runs."
  value       = module.asg.launch_template_version
}
