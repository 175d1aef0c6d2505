output "ami_id" {
  description = "The AMI the channel holds in the region."
  value       = data.external.channel.result.ami_id
}

output "channel_version" {
  description = "The version of the channel's SSM parameter that was read (its history: `ami-bridge channel history`)."
  value       = tonumber(data.external.channel.result.channel_version)
}

output "parameter_name" {
  description = "The channel's SSM parameter, e.g. for a launch template's `resolve:ssm:` image."
  value       = data.external.channel.result.parameter
}

output "build_id" {
  description = "The build ID of the image (\"\" for a value the bridge did not write)."
  value       = data.external.channel.result.build_id
}

output "fingerprint" {
  description = "The fingerprint of the image (\"\" for a value the bridge did not write)."
  value       = data.external.channel.result.fingerprint
}
