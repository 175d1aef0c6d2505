locals {
  chain = {
    repo_dir        = var.repo_dir
    region          = var.region
    build_phase     = var.build_phase
    bridge_command  = var.bridge_command
    manifest_bucket = var.manifest_bucket
  }
}

module "base" {
  source = "../modules/ami_chain"

  definition      = "base"
  repo_dir        = local.chain.repo_dir
  region          = local.chain.region
  build_phase     = local.chain.build_phase
  bridge_command  = local.chain.bridge_command
  manifest_bucket = local.chain.manifest_bucket
}

# The snowflake's parent (base) comes from the catalog; the bridge builds it first when needed.
module "snowflake" {
  source = "../modules/ami_chain"

  definition      = "snowflake"
  repo_dir        = local.chain.repo_dir
  region          = local.chain.region
  build_phase     = local.chain.build_phase
  bridge_command  = local.chain.bridge_command
  manifest_bucket = local.chain.manifest_bucket
}

module "launch_template" {
  source = "../modules/launch_template"

  name_prefix   = "snowflake-"
  image_id      = module.snowflake.ami_id
  instance_type = var.instance_type
  tags          = { Definition = "snowflake", Fingerprint = module.snowflake.fingerprint }
}

module "deployment_manifest" {
  source = "../modules/ami_manifest"

  bucket     = var.manifest_bucket
  key        = "deployments/${var.deployment}/amis.json"
  deployment = var.deployment
  images = {
    for name, image in { base = module.base, snowflake = module.snowflake } : name => {
      ami_id                  = image.ami_id
      fingerprint             = image.fingerprint
      parent_ami_id           = image.parent_ami_id
      manifest_uri            = image.manifest_uri
      git_commit              = image.git_commit
    }
  }
}
