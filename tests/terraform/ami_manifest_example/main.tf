# Runs modules/ami_manifest/examples/basic for pytest-terraform (tests/test_modules.py).
variable "bucket" {
  type = string
}

module "example" {
  source = "../../../modules/ami_manifest/examples/basic"
  bucket = var.bucket
}

output "key" {
  value = module.example.key
}

output "etag" {
  value = module.example.etag
}
