# Runs modules/launch_template/examples/basic for pytest-terraform (tests/test_modules.py).
variable "image_id" {
  type = string
}

module "example" {
  source   = "../../../modules/launch_template/examples/basic"
  image_id = var.image_id
}

output "id" {
  value = module.example.id
}

output "latest_version" {
  value = module.example.latest_version
}

output "image_id" {
  value = module.example.image_id
}
