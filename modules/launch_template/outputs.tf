output "id" {
  description = "The launch template's ID."
  value       = aws_launch_template.this.id
}

output "arn" {
  description = "The launch template's ARN."
  value       = aws_launch_template.this.arn
}

output "name" {
  description = "The launch template's name."
  value       = aws_launch_template.this.name
}

output "latest_version" {
  description = "The newest version number: pass it to an Auto Scaling group so a new version is a change its plan shows."
  value       = aws_launch_template.this.latest_version
}

output "default_version" {
  description = "The default version number (the newest one while update_default_version is true)."
  value       = aws_launch_template.this.default_version
}

output "image_id" {
  description = "The image of the newest version: an AMI ID, or resolve:ssm:<parameter> when it follows a channel."
  value       = aws_launch_template.this.image_id
}

output "fingerprint" {
  description = "The fingerprint of the image, as given (null when none was)."
  value       = var.fingerprint
}
