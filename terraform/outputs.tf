output "base_ami_id" {
  description = "The base image."
  value       = module.images.ami_ids["base"]
}

output "snowflake_ami_id" {
  description = "The snowflake image."
  value       = module.images.ami_ids["snowflake"]
}

output "launch_template_id" {
  description = "The snowflake launch template."
  value       = module.launch_template.id
}

output "launch_template_version" {
  description = "Its newest version."
  value       = module.launch_template.latest_version
}

output "fleet_name" {
  description = "The snowflake Auto Scaling group."
  value       = module.fleet.name
}

output "fleet_launch_template_version" {
  description = "The launch template version the fleet runs."
  value       = module.fleet.launch_template_version
}

output "deployment_manifest" {
  description = "s3:// URI of the deployment manifest."
  value       = "s3://${module.deployment_manifest.bucket}/${module.deployment_manifest.key}"
}
