# Runs modules/ami_channel/examples/basic for pytest-terraform (tests/test_modules.py).
variable "bridge_command" {
  type = list(string)
}

module "example" {
  source         = "../../../modules/ami_channel/examples/basic"
  bridge_command = var.bridge_command
}

output "ami_id" {
  value = module.example.ami_id
}

output "channel_version" {
  value = module.example.channel_version
}

output "parameter_name" {
  value = module.example.parameter_name
}

output "build_id" {
  value = module.example.build_id
}

output "launch_template_id" {
  value = module.example.launch_template_id
}

output "launch_template_image" {
  value = module.example.launch_template_image
}
