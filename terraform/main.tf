locals {
  # The images this deployment uses. The snowflake's parent (base) comes from the catalog; the
  # bridge builds it first when needed, and concurrent resolves of it build it once.
  definitions = ["base", "snowflake"]
}

# One bridge call per read for every image (ami_catalog), rather than one per image.
module "images" {
  source = "../modules/ami_catalog"

  definitions    = local.definitions
  repo_dir       = var.repo_dir
  commit         = var.commit
  build_phase    = var.build_phase
  on_revoked     = var.on_revoked
  bridge_command = var.bridge_command
  # An image nobody can vouch for fails the plan.
  require_provenance = var.require_provenance
  provenance_key     = var.provenance_key
  manifest_bucket    = var.manifest_bucket
}

module "launch_template" {
  source = "../modules/launch_template"

  name_prefix   = "snowflake-"
  image_id      = module.images.ami_ids["snowflake"]
  fingerprint   = module.images.fingerprints["snowflake"]
  instance_type = var.instance_type
  tags          = { Definition = "snowflake" }
}

# The fleet runs the template's newest version: a new snowflake image is a new version, and
# applying it starts one rolling instance refresh.
module "fleet" {
  source = "../modules/asg"

  name_prefix             = "snowflake-"
  launch_template_id      = module.launch_template.id
  launch_template_version = module.launch_template.latest_version
  availability_zones      = var.availability_zones
  min_size                = var.fleet_size
  max_size                = var.fleet_size + 1
  desired_capacity        = var.fleet_size
  tags                    = { Definition = "snowflake" }
}

module "deployment_manifest" {
  source = "../modules/ami_manifest"

  bucket     = var.manifest_bucket
  key        = "deployments/${var.deployment}/amis.json"
  deployment = var.deployment
  images = {
    for name in local.definitions : name => {
      ami_id        = module.images.ami_ids[name]
      fingerprint   = module.images.fingerprints[name]
      parent_ami_id = module.images.parent_ami_ids[name]
      manifest_uri  = module.images.manifest_uris[name]
      git_commit    = module.images.git_commits[name]
    }
  }
}
