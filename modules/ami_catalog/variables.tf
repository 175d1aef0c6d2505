# Optional inputs default to null: unset, so the bridge's defaults and the catalog's apply.

variable "definitions" {
  description = "Catalog definitions to resolve, in one bridge call. Their parents are resolved (and built) along with them."
  type        = list(string)

  validation {
    condition     = length(var.definitions) > 0 && alltrue([for d in var.definitions : can(regex("^[a-z][a-z0-9_-]{0,62}$", d))])
    error_message = "Each definition must be a catalog name: lowercase letters, digits, '_' and '-', starting with a letter; name at least one."
  }
}

variable "repo_dir" {
  description = "Directory of the Packer git repository (its root, or the catalog's directory inside it), absolute or relative to Terraform's working directory."
  type        = string
  default     = "."
}

variable "catalog" {
  description = "Catalog path relative to repo_dir. Null means ami-chain.json."
  type        = string
  default     = null
}

variable "commit" {
  description = "Commit to resolve (a SHA, branch or tag). Null means the checked-out commit (HEAD)."
  type        = string
  default     = null
}

variable "allow_dirty" {
  description = "Fingerprint and build uncommitted changes to the definitions' files. Null means false: uncommitted changes are an error."
  type        = bool
  default     = null
}

variable "require_provenance" {
  description = "Use only images whose signed provenance verifies up to the root (`ami-bridge verify`): an image that does not fails the plan, naming the image and the reason. Null means false."
  type        = bool
  default     = null
}

variable "provenance_key" {
  description = "The KMS key (ID, ARN or alias) that require_provenance verifies with. Null means the catalog's provenance.key."
  type        = string
  default     = null
}

variable "region" {
  description = "AWS region to resolve in. Null means the AWS provider's region."
  type        = string
  default     = null

  validation {
    condition     = var.region == null || can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]$", var.region))
    error_message = "The region must be an AWS region name such as us-east-1, or null."
  }
}

variable "build_phase" {
  description = "When missing images are built: apply (default: by a null_resource during apply, so the plan shows each build and destroy never builds), plan (by the data source, during every plan and refresh), or never (a miss fails the plan)."
  type        = string
  default     = "apply"

  validation {
    condition     = contains(["plan", "apply", "never"], var.build_phase)
    error_message = "The build_phase value must be one of plan, apply, never."
  }
}

variable "on_missing" {
  description = "With build_phase = \"plan\": what a miss does: build (default), fail, or report (ami_id is \"\"). With \"never\": report, or fail (any other value)."
  type        = string
  default     = "build"

  validation {
    condition     = contains(["build", "fail", "report"], var.on_missing)
    error_message = "The on_missing value must be one of build, fail, report."
  }
}

variable "on_revoked" {
  description = "What a revoked image (ami-bridge revoke) does: build (default: like a missing image, so it is built again under the same fingerprint, with a new build ID, in the build phase) or fail (the plan fails naming the revocation's reason, whatever on_missing says; a person then changes the definition or restores the image)."
  type        = string
  default     = "build"

  validation {
    condition     = contains(["build", "fail"], var.on_revoked)
    error_message = "The on_revoked value must be one of build, fail."
  }
}

variable "tag_key" {
  description = "EC2 tag that carries the fingerprint. Null means the catalog's, then SHA."
  type        = string
  default     = null

  validation {
    condition     = var.tag_key == null || can(regex("^[A-Za-z0-9 _.:/=+@-]{1,127}$", var.tag_key))
    error_message = "The tag_key must be a valid EC2 tag key (1-127 characters) or null."
  }
}

variable "owners" {
  description = "Image owners to search: \"self\" or 12-digit account IDs. Null means the catalog's, then self."
  type        = list(string)
  default     = null

  validation {
    condition     = var.owners == null || alltrue([for o in coalesce(var.owners, []) : can(regex("^(self|[0-9]{12})$", o))])
    error_message = "Each owner must be \"self\" or a 12-digit account ID."
  }
}

variable "manifest_bucket" {
  description = "S3 bucket for build manifests. Null means the catalog's (none: no manifests)."
  type        = string
  default     = null
}

variable "manifest_prefix" {
  description = "S3 key prefix for build manifests. Null means the catalog's."
  type        = string
  default     = null
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
