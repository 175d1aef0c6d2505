terraform {
  required_version = "~> 1.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.0"
    }
    external = {
      source  = "hashicorp/external"
      version = "~> 2.3"
    }
    null = {
      source  = "hashicorp/null"
      version = ">= 2.1"
    }
  }
}

provider "aws" {
  region = var.region

  # Path-style S3 addressing, for S3-compatible endpoints such as the sandbox.
  s3_use_path_style = var.s3_use_path_style
}
