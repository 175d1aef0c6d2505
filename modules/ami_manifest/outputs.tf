output "bucket" {
  description = "Bucket of the manifest object."
  value       = aws_s3_object.this.bucket
}

output "key" {
  description = "Key of the manifest object."
  value       = aws_s3_object.this.key
}

output "etag" {
  description = "ETag of the manifest object."
  value       = aws_s3_object.this.etag
}

output "version_id" {
  description = "Version of the manifest object (\"\" when the bucket is not versioned)."
  value       = aws_s3_object.this.version_id
}

output "document" {
  description = "The manifest as written."
  value       = local.document
}
