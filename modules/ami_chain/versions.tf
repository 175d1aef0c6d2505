terraform {
  required_version = ">= 1.0"

  required_providers {
    # >= 2.2.3: no 20-minute kill of the program, so long Packer builds can finish.
    external = {
      source  = "hashicorp/external"
      version = ">= 2.2.3"
    }
    null = {
      source  = "hashicorp/null"
      version = ">= 2.1"
    }
  }
}
