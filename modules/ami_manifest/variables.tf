variable "bucket" {
  description = "S3 bucket that holds the deployment manifest."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.bucket))
    error_message = "The bucket must be a valid S3 bucket name."
  }
}

variable "key" {
  description = "S3 key of the deployment manifest, e.g. deployments/prod/amis.json."
  type        = string

  validation {
    condition     = length(var.key) > 0 && substr(var.key, 0, 1) != "/"
    error_message = "The key must be non-empty and must not start with '/'."
  }
}

variable "deployment" {
  description = "Name of the deployment the manifest describes."
  type        = string
}

variable "images" {
  description = "The resolved definitions this deployment uses, by definition name (from ami_chain outputs)."
  type = map(object({
    ami_id        = string
    fingerprint   = string
    parent_ami_id = string
    manifest_uri  = string
    git_commit    = string
  }))

  validation {
    condition     = alltrue([for i in values(var.images) : can(regex("^ami-[0-9a-f]{8,17}$", i.ami_id))])
    error_message = "Every image needs a resolved ami_id (ami-...)."
  }
}

variable "server_side_encryption" {
  description = "Server-side encryption of the object: AES256 or aws:kms."
  type        = string
  default     = "AES256"

  validation {
    condition     = contains(["AES256", "aws:kms"], var.server_side_encryption)
    error_message = "The server_side_encryption must be AES256 or aws:kms."
  }
}

variable "tags" {
  description = "Tags for the manifest object."
  type        = map(string)
  default     = {}
}
