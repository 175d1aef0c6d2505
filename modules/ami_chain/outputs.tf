# Every output is the same on the plan after an apply, so drift checks (plan -detailed-exitcode)
# pass: nothing here says whether this run built.

output "ami_id" {
  description = "The AMI of the definition in the resolved region (\"\" only when on_missing = \"report\" and it is missing)."
  value       = local.resolved.ami_id
}

output "fingerprint" {
  description = "The definition's content fingerprint (the value of the fingerprint tag)."
  value       = local.planned.fingerprint # known at plan; the apply checks it is the same
}

output "build_id" {
  description = "The image's build ID (its ami-chain:build-id tag): changes whenever the image is rebuilt."
  value       = local.resolved.build_id
}

output "parent_ami_id" {
  description = "The parent definition's AMI, or \"\" for a root definition."
  value       = local.resolved.parent_ami_id
}

output "amis" {
  description = "The definition's AMI by region."
  value       = tomap(jsondecode(local.resolved.amis_json))
}

output "region" {
  description = "The region the AMI was resolved in (the AWS provider's unless `region` is set)."
  value       = local.region
}

output "manifest_uri" {
  description = "s3:// URI of the build manifest, or \"\" when no manifest bucket is configured."
  value       = local.resolved.manifest_uri
}

output "found" {
  description = "Whether a usable image exists (false only with on_missing = \"report\")."
  value       = local.resolved.found == "true"
}

output "definition" {
  description = "The resolved definition."
  value       = local.resolved.definition
}

output "git_commit" {
  description = "The git commit the image was built from."
  value       = local.resolved.git_commit
}

output "creation_date" {
  description = "When EC2 registered the image."
  value       = local.resolved.creation_date
}
