# Runs modules/ami_chain/examples/basic for pytest-terraform (tests/test_modules.py).
variable "repo_dir" {
  type = string
}

variable "bridge_command" {
  type = list(string)
}

module "example" {
  source         = "../../../modules/ami_chain/examples/basic"
  repo_dir       = var.repo_dir
  bridge_command = var.bridge_command
}

output "ami_id" {
  value = module.example.ami_id
}

output "parent_ami_id" {
  value = module.example.parent_ami_id
}

output "fingerprint" {
  value = module.example.fingerprint
}

output "amis" {
  value = module.example.amis
}

output "build_id" {
  value = module.example.build_id
}
