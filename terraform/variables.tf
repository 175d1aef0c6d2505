variable "repo_dir" {
  description = "Root of the Packer git repository holding ami-chain.json."
  type        = string
}

variable "commit" {
  description = "Commit of the Packer repository to deploy. Null means its checked-out commit."
  type        = string
  default     = null
}

variable "region" {
  description = "AWS region of the provider: of the images, the launch template and the manifest."
  type        = string
  default     = "us-east-1"
}

variable "build_phase" {
  description = "When missing images are built: plan, apply (the plan shows rebuilds) or never."
  type        = string
  default     = "apply"
}

variable "on_revoked" {
  description = "A revoked image: build it again (default) or fail the plan naming the reason."
  type        = string
  default     = "build"
}

variable "require_provenance" {
  description = "Use only images whose signed provenance verifies (the catalog's provenance.key, or provenance_key): an image that does not fails the plan."
  type        = bool
  default     = false
}

variable "provenance_key" {
  description = "The KMS key that require_provenance verifies with. Null means the catalog's."
  type        = string
  default     = null
}

variable "bridge_command" {
  description = "argv that runs ami-bridge."
  type        = list(string)
  default     = ["ami-bridge"]
}

variable "manifest_bucket" {
  description = "S3 bucket for the deployment manifest (and the build manifests)."
  type        = string
}

variable "deployment" {
  description = "Name of this deployment; the manifest goes to deployments/<deployment>/amis.json."
  type        = string
  default     = "main"
}

variable "instance_type" {
  description = "Instance type of the snowflake launch template."
  type        = string
  default     = "t3.micro"
}

variable "s3_use_path_style" {
  description = "Use path-style S3 addressing (S3-compatible endpoints)."
  type        = bool
  default     = false
}

variable "fleet_size" {
  description = "Instances the snowflake Auto Scaling group runs (it may grow by one during an instance refresh)."
  type        = number
  default     = 1

  validation {
    condition     = var.fleet_size >= 0 && floor(var.fleet_size) == var.fleet_size
    error_message = "The fleet_size must be a whole number, 0 or more."
  }
}

variable "availability_zones" {
  description = "Availability zones of the snowflake fleet (in the default VPC)."
  type        = list(string)
  default     = ["us-east-1a"]
}
