terraform {
  required_version = ">= 1.0"

  required_providers {
    # Only for the provider's region (data "aws_region", its `id`), the default of `region`.
    aws = {
      source  = "hashicorp/aws"
      version = ">= 4.0, < 7.0"
    }
    external = {
      source  = "hashicorp/external"
      version = ">= 2.2.3"
    }
  }
}
