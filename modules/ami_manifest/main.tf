locals {
  document = {
    schema_version = 1
    deployment     = var.deployment
    images         = var.images
  }
}

resource "aws_s3_object" "this" {
  bucket                 = var.bucket
  key                    = var.key
  content                = jsonencode(local.document)
  content_type           = "application/json"
  server_side_encryption = var.server_side_encryption
  tags                   = var.tags
}
