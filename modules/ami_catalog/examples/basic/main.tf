# Resolves several definitions of a Packer repository in one bridge call.
terraform {
  required_version = ">= 1.0"
}

variable "repo_dir" {
  description = "Root of the Packer git repository."
  type        = string
}

variable "region" {
  description = "AWS region of the images."
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

module "ami_catalog" {
  source = "../.."

  definitions    = ["base", "snowflake"]
  repo_dir       = var.repo_dir
  bridge_command = var.bridge_command
}

output "ami_ids" {
  description = "AMI by definition."
  value       = module.ami_catalog.ami_ids
}

output "fingerprints" {
  description = "Fingerprint by definition."
  value       = module.ami_catalog.fingerprints
}
