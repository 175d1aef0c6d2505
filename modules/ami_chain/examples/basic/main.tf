# Resolves one definition of a Packer repository, building it (and its parents) when missing.
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

variable "definition" {
  description = "Catalog definition to resolve."
  type        = string
  default     = "snowflake"
}

variable "build_phase" {
  description = "apply, plan or never."
  type        = string
  default     = "apply"
}

variable "bridge_command" {
  description = "argv that runs ami-bridge."
  type        = list(string)
  default     = ["ami-bridge"]
}

provider "aws" {
  region = var.region
}

module "ami_chain" {
  source = "../.."

  definition     = var.definition
  repo_dir       = var.repo_dir
  build_phase    = var.build_phase
  bridge_command = var.bridge_command
}

output "ami_id" {
  description = "The resolved AMI."
  value       = module.ami_chain.ami_id
}

output "parent_ami_id" {
  description = "Its parent's AMI."
  value       = module.ami_chain.parent_ami_id
}

output "fingerprint" {
  description = "The definition's fingerprint."
  value       = module.ami_chain.fingerprint
}

output "amis" {
  description = "AMI by region."
  value       = module.ami_chain.amis
}

output "build_id" {
  description = "The image's build ID."
  value       = module.ami_chain.build_id
}
