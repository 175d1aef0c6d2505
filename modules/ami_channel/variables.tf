variable "definition" {
  description = "The catalog definition whose channel is read, e.g. snowflake."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9_-]{0,62}$", var.definition))
    error_message = "The definition must be a catalog definition name: lowercase letters, digits, - and _, starting with a letter."
  }
}

variable "channel" {
  description = "The promotion channel, e.g. prod (`ami-bridge promote` writes it)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9_-]{0,62}$", var.channel))
    error_message = "The channel must be a channel name: lowercase letters, digits, - and _, starting with a letter."
  }
}

variable "catalog_id" {
  description = "The ID of the catalog whose channel is read (its `id`): its channels live under ami-chain/<catalog_id>. Null: a catalog without an ID, or one whose channels.prefix is given as channel_prefix."
  type        = string
  default     = null
}

variable "channel_prefix" {
  description = "The channels' SSM path prefix, when the catalog sets channels.prefix. Null: ami-chain/<catalog_id> (ami-chain without catalog_id)."
  type        = string
  default     = null

  validation {
    condition     = var.channel_prefix == null || can(regex("^[A-Za-z0-9_.-]{1,100}(/[A-Za-z0-9_.-]{1,100}){0,8}$", var.channel_prefix))
    error_message = "The channel_prefix must be an SSM path without leading or trailing slash, e.g. ami-chain or platform/images."
  }
}

variable "require_provenance" {
  description = "Use the channel's image only when its signed provenance verifies up to the root against provenance_key (the builder's statement: the image's tag where this account sees it, else the one beside its manifest in manifest_bucket): an image that does not fails the plan. Null means false."
  type        = bool
  default     = null
}

variable "provenance_key" {
  description = "The KMS key (ID, ARN or alias) require_provenance verifies with; required with it (a channel query reads no catalog)."
  type        = string
  default     = null
}

variable "manifest_bucket" {
  description = "The builder's manifest bucket, where require_provenance finds the statement when this account cannot read the image's tags (a workload account). Null: none."
  type        = string
  default     = null
}

variable "manifest_prefix" {
  description = "The builder's manifest key prefix (with manifest_bucket). Null: none."
  type        = string
  default     = null
}

variable "region" {
  description = "AWS region of the channel's parameter and image; null: the AWS provider's region."
  type        = string
  default     = null
}

variable "bridge_command" {
  description = "argv that runs ami-bridge (no shell), e.g. [\"ami-bridge\"] or [\"python3\", \"-m\", \"bridge\"]."
  type        = list(string)
  default     = ["ami-bridge"]
}
