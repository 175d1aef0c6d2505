variable "definition" {
  description = "Catalog definition to resolve. Its parents are resolved (and built) along with it."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9_-]{0,62}$", var.definition))
    error_message = "The definition must be a catalog name: lowercase letters, digits, '_' and '-', starting with a letter."
  }
}

variable "repo_dir" {
  description = "Root of the Packer git repository, absolute or relative to Terraform's working directory."
  type        = string
  default     = "."
}

variable "catalog" {
  description = "Catalog path relative to repo_dir. Empty means ami-chain.json."
  type        = string
  default     = ""
}

variable "region" {
  description = "AWS region to resolve in. Empty means AWS_REGION, then the catalog's first region."
  type        = string
  default     = ""

  validation {
    condition     = var.region == "" || can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]$", var.region))
    error_message = "The region must be an AWS region name such as us-east-1, or empty."
  }
}

variable "on_missing" {
  description = "With build_phase = \"plan\": what a miss does — build (default), fail, or report (ami_id is \"\")."
  type        = string
  default     = "build"

  validation {
    condition     = contains(["build", "fail", "report"], var.on_missing)
    error_message = "The on_missing value must be one of build, fail, report."
  }
}

variable "build_phase" {
  description = "When missing images are built: plan (by the data source, during plan), apply (by a null_resource during apply; the plan shows the rebuild), or never (a miss fails the plan)."
  type        = string
  default     = "plan"

  validation {
    condition     = contains(["plan", "apply", "never"], var.build_phase)
    error_message = "The build_phase value must be one of plan, apply, never."
  }
}

variable "tag_key" {
  description = "EC2 tag that carries the fingerprint. Empty means the catalog's, then SHA."
  type        = string
  default     = ""

  validation {
    condition     = var.tag_key == "" || can(regex("^[A-Za-z0-9 _.:/=+@-]{1,127}$", var.tag_key))
    error_message = "The tag_key must be a valid EC2 tag key (1-127 characters) or empty."
  }
}

variable "owners" {
  description = "Image owners to search: \"self\" or 12-digit account IDs. Empty means the catalog's, then self."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for o in var.owners : can(regex("^(self|[0-9]{12})$", o))])
    error_message = "Each owner must be \"self\" or a 12-digit account ID."
  }
}

variable "manifest_bucket" {
  description = "S3 bucket for build manifests. Empty means the catalog's; none means no manifests."
  type        = string
  default     = ""
}

variable "manifest_prefix" {
  description = "S3 key prefix for build manifests. Empty means the catalog's."
  type        = string
  default     = ""
}

variable "bridge_command" {
  description = "argv that runs ami-bridge; the module appends the subcommand (external or build)."
  type        = list(string)
  default     = ["ami-bridge"]

  validation {
    condition     = length(var.bridge_command) > 0
    error_message = "The bridge_command needs at least the program to run."
  }
}
