# Every output is the same on the plan after an apply (see ami_chain).

output "ami_ids" {
  description = "The AMI of each definition in the resolved region, by definition (\"\" only with on_missing = \"report\" for a missing one)."
  value       = { for name, r in local.resolved : name => r.ami_id }
}

output "amis" {
  description = "Each definition's AMIs by region, by definition."
  value       = { for name, r in local.resolved : name => tomap(jsondecode(r.amis_json)) }
}

output "fingerprints" {
  description = "Each definition's content fingerprint, by definition."
  value       = { for name, r in local.planned : name => r.fingerprint }
}

output "build_ids" {
  description = "Each image's build ID, by definition."
  value       = { for name, r in local.resolved : name => r.build_id }
}

output "parent_ami_ids" {
  description = "Each definition's parent AMI (\"\" for a root), by definition."
  value       = { for name, r in local.resolved : name => r.parent_ami_id }
}

output "manifest_uris" {
  description = "s3:// URI of each build manifest (\"\" without a manifest bucket), by definition."
  value       = { for name, r in local.resolved : name => r.manifest_uri }
}

output "git_commits" {
  description = "The commit each image was built from, by definition."
  value       = { for name, r in local.resolved : name => r.git_commit }
}

output "region" {
  description = "The region the AMIs were resolved in (the AWS provider's unless `region` is set)."
  value       = local.region
}

output "found" {
  description = "Whether each definition has a usable image (false only with on_missing = \"report\"), by definition."
  value       = { for name, r in local.resolved : name => r.found == "true" }
}

output "creation_dates" {
  description = "When EC2 registered each image, by definition."
  value       = { for name, r in local.resolved : name => r.creation_date }
}

output "revoked" {
  description = "Whether each definition's image is revoked (ami-bridge revoke), itself or through an ancestor, with no usable image left (only with on_missing = \"report\"), by definition."
  value       = { for name, r in local.resolved : name => r.revoked == "true" }
}

output "revoke_reasons" {
  description = "Why each definition's image is revoked (\"\" when it is not), by definition."
  value       = { for name, r in local.resolved : name => r.revoke_reason }
}

output "expires_at" {
  description = "When each image expires (max_age_days; ISO 8601 UTC, \"\" when never), by definition."
  value       = { for name, r in local.resolved : name => r.expires_at }
}

output "revokes_at" {
  description = "When each image's revocation scheduled for later takes effect (ISO 8601 UTC; \"\" when none is), by definition."
  value       = { for name, r in local.resolved : name => r.revokes_at }
}
