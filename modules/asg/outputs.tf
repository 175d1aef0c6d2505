output "name" {
  description = "The group's name."
  value       = aws_autoscaling_group.this.name
}

output "arn" {
  description = "The group's ARN."
  value       = aws_autoscaling_group.this.arn
}

output "launch_template_version" {
  description = "The launch template version the group runs."
  value       = var.launch_template_version
}

output "desired_capacity" {
  description = "Instances the group runs."
  value       = aws_autoscaling_group.this.desired_capacity
}
