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
  description = "The newest version number (also the default version)."
  value       = aws_launch_template.this.latest_version
}

output "image_id" {
  description = "The image of the newest version: an AMI ID, or resolve:ssm:<parameter> when it follows a channel."
  value       = aws_launch_template.this.image_id
}
