# One definition: the catalog module with a list of one, so both modules share one
# implementation of the build phases (see ../ami_catalog/main.tf).
module "catalog" {
  source = "../ami_catalog"

  definitions        = [var.definition]
  repo_dir           = var.repo_dir
  catalog            = var.catalog
  commit             = var.commit
  allow_dirty        = var.allow_dirty
  require_provenance = var.require_provenance
  provenance_key     = var.provenance_key
  region             = var.region
  build_phase        = var.build_phase
  on_missing         = var.on_missing
  on_revoked         = var.on_revoked
  tag_key            = var.tag_key
  owners             = var.owners
  manifest_bucket    = var.manifest_bucket
  manifest_prefix    = var.manifest_prefix
  bridge_command     = var.bridge_command
}
