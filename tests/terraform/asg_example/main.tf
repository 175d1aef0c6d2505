# Runs modules/asg/examples/basic for pytest-terraform (tests/test_modules.py).
variable "image_id" {
  type = string
}

module "example" {
  source   = "../../../modules/asg/examples/basic"
  image_id = var.image_id
}

output "name" {
  value = module.example.name
}

output "launch_template_id" {
  value = module.example.launch_template_id
}

output "launch_template_version" {
  value = module.example.launch_template_version
}
