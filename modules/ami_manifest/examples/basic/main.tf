# A deployment manifest listing the AMIs a deployment uses.
terraform {
  required_version = ">= 1.0"
}

variable "bucket" {
  description = "Bucket for the manifest."
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

module "ami_manifest" {
  source = "../.."

  bucket     = var.bucket
  key        = "deployments/example/amis.json"
  deployment = "example"
  images = {
    base = {
      ami_id        = "ami-0123456789abcdef0"
      fingerprint   = "0123456789abcdef0123456789abcdef01234567"
      parent_ami_id = ""
      manifest_uri  = ""
      git_commit    = "89abcdef0123456789abcdef0123456789abcdef"
    }
  }
}

output "key" {
  description = "Manifest key."
  value       = module.ami_manifest.key
}

output "etag" {
  description = "Manifest ETag."
  value       = module.ami_manifest.etag
}
