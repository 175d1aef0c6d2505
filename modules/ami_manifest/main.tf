locals {
  document = {
    schema_version = 1
    deployment     = var.deployment
    images = {
      for name, image in var.images : name => {
        ami_id        = image.ami_id
        fingerprint   = image.fingerprint
        parent_ami_id = image.parent_ami_id
        manifest_uri  = image.manifest_uri
        git_commit    = image.git_commit
      }
    }
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
