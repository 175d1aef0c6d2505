# Every output is the same on the plan after an apply, so drift checks (plan -detailed-exitcode)
# pass: nothing here says whether this run built.

output "ami_id" {
  description = "The AMI of the definition in the resolved region (\"\" only when on_missing = \"report\" and it is missing)."
  value       = module.catalog.ami_ids[var.definition]
}

output "fingerprint" {
  description = "The definition's content fingerprint (the value of the fingerprint tag)."
  value       = module.catalog.fingerprints[var.definition]
}

output "build_id" {
  description = "The image's build ID (its ami-chain:build-id tag): changes whenever the image is rebuilt."
  value       = module.catalog.build_ids[var.definition]
}

output "parent_ami_id" {
  description = "The parent definition's AMI, or \"\" for a root definition."
  value       = module.catalog.parent_ami_ids[var.definition]
}

output "amis" {
  description = "The definition's AMI by region."
  value       = module.catalog.amis[var.definition]
}

output "region" {
  description = "The region the AMI was resolved in (the AWS provider's unless `region` is set)."
  value       = module.catalog.region
}

output "manifest_uri" {
  description = "s3:// URI of the build manifest, or \"\" when no manifest bucket is configured."
  value       = module.catalog.manifest_uris[var.definition]
}

output "found" {
  description = "Whether a usable image exists (false only with on_missing = \"report\")."
  value       = module.catalog.found[var.definition]
}

output "definition" {
  description = "The resolved definition."
  value       = var.definition
}

output "git_commit" {
  description = "The git commit the image was built from."
  value       = module.catalog.git_commits[var.definition]
}

output "creation_date" {
  description = "When EC2 registered the image."
  value       = module.catalog.creation_dates[var.definition]
}

output "revoked" {
  description = "Whether the image is revoked (ami-bridge revoke), itself or through an ancestor: true only when no usable image is left (with on_missing = \"report\", or build_phase = \"never\" and on_missing = \"report\")."
  value       = module.catalog.revoked[var.definition]
}

output "revoke_reason" {
  description = "Why the image is revoked (\"\" when it is not)."
  value       = module.catalog.revoke_reasons[var.definition]
}

output "expires_at" {
  description = "When the image expires (max_age_days; ISO 8601 UTC, \"\" when never)."
  value       = module.catalog.expires_at[var.definition]
}

output "revokes_at" {
  description = "When a revocation scheduled for later takes effect (ISO 8601 UTC; \"\" when none is)."
  value       = module.catalog.revokes_at[var.definition]
}
